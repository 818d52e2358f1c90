"""providers.py against httpx2.MockTransport in virtual time, and a real pool."""

from __future__ import annotations

import email.utils
import json
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx2
import msgspec
import pytest
import trio
import trio.testing

from daemon.config import ProviderConfig, StrategyConfig
from daemon.errors import StrategyError
from daemon.models import Usage
from daemon.providers import (
    MAX_RESPONSE_BYTES,
    ImageInput,
    Provider,
    backoff,
    retry_delay,
)
from tests.fake_provider import FakeProvider, Script

STRATEGY = StrategyConfig(name="premium", provider="p", model="slow-model", rank=2, max_retries=3)
IMAGE = ImageInput.from_bytes(b"\x89PNG\r\n\x1a\nfake", "image/png")
Handler = Callable[[httpx2.Request], Awaitable[httpx2.Response]]


def completion(content: Any = '{"a": 1}', **extra: Any) -> httpx2.Response:
    return httpx2.Response(
        200,
        json={
            "model": "slow-model-2025",
            "choices": [{"message": {"role": "assistant", "content": content}}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 2, "total_tokens": 12},
            **extra,
        },
    )


def provider(
    handler: Handler, api_key: str | None = "sk-test", **config: Any
) -> tuple[Provider, list[httpx2.Request]]:
    seen: list[httpx2.Request] = []

    async def recording(request: httpx2.Request) -> httpx2.Response:
        seen.append(request)
        return await handler(request)

    cfg = ProviderConfig(
        base_url="https://llm.example/api/v1", headers={"X-Title": "ctxd"}, **config
    )
    client = httpx2.AsyncClient(
        base_url=cfg.base_url + "/", headers=cfg.headers, transport=httpx2.MockTransport(recording)
    )
    return Provider("p", cfg, client, api_key, random.Random(7)), seen


async def test_request_shape_and_result(autojump_clock: trio.testing.MockClock) -> None:
    async def ok(request: httpx2.Request) -> httpx2.Response:
        return completion()

    p, seen = provider(ok)
    result = await p.complete(STRATEGY, IMAGE)
    assert result.text == '{"a": 1}'
    assert result.served_model == "slow-model-2025"
    assert result.usage == Usage(prompt_tokens=10, completion_tokens=2, total_tokens=12)
    assert result.attempts == 1
    request = seen[0]
    assert str(request.url) == "https://llm.example/api/v1/chat/completions"
    assert request.headers["authorization"] == "Bearer sk-test"
    assert request.headers["x-title"] == "ctxd"
    body = json.loads(request.content)
    assert body["model"] == "slow-model"
    assert body["temperature"] == 0
    assert body["messages"][0]["role"] == "system"
    assert "JSON" in body["messages"][0]["content"]
    parts = body["messages"][1]["content"]
    assert parts[1] == {"type": "image_url", "image_url": {"url": IMAGE.url}}
    assert IMAGE.url.startswith("data:image/png;base64,")
    await p.aclose()


async def test_content_parts_are_joined(autojump_clock: trio.testing.MockClock) -> None:
    async def parts(request: httpx2.Request) -> httpx2.Response:
        return completion([{"type": "text", "text": '{"a"'}, {"type": "text", "text": ": 1}"}])

    p, _ = provider(parts)
    assert (await p.complete(STRATEGY, IMAGE)).text == '{"a": 1}'


def scripted(*responses: httpx2.Response | Exception, delay: float = 0) -> Handler:
    queue = list(responses)

    async def handler(request: httpx2.Request) -> httpx2.Response:
        await trio.sleep(delay)
        item = queue.pop(0) if len(queue) > 1 else queue[0]
        if isinstance(item, Exception):
            raise item
        # A fresh response each time: a body can be read only once.
        return httpx2.Response(item.status_code, headers=item.headers, content=item.content)

    return handler


async def test_429_with_retry_after_seconds(autojump_clock: trio.testing.MockClock) -> None:
    limited = httpx2.Response(429, headers={"Retry-After": "2"}, text="slow down")
    p, seen = provider(scripted(limited, limited, completion()))
    result = await p.complete(STRATEGY, IMAGE)
    assert (result.attempts, len(seen)) == (3, 3)
    assert trio.current_time() == pytest.approx(4)


async def test_retry_after_ms_and_http_date(autojump_clock: trio.testing.MockClock) -> None:
    p, _ = provider(
        scripted(httpx2.Response(503, headers={"retry-after-ms": "1500"}), completion())
    )
    await p.complete(STRATEGY, IMAGE)
    assert trio.current_time() == pytest.approx(1.5)
    now = time.time()
    date = email.utils.formatdate(now + 30, usegmt=True)
    assert retry_delay(httpx2.Headers({"Retry-After": date}), now=now) == pytest.approx(30, abs=1)


@pytest.mark.parametrize(
    "value", ["99999", "-3", "soon", "nan", "inf", "Wed, 21 Oct 2015 07:28:00 GMT"]
)
def test_absurd_retry_after_falls_back(value: str) -> None:
    assert retry_delay(httpx2.Headers({"Retry-After": value})) is None


def test_backoff_is_jittered_and_capped() -> None:
    rng = random.Random(1)
    for attempt in range(10):
        delays = [backoff(attempt, rng) for _ in range(50)]
        assert all(0 <= d <= min(8, 0.5 * 2**attempt) for d in delays)
        assert len(set(delays)) > 40


@pytest.mark.parametrize("status", [408, 409, 429, 500, 502, 503, 504])
async def test_retryable_statuses_exhaust_into_http_status(
    status: int, autojump_clock: trio.testing.MockClock
) -> None:
    p, seen = provider(scripted(httpx2.Response(status, text="nope")))
    with pytest.raises(StrategyError) as info:
        await p.complete(STRATEGY, IMAGE)
    assert info.value.kind == "http_status"
    assert f"HTTP {status}" in info.value.detail
    assert len(seen) == STRATEGY.max_retries + 1


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
async def test_other_4xx_are_not_retried(
    status: int, autojump_clock: trio.testing.MockClock
) -> None:
    p, seen = provider(scripted(httpx2.Response(status, text="bad request")))
    with pytest.raises(StrategyError, match=f"HTTP {status}"):
        await p.complete(STRATEGY, IMAGE)
    assert len(seen) == 1


async def test_connection_errors_are_retried(autojump_clock: trio.testing.MockClock) -> None:
    p, seen = provider(
        scripted(httpx2.ConnectError("refused"), httpx2.ReadError("reset"), completion())
    )
    assert (await p.complete(STRATEGY, IMAGE)).attempts == 3
    assert len(seen) == 3
    p, _ = provider(scripted(httpx2.ConnectError("refused")))
    with pytest.raises(StrategyError) as info:
        await p.complete(STRATEGY, IMAGE)
    assert info.value.kind == "connection"
    p, _ = provider(scripted(httpx2.ReadTimeout("slow")))
    with pytest.raises(StrategyError) as info:
        await p.complete(STRATEGY, IMAGE)
    assert info.value.kind == "timeout"


@pytest.mark.parametrize(
    "response",
    [
        httpx2.Response(200, text="<html>gateway</html>"),
        httpx2.Response(200, json={"choices": []}),
        httpx2.Response(200, json={"choices": [{"message": {"content": "  "}}]}),
        httpx2.Response(200, json={"choices": [{"message": {"content": None}}]}),
        httpx2.Response(200, content=b"\xff\xfe{not utf-8"),
        httpx2.Response(200, content=b"x" * (MAX_RESPONSE_BYTES + 1)),
    ],
)
async def test_unusable_200_is_invalid_output_not_retried(
    response: httpx2.Response, autojump_clock: trio.testing.MockClock
) -> None:
    p, seen = provider(scripted(response))
    with pytest.raises(StrategyError) as info:
        await p.complete(STRATEGY, IMAGE)
    assert info.value.kind == "invalid_output"
    assert len(seen) == 1


async def test_missing_api_key_is_not_configured_and_sends_nothing(
    autojump_clock: trio.testing.MockClock,
) -> None:
    p, seen = provider(scripted(completion()), api_key=None, api_key_env="NOPE_KEY")
    with pytest.raises(StrategyError) as info:
        await p.complete(STRATEGY, IMAGE)
    assert info.value.kind == "not_configured"
    assert "NOPE_KEY" in info.value.detail
    assert seen == []


async def test_no_retry_that_cannot_finish_before_the_deadline(
    autojump_clock: trio.testing.MockClock,
) -> None:
    p, seen = provider(scripted(httpx2.Response(429, headers={"Retry-After": "10"})))
    with trio.fail_after(5), pytest.raises(StrategyError, match="HTTP 429"):
        await p.complete(STRATEGY, IMAGE)
    assert len(seen) == 1
    assert trio.current_time() < 5


async def test_hung_provider_is_bounded_by_the_callers_deadline(
    autojump_clock: trio.testing.MockClock,
) -> None:
    p, _ = provider(scripted(completion(), delay=1000))
    with pytest.raises(trio.TooSlowError), trio.fail_after(3):
        await p.complete(STRATEGY, IMAGE)
    assert trio.current_time() == pytest.approx(3)


def test_from_config_reads_the_key_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CTXD_TEST_KEY", "sk-from-env")
    cfg = ProviderConfig(base_url="http://x/v1", api_key_env="CTXD_TEST_KEY", max_connections=3)
    p = Provider.from_config("p", cfg)
    assert p._api_key == "sk-from-env"
    monkeypatch.delenv("CTXD_TEST_KEY")
    assert Provider.from_config("p", cfg)._api_key is None
    assert Provider.from_config("p", ProviderConfig(base_url="http://x/v1"))._api_key == ""


async def test_pool_survives_many_cancelled_calls_under_contention() -> None:
    """httpcore issue 1093: cancelling requests waiting for a pool slot once
    leaked slots. 40 calls on a pool of 2, all cancelled mid-flight, then the
    pool must still serve."""
    scripts = {"slow-model": Script(latency=0.5), "fast-model": Script(latency=0.0)}
    with FakeProvider(scripts) as fake:
        cfg = ProviderConfig(base_url=fake.base_url, max_connections=2)
        p = Provider.from_config("fake", cfg)
        slow = msgspec.structs.replace(STRATEGY, model="slow-model", max_retries=0)
        fast = msgspec.structs.replace(STRATEGY, model="fast-model", max_retries=0)
        try:
            for _ in range(3):
                with trio.move_on_after(0.2):
                    async with trio.open_nursery() as nursery:
                        for _ in range(40):
                            nursery.start_soon(p.complete, slow, IMAGE)
            with trio.fail_after(10):
                results = []
                async with trio.open_nursery() as nursery:
                    for _ in range(4):

                        async def one() -> None:
                            results.append(await p.complete(fast, IMAGE))

                        nursery.start_soon(one)
            assert len(results) == 4
            assert all(r.served_model == "fast-model-served" for r in results)
        finally:
            await p.aclose()
