"""A strategy that can never run (no API key) is known at start (issue 13,
point 3): left out of races and upgrades, one log line at start, ``state:
not_configured`` in status; the next start with its key takes it back."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest

from tests.live import RawPeer, fake_models, live_config, screenshot, serving

NO_KEY = "CTXD_TEST_PREMIUM_KEY"


def two_providers(fake_url: str) -> dict[str, Any]:
    return {
        "providers": {
            "fake": {"base_url": fake_url, "api_key_env": "CTXD_TEST_KEY"},
            "premium_host": {"base_url": fake_url, "api_key_env": NO_KEY},
        },
        "strategies": [
            {"name": "multimodal", "provider": "fake", "model": "fast-model", "rank": 1},
            {"name": "premium", "provider": "premium_host", "model": "slow-model", "rank": 2},
        ],
    }


async def test_a_strategy_without_its_key_is_left_out_until_a_start_with_it(
    short_tmp: Path, monkeypatch: pytest.MonkeyPatch, log: io.StringIO
) -> None:
    monkeypatch.setenv("CTXD_TEST_KEY", "sk-test")
    monkeypatch.delenv(NO_KEY, raising=False)
    with fake_models() as fake:
        config = live_config(short_tmp, fake, **two_providers(fake.base_url))
        shot = screenshot(config, "a.png")
        params = {"conversation_id": "c", "image": {"path": shot}}
        async with serving(config):
            peer = await RawPeer.open(config)
            miss = (await peer.call("analyze", params))["result"]
            hits = [(await peer.call("analyze", params))["result"] for _ in range(3)]
            best = await peer.call("analyze", {**params, "wait": "best"})
            status = (await peer.call("status"))["result"]
            await peer.aclose()
        assert miss["provenance"]["strategy"] == "multimodal"
        assert miss["pending"] == []  # premium never started
        assert all(h["provenance"]["cached"] and h["pending"] == [] for h in hits)
        # the best that can run is the best there is
        assert best["result"]["provenance"]["strategy"] == "multimodal"
        premium = status["strategies"]["premium"]
        assert premium["state"] == "not_configured"
        assert premium["rest_reason"] == f"{NO_KEY} is not set"
        assert (premium["calls"], premium["errors"]) == (0, 0)
        assert status["strategies"]["multimodal"]["state"] == "ready"
        assert status["cache"]["upgrades"] == 0
        assert fake.calls("slow-model") == 0
        lines = [line for line in log.getvalue().splitlines() if "premium" in line]
        assert len(lines) == 1, lines  # said once, at start; no warning per race
        assert "premium: not_configured" in lines[0]
        assert "left out of races and upgrades" in lines[0]

        # The next start, with the key: premium races again (an upgrade on the hit).
        monkeypatch.setenv(NO_KEY, "sk-premium")
        log.truncate(0)
        async with serving(config):
            peer = await RawPeer.open(config)
            status = (await peer.call("status"))["result"]
            hit = (await peer.call("analyze", params))["result"]
            await peer.aclose()
        assert status["strategies"]["premium"]["state"] == "ready"
        assert hit["provenance"]["cached"] is True
        assert hit["pending"] == ["premium"]
        assert "not_configured" not in log.getvalue()


async def test_when_nothing_can_run_the_error_still_says_why(
    short_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CTXD_TEST_KEY", raising=False)
    monkeypatch.delenv(NO_KEY, raising=False)
    with fake_models() as fake:
        config = live_config(short_tmp, fake, **two_providers(fake.base_url))
        shot = screenshot(config, "a.png")
        async with serving(config):
            peer = await RawPeer.open(config)
            answer = await peer.call("analyze", {"conversation_id": "c", "image": {"path": shot}})
            await peer.aclose()
    assert answer["error"]["code"] == -32001
    assert answer["error"]["data"]["strategies"] == {
        "multimodal": {"error": "not_configured", "detail": "CTXD_TEST_KEY is not set"},
        "premium": {"error": "not_configured", "detail": f"{NO_KEY} is not set"},
    }
    assert fake.requests == []
