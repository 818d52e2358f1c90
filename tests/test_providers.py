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

from daemon import images as images_module
from daemon import provider_errors, providers
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
from daemon.stats import Stats
from tests.fake_provider import FakeProvider, Script, mock_handler

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


@pytest.mark.parametrize("value", ["-3", "soon", "nan", "inf", "Wed, 21 Oct 2015 07:28:00 GMT"])
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


# ------------------------------------------------ issue 19: real providers ---


def openrouter_error(status: int, message: str, **metadata: Any) -> dict[str, Any]:
    error: dict[str, Any] = {"code": status, "message": message}
    if metadata:
        error["metadata"] = metadata
    return {"error": error}


async def test_request_carries_max_tokens_schema_and_no_temperature(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def ok(request: httpx2.Request) -> httpx2.Response:
        return completion()

    p, seen = provider(ok)
    await p.complete(STRATEGY, IMAGE)
    body = json.loads(seen[0].content)
    assert body["max_tokens"] == 8192
    assert "temperature" not in body  # some current models reject any value but their default
    schema = body["response_format"]["json_schema"]
    assert body["response_format"]["type"] == "json_schema"
    assert schema["strict"] is True
    assert set(schema["schema"]["required"]) == {"participants", "layout", "bubbles", "summary"}

    tuned = msgspec.structs.replace(
        STRATEGY,
        max_tokens=1500,
        temperature=0.2,
        structured_output=False,
        extra_body={"provider": {"data_collection": "deny"}, "reasoning": {"effort": "low"}},
    )
    await p.complete(tuned, IMAGE)
    body = json.loads(seen[1].content)
    assert (body["max_tokens"], body["temperature"]) == (1500, 0.2)
    assert "response_format" not in body
    assert body["provider"] == {"data_collection": "deny"}
    assert body["reasoning"] == {"effort": "low"}


async def test_openai_gets_max_completion_tokens(autojump_clock: trio.testing.MockClock) -> None:
    seen: list[httpx2.Request] = []

    async def ok(request: httpx2.Request) -> httpx2.Response:
        seen.append(request)
        return completion()

    cfg = ProviderConfig(base_url="https://api.openai.com/v1", api_key_env="CTXD_NOPE")
    p = Provider.from_config("openai", cfg, transport=httpx2.MockTransport(ok))
    p._api_key = "sk-test"
    await p.complete(STRATEGY, IMAGE)
    body = json.loads(seen[0].content)
    assert body["max_completion_tokens"] == 8192
    assert "max_tokens" not in body


async def test_openrouter_attribution_headers(autojump_clock: trio.testing.MockClock) -> None:
    seen: list[httpx2.Request] = []

    async def ok(request: httpx2.Request) -> httpx2.Response:
        seen.append(request)
        return completion()

    cfg = ProviderConfig(
        base_url="https://openrouter.ai/api/v1",
        headers={"HTTP-Referer": "https://example.org/ctxd", "X-Unwanted": ""},
    )
    p = Provider.from_config("openrouter", cfg, transport=httpx2.MockTransport(ok))
    await p.complete(STRATEGY, IMAGE)
    headers = seen[0].headers
    assert headers["x-openrouter-title"] == "ctxd"
    assert headers["http-referer"] == "https://example.org/ctxd"
    assert "x-unwanted" not in headers
    cfg = ProviderConfig(base_url="https://openrouter.ai/api/v1", headers={"X-Title": "mine"})
    p = Provider.from_config("openrouter", cfg, transport=httpx2.MockTransport(ok))
    await p.complete(STRATEGY, IMAGE)
    assert seen[1].headers["x-title"] == "mine"
    assert "x-openrouter-title" not in seen[1].headers


async def test_error_detail_is_built_from_the_body(autojump_clock: trio.testing.MockClock) -> None:
    raw = json.dumps({"error": {"code": 500, "message": "An internal error has occurred"}})
    body = openrouter_error(502, "Provider returned error", raw=raw, provider_name="Google")
    p, seen = provider(scripted(httpx2.Response(502, json=body)))
    with pytest.raises(StrategyError) as info:
        await p.complete(STRATEGY, IMAGE)
    detail = info.value.detail
    assert detail.startswith("HTTP 502 from Google via p: Provider returned error")
    assert "(An internal error has occurred)" in detail
    assert "{" not in detail  # the upstream body unwrapped, not quoted
    assert len(seen) == STRATEGY.max_retries + 1  # a 502 is retried

    p, _ = provider(
        scripted(httpx2.Response(400, json={"message": "bad image", "error_type": "x"}))
    )
    with pytest.raises(StrategyError, match=r"^http_status: HTTP 400: bad image \[x\]$"):
        await p.complete(STRATEGY, IMAGE)


@pytest.mark.parametrize(
    ("response", "rest"),
    [
        (httpx2.Response(401, json=openrouter_error(401, "No auth credentials found")), "auth"),
        (httpx2.Response(402, json=openrouter_error(402, "requires more credits")), "credits"),
        (httpx2.Response(403, json=openrouter_error(403, "Your input was flagged")), None),
        (httpx2.Response(404, json=openrouter_error(404, "No endpoints found")), "unknown model"),
        (
            httpx2.Response(400, json=openrouter_error(400, "x/y is not a valid model ID")),
            "unknown model",
        ),
        (
            httpx2.Response(
                404,
                json={
                    "error": {
                        "message": "The model `gpt-9` does not exist",
                        "type": "invalid_request_error",
                        "code": "model_not_found",
                    }
                },
            ),
            "unknown model",
        ),
        (
            httpx2.Response(
                429, json=openrouter_error(429, "Rate limit exceeded: free-models-per-day")
            ),
            "quota",
        ),
        (httpx2.Response(503, headers={"x-should-retry": "false"}, json={}), None),
        (
            httpx2.Response(
                503, json={"message": "overloaded", "availability": {"retryable": False}}
            ),
            None,
        ),
    ],
)
async def test_never_retried_and_resting(
    response: httpx2.Response, rest: str | None, autojump_clock: trio.testing.MockClock
) -> None:
    p, seen = provider(scripted(response, completion()))
    with pytest.raises(StrategyError) as info:
        await p.complete(STRATEGY, IMAGE)
    assert info.value.kind == "http_status"
    assert len(seen) == 1
    status = Stats([STRATEGY], ledgers={"p": p.ledger}).by_strategy()["premium"]
    if rest is None:
        assert status.state == "ready"
        await p.complete(STRATEGY, IMAGE)  # the next call goes out
        assert len(seen) == 2
        return
    assert status.state == "resting"
    assert status.rest_reason is not None
    assert status.rest_reason.startswith(rest)
    assert status.rest_s is not None
    assert status.rest_s > 0
    with pytest.raises(StrategyError, match="resting") as again:
        await p.complete(STRATEGY, IMAGE)
    assert info.value.detail in again.value.detail  # the same explanation
    assert len(seen) == 1  # resting: nothing sent
    await trio.sleep(status.rest_s + 1)
    await p.complete(STRATEGY, IMAGE)
    assert len(seen) == 2


async def test_auth_rests_every_strategy_of_the_provider_and_credits_only_this_one(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A 401 is the caller's key: every strategy of the provider rests. A 402
    is about one request ("requires more credits, or fewer max_tokens"): the
    premium's 8192 tokens at its price may not be affordable while the fast
    model's are, so only the strategy that got it rests (review finding)."""
    p, seen = provider(scripted(httpx2.Response(401, json=openrouter_error(401, "bad key"))))
    with pytest.raises(StrategyError):
        await p.complete(STRATEGY, IMAGE)
    other = msgspec.structs.replace(STRATEGY, name="multimodal", model="fast-model")
    with pytest.raises(StrategyError, match=r"resting .*auth.*bad key"):
        await p.complete(other, IMAGE)
    assert len(seen) == 1
    poor = openrouter_error(
        402,
        "This request requires more credits, or fewer max_tokens. You requested up to "
        "8192 tokens, but can only afford 3000.",
    )
    p, seen = provider(scripted(httpx2.Response(402, json=poor), completion()))
    with pytest.raises(StrategyError, match="can only afford"):
        await p.complete(STRATEGY, IMAGE)
    with pytest.raises(StrategyError, match=r"resting .*credits"):
        await p.complete(STRATEGY, IMAGE)  # the same strategy rests
    assert (await p.complete(other, IMAGE)).text  # the cheap one still calls
    assert len(seen) == 2


@pytest.mark.parametrize(
    ("body", "cap"),
    [
        ({"error": {"code": 429, "message": "Rate limit exceeded: free-models-per-day"}}, True),
        (
            {
                "error": {
                    "code": 429,
                    "message": "You exceeded your current quota",
                    "type": "insufficient_quota",
                }
            },
            True,
        ),
        (
            {
                "error": {
                    "code": 429,
                    "message": "Provider returned error",
                    "metadata": {
                        "raw": "Resource has been exhausted (e.g. check quota).",
                        "provider_name": "Google AI Studio",
                    },
                }
            },
            False,
        ),
        (
            {
                "error": {
                    "code": 429,
                    "message": "Quota exceeded for aiplatform.googleapis.com/"
                    "generate_content_requests_per_minute_per_project_per_base_model",
                }
            },
            False,
        ),
        (
            [
                {
                    "error": {
                        "code": 429,
                        "message": "You exceeded your current quota, please check your plan",
                        "status": "RESOURCE_EXHAUSTED",
                        "details": [
                            {"quotaId": "GenerateRequestsPerMinutePerProjectPerModel-FreeTier"}
                        ],
                    }
                }
            ],
            False,
        ),
    ],
    ids=["per-day", "insufficient-quota", "check-quota", "per-minute", "gemini-list-body"],
)
def test_only_a_daily_cap_rests_a_429_for_the_minute_is_retried(body: Any, cap: bool) -> None:
    """Google's per-minute 429s say "quota" too: they were taken for a daily
    cap and rested the strategy for an hour (review finding)."""
    raw = json.dumps(body).encode()
    failure = provider_errors.describe(429, provider_errors.parse_body(raw), raw, where="p")
    assert failure.retryable is not cap
    assert (failure.rest is not None) is cap
    assert failure.detail.startswith("HTTP 429")
    assert "{" not in failure.detail[:60]  # the message, not the raw body


def test_403_is_never_retried_whatever_x_should_retry_says() -> None:
    for status in (401, 402, 403):
        failure = provider_errors.describe(status, None, b"", where="p", should_retry="true")
        assert failure.retryable is False


async def test_a_key_echoed_by_the_provider_never_reaches_status_or_the_error(
    autojump_clock: trio.testing.MockClock,
) -> None:
    echoed = httpx2.Response(401, json={"error": {"message": "Invalid API key: sk-test"}})
    p, _ = provider(scripted(echoed))
    with pytest.raises(StrategyError) as info:
        await p.complete(STRATEGY, IMAGE)
    assert "sk-test" not in info.value.detail
    assert "***" in info.value.detail
    resting = p.ledger.resting(STRATEGY.name)
    assert resting is not None
    assert "sk-test" not in resting.detail


def test_a_broken_gzip_body_is_a_connection_error_not_a_crash() -> None:
    """httpx2.DecodingError is not a TransportError: a body whose gzip is
    broken escaped as an internal error (review finding)."""
    with pytest.raises(providers._Retryable) as info, providers._transport_errors("reading"):
        raise httpx2.DecodingError("Error -3 while decompressing data")
    assert info.value.error.kind == "connection"


async def test_a_long_retry_after_fails_at_once(autojump_clock: trio.testing.MockClock) -> None:
    limited = httpx2.Response(429, headers={"Retry-After": "120"}, json={})
    p, seen = provider(scripted(limited, completion()))
    with trio.fail_after(300), pytest.raises(StrategyError, match="asks to wait 120s") as info:
        await p.complete(STRATEGY, IMAGE)
    assert info.value.kind == "http_status"
    assert len(seen) == 1
    assert trio.current_time() == 0
    # The body's retry_after_seconds counts when the header is absent.
    body = openrouter_error(429, "Provider returned error", retry_after_seconds=40)
    p, seen = provider(scripted(httpx2.Response(429, json=body), completion()))
    with trio.fail_after(20), pytest.raises(StrategyError, match="asks to wait 40s"):
        await p.complete(STRATEGY, IMAGE)
    assert len(seen) == 1


async def test_a_200_carrying_an_error_is_a_provider_error(
    autojump_clock: trio.testing.MockClock,
) -> None:
    failed = httpx2.Response(
        200,
        json={
            "model": "slow-model",
            "choices": [
                {
                    "message": {"role": "assistant", "content": ""},
                    "finish_reason": "error",
                    "error": {
                        "code": 502,
                        "message": "Provider disconnected",
                        "metadata": {"provider_name": "Anthropic"},
                    },
                }
            ],
        },
    )
    p, seen = provider(scripted(failed, completion()))
    result = await p.complete(STRATEGY, IMAGE)
    assert (result.attempts, len(seen)) == (2, 2)  # retried, as a 502 is
    p, _ = provider(scripted(failed))
    with pytest.raises(StrategyError) as info:
        await p.complete(STRATEGY, IMAGE)
    assert info.value.kind == "http_status"
    assert "in a 200: HTTP 502 from Anthropic" in info.value.detail
    assert "Provider disconnected" in info.value.detail
    top = httpx2.Response(200, json=openrouter_error(429, "Rate limit exceeded: per-day cap"))
    p, _ = provider(scripted(top))
    with pytest.raises(StrategyError, match="per-day"):
        await p.complete(STRATEGY, IMAGE)


async def test_truncation_is_named(autojump_clock: trio.testing.MockClock) -> None:
    cut = completion('{"participants": {"user": null}, "layout": {"le')
    data = cut.json()
    data["choices"][0]["finish_reason"] = "length"
    p, seen = provider(scripted(httpx2.Response(200, json=data)))
    with pytest.raises(StrategyError) as info:
        await p.complete(msgspec.structs.replace(STRATEGY, max_tokens=300), IMAGE)
    assert info.value.kind == "invalid_output"
    assert info.value.detail.startswith("truncated: the answer reached the max_tokens cap of 300")
    assert len(seen) == 1


async def test_cost_and_serving_provider(autojump_clock: trio.testing.MockClock) -> None:
    usage = {"prompt_tokens": 1200, "completion_tokens": 300, "total_tokens": 1500, "cost": 0.0021}
    p, _ = provider(scripted(completion(usage=usage, provider="Google AI Studio")))
    result = await p.complete(STRATEGY, IMAGE)
    assert result.usage is not None
    assert result.usage.cost == pytest.approx(0.0021)
    assert result.served_by == "Google AI Studio"
    await p.complete(STRATEGY, IMAGE)
    status = Stats([STRATEGY], ledgers={"p": p.ledger}).by_strategy()["premium"]
    assert status.cost_usd == pytest.approx(0.0042)
    assert status.served_by == {"Google AI Studio": 2}


async def test_an_image_url_to_a_provider_that_cannot_fetch_it(
    autojump_clock: trio.testing.MockClock,
) -> None:
    p, seen = provider(scripted(completion()), fetch_image_urls=False)
    with pytest.raises(StrategyError) as info:
        await p.complete(STRATEGY, ImageInput("https://img.example/1.png"))
    assert info.value.kind == "not_configured"
    assert "cannot fetch image URLs" in info.value.detail
    assert seen == []
    await p.complete(STRATEGY, IMAGE)  # data URLs still go


async def test_the_fake_refuses_unknown_model_ids() -> None:
    with FakeProvider({"fast-model": Script()}) as fake:
        p = Provider.from_config("fake", ProviderConfig(base_url=fake.base_url))
        gone = msgspec.structs.replace(STRATEGY, model="google/gemini-2.0-flash-exp:free")
        try:
            with pytest.raises(StrategyError) as info:
                await p.complete(gone, IMAGE)
            assert "HTTP 400" in info.value.detail
            assert "gemini-2.0-flash-exp:free is not a valid model ID" in info.value.detail
            assert fake.calls(gone.model) == 1  # not retried
            assert p.ledger.resting(gone.name) is not None
            fast = msgspec.structs.replace(STRATEGY, name="multimodal", model="fast-model")
            result = await p.complete(fast, IMAGE)
            assert result.served_by == "FakeCloud"
            assert result.usage is not None
            assert result.usage.cost is not None
        finally:
            await p.aclose()


async def test_a_string_that_is_not_utf8_is_invalid_output(
    autojump_clock: trio.testing.MockClock,
) -> None:
    body = b'{"choices":[{"message":{"content":"\xff\xfe"}}]}'
    p, _ = provider(scripted(httpx2.Response(200, content=body)))
    with pytest.raises(StrategyError) as info:
        await p.complete(STRATEGY, IMAGE)
    assert info.value.kind == "invalid_output"


async def test_a_large_screenshot_is_sent_downscaled_with_its_size_stated() -> None:
    """Real clock: the preparation runs in a thread (autojump would jump over it)."""
    import base64
    import io

    from PIL import Image

    from daemon.extract import parse_completion

    img = Image.new("RGB", (1440, 3200), "white")
    raw = io.BytesIO()
    img.save(raw, "PNG")
    big = ImageInput.from_bytes(raw.getvalue(), "image/png")
    scripts = {"slow-model": Script()}
    p, seen = provider(mock_handler(scripts))
    prepare_calls = 0
    real_prepare = images_module.prepare

    def counting(url: str) -> Any:
        nonlocal prepare_calls
        prepare_calls += 1
        return real_prepare(url)

    images_module.prepare = counting
    try:
        results: list[Any] = []
        async with trio.open_nursery() as nursery:  # two legs, one preparation
            for name in ("premium", "multimodal"):
                strategy = msgspec.structs.replace(STRATEGY, name=name)

                async def leg(strategy: StrategyConfig = strategy) -> None:
                    results.append(await p.complete(strategy, big))

                nursery.start_soon(leg)
    finally:
        images_module.prepare = real_prepare
    assert prepare_calls == 1
    body = json.loads(seen[0].content)
    text, image = body["messages"][1]["content"]
    assert "The image is 706x1568 pixels" in text["text"]
    url = image["image_url"]["url"]
    sent = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))
    assert sent.size == (706, 1568)
    result = results[0]
    assert (result.image_size, result.original_size) == ((706, 1568), (1440, 3200))
    step = parse_completion(result.text, result.image_size, result.original_size)
    # The fake drew its boxes inside the 706x1568 it was told; ctxd scales them back.
    assert all(b.bbox[2] <= 1440 and b.bbox[3] <= 3200 for b in step.bubbles)
    assert step.bubbles[1].bbox[2] > 706


async def test_a_400_about_something_else_is_not_an_unknown_model(
    autojump_clock: trio.testing.MockClock,
) -> None:
    body = openrouter_error(400, "messages[1].content[0]: field `foo` does not exist")
    p, seen = provider(scripted(httpx2.Response(400, json=body), completion()))
    with pytest.raises(StrategyError, match="does not exist"):
        await p.complete(STRATEGY, IMAGE)
    await p.complete(STRATEGY, IMAGE)  # no rest: the next call goes out
    assert len(seen) == 2
