"""daemon/model_list.py: configured ids against the provider's model list, at start."""

from __future__ import annotations

import logging

import httpx2
import pytest
import trio.testing

from daemon.config import ProviderConfig, StrategyConfig
from daemon.model_list import check_models
from daemon.providers import Provider
from tests.fake_provider import Script, mock_handler


def strategy(name: str, model: str, provider: str = "or", **extra: object) -> StrategyConfig:
    return StrategyConfig(name=name, provider=provider, model=model, **extra)  # type: ignore[arg-type]


def provider(handler: object, name: str = "or") -> Provider:
    cfg = ProviderConfig(base_url="https://openrouter.ai/api/v1")
    return Provider.from_config(name, cfg, transport=httpx2.MockTransport(handler))  # type: ignore[arg-type]


async def test_each_problem_is_one_warning(
    caplog: pytest.LogCaptureFixture, autojump_clock: trio.testing.MockClock
) -> None:
    scripts = {
        "google/gemini-3.1-flash-lite": Script(),
        "anthropic/claude-sonnet-4.6": Script(),
        "text/only": Script(modalities=["text"]),
        "no/schema": Script(structured=False),
    }
    strategies = [
        strategy("ok", "google/gemini-3.1-flash-lite"),
        strategy("gone", "google/gemini-2.0-flash-exp:free"),
        strategy("typo", "anthropic/claude-sonnet-4-6"),
        strategy("blind", "text/only"),
        strategy("loose", "no/schema"),
        strategy("loose-off", "no/schema", structured_output=False),
    ]
    p = provider(mock_handler(scripts))
    with caplog.at_level(logging.WARNING, logger="daemon.model_list"):
        found = await check_models({"or": p}, strategies)
    assert len(found) == 4
    assert [r.getMessage() for r in caplog.records] == found
    gone, typo, blind, loose = found
    assert "'google/gemini-2.0-flash-exp:free' is not in or's model list (4 models)" in gone
    assert "did you mean anthropic/claude-sonnet-4.6" in typo
    assert "takes no images" in blind
    assert "strategy loose:" in loose
    assert "structured outputs" in loose


async def test_a_provider_without_a_model_list_is_skipped_quietly(
    caplog: pytest.LogCaptureFixture, autojump_clock: trio.testing.MockClock
) -> None:
    async def no_list(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(404, text="Not Found")

    async def broken(request: httpx2.Request) -> httpx2.Response:
        raise httpx2.ConnectError("refused")

    async def hangs(request: httpx2.Request) -> httpx2.Response:
        await trio.sleep_forever()
        raise AssertionError

    providers = {"a": provider(no_list, "a"), "b": provider(broken, "b"), "c": provider(hangs, "c")}
    strategies = [strategy(n, "some/model", provider=n) for n in providers]
    with caplog.at_level(logging.WARNING):
        assert await check_models(providers, strategies) == []
    assert caplog.records == []


async def test_a_broken_list_or_a_variant_id_never_stops_the_start_nor_warns(
    caplog: pytest.LogCaptureFixture, autojump_clock: trio.testing.MockClock
) -> None:
    """A "gzip" list that is not (a broken proxy) raised DecodingError out of
    the check, which runs in the daemon's root nursery: the daemon died at
    start. OpenRouter's variants (":nitro", ":online") and presets ("@...")
    are not in the list but are valid ids (review findings)."""

    async def not_gzip(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(
            200, headers={"Content-Encoding": "gzip"}, stream=httpx2.ByteStream(b"not gzip")
        )

    strategies = [strategy("a", "some/model", provider="a")]
    with caplog.at_level(logging.WARNING):
        assert await check_models({"a": provider(not_gzip, "a")}, strategies) == []
    p = provider(mock_handler({"google/gemini-3.1-flash-lite": Script()}))
    variants = [
        strategy("fast", "google/gemini-3.1-flash-lite:nitro"),
        strategy("web", "google/gemini-3.1-flash-lite:online"),
        strategy("preset", "@preset/screenshots"),
    ]
    with caplog.at_level(logging.WARNING):
        assert await check_models({"or": p}, variants) == []
    assert caplog.records == []
