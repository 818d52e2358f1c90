"""clients/ctl.py without a daemon: formatting, exit codes, socket discovery."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import msgspec
import pytest

from clients import ctl
from daemon.analysis import RaceManager
from daemon.service import Service
from daemon.stats import Stats
from daemon.store import Store
from daemon.supervisor import Supervisor
from tests.conftest import ConfigFactory


class StubClient:
    def __init__(self, replies: dict[str, Any]) -> None:
        self.replies = replies
        self.calls: list[tuple[str, Any]] = []

    def call(self, method: str, params: Any = None, timeout: float | None = None) -> Any:
        self.calls.append((method, params))
        return self.replies[method]


async def real_status(make_config: ConfigFactory, state: str) -> dict[str, Any]:
    config = make_config()
    store = Store.open(config.store, config.rank_of())
    races = RaceManager(config, store, Supervisor(8), {}, Stats(config.strategies))
    service = Service(config, Supervisor(8), store, races)
    service.state = state  # type: ignore[assignment]
    try:
        result: dict[str, Any] = msgspec.to_builtins(await service.status(None))  # type: ignore[arg-type]
    finally:
        store.close()
    return result


@pytest.mark.parametrize(("state", "code"), [("serving", 0), ("draining", 1), ("starting", 1)])
async def test_status_exit_code_follows_the_state(
    make_config: ConfigFactory, state: str, code: int, capsys: pytest.CaptureFixture[str]
) -> None:
    status = await real_status(make_config, state)
    args = argparse.Namespace(command="status", json=False)
    assert ctl.run(StubClient({"status": status}), args) == code  # type: ignore[arg-type]
    out = capsys.readouterr().out
    assert state in out.splitlines()[0]


async def test_readable_status_is_a_table(make_config: ConfigFactory) -> None:
    status = await real_status(make_config, "draining")
    status["drain"]["deadline_s"] = 12.0
    status["background"]["by_strategy"] = {"premium": 3}
    status["background"]["count"] = 3
    status["cache"].update(hits=30, misses=10)
    status["strategies"]["premium"].update(
        calls=7, wins=5, latency_ms={"p50": 900.0, "p95": 1500.0, "p99": 2100.4}
    )
    text = ctl.format_status(status)
    assert "draining: 12s until the rest is cancelled" in text
    assert "background 3/8 (premium 3)" in text
    assert "hit rate 75.0%" in text
    header, *rows = text.split("\n\n")[1].splitlines()
    assert header.split()[:3] == ["strategy", "model", "rank"]
    assert rows[0].split()[0] == "premium"  # highest rank first
    assert rows[0].split()[-3:] == ["900", "1500", "2100"]


def test_events_and_analysis_formatting() -> None:
    events = [
        {
            "id": 3,
            "ts": 0.0,
            "category": "context_analysis",
            "strategy": "premium",
            "model": "anthropic/claude-3.5-sonnet",
            "scene": "",
            "resource": "sha256:" + "a" * 64,
        },
    ]
    text = ctl.format_events(events)
    assert "premium" in text
    assert "sha256:aaaaaaaaaaaaaaaaaaaa..." in text
    assert ctl.format_events([]) == "no events"
    analysis = {
        "result": {
            "participants": {"user": "Zhang", "talker": "徐康"},
            "layout": {"left": "talker", "right": "user"},
            "bubbles": [],
            "conversation": [
                {"speaker": "talker", "text": "真的假的"},
                {"speaker": "user", "text": "ok"},
            ],
            "summary": None,
        },
        "provenance": {
            "strategy": "multimodal",
            "model": "m",
            "cached": False,
            "event_id": 1,
            "created_at": 0.0,
            "latency_ms": 512.3,
        },
        "pending": ["premium"],
    }
    text = ctl.format_analysis(analysis, "demo")
    assert "[multimodal | m | fresh, 512 ms]" in text
    assert "talker: 真的假的" in text
    assert "still running in the background: premium" in text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("socket:\n  path: var/x.sock\n", "var/x.sock"),
        ("socket:\n  mode: 0660\n  path: 'q.sock'   # comment\n", "q.sock"),
        ('store:\n  path: s\nsocket:\n  path: "/run/ctxd.sock"\n', "/run/ctxd.sock"),
        ("store:\n  path: s\n", None),
    ],
)
def test_socket_from_config(tmp_path: Path, text: str, expected: str | None) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(text)
    found = ctl.socket_from_config(config)
    if expected is None:
        assert found is None
    else:
        assert found == str(expected if expected.startswith("/") else tmp_path / expected)


# ------------------------------------------------ issue 13, point 5 ---


def test_help_shows_the_socket_lookup_and_the_exit_codes(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as info:
        ctl.main(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert "see --help" not in out
    assert "--socket, else $CTXD_SOCKET, else socket.path of ./config.yaml" in out
    assert "0 serving, 1 draining or starting, 2 unreachable" in out
    assert "64" in out


@pytest.mark.parametrize(
    "argv",
    [["bogus"], ["events"], ["analyze", "a.png"], ["--timeout", "x", "health"], ["status", "-x"]],
)
def test_a_usage_error_exits_64_not_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        ctl.main(argv)
    assert info.value.code == ctl.EXIT_USAGE == 64
    assert "usage:" in capsys.readouterr().err


def test_events_limit_defaults_to_the_apis_50(monkeypatch: pytest.MonkeyPatch) -> None:
    client = _Closing({"events.list": {"events": [], "next_before_id": None}})
    monkeypatch.setattr(ctl, "Client", lambda *a, **k: client)
    assert ctl.main(["--socket", "/nowhere", "events", "c1"]) == 0
    assert client.calls == [("events.list", {"session_id": "c1", "limit": 50})]


class _Closing(StubClient):
    def __enter__(self) -> StubClient:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


def test_analyze_sends_a_relative_path_made_absolute_here(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    answer = {
        "result": {
            "participants": {"user": None, "talker": None},
            "layout": {"left": "talker", "right": "user"},
            "bubbles": [],
            "conversation": [],
            "summary": None,
        },
        "provenance": {
            "strategy": "local",
            "model": "m",
            "cached": False,
            "event_id": 1,
            "created_at": 0.0,
            "latency_ms": 1.0,
        },
        "pending": [],
    }
    client = StubClient({"analyze": answer})
    args = argparse.Namespace(
        command="analyze",
        image="shots/a.png",
        conversation="c",
        scene="",
        wait="first",
        refresh=False,
        json=False,
        timeout=10.0,
    )
    assert ctl.run(client, args) == 0  # type: ignore[arg-type]
    assert client.calls[0][1]["image"] == {"path": str(tmp_path / "shots" / "a.png")}


BROKEN_PIPE = """
import sys
sys.path.insert(0, {root!r})
from clients import ctl

class Stub:
    def __enter__(self): return self
    def __exit__(self, *exc): pass
    def call(self, method, params=None, timeout=None):
        if method == "status":  # more than a pipe holds
            return {{"state": "draining", "padding": ["x" * 100] * 5000}}
        event = {{"id": 1, "ts": 0.0, "category": "context_analysis", "strategy": "s",
                  "model": "m", "scene": "", "resource": "r" * 20}}
        return {{"events": [event] * params["limit"], "next_before_id": None}}

ctl.Client = lambda *a, **k: Stub()
sys.exit(ctl.main(["--socket", "/nowhere"] + {argv!r}))
"""


@pytest.mark.parametrize(
    ("argv", "code"),
    [
        (["events", "c", "--limit", "1000", "--json"], 0),
        (["status", "--json"], 1),  # draining: its status, even cut short
    ],
)
def test_output_cut_short_by_its_reader_ends_quietly(argv: list[str], code: int) -> None:
    """``ctl.py events ... | head``: no BrokenPipeError traceback, and the
    exit status is the command's (``status`` of a draining daemon: 1, not 0)."""
    import subprocess
    import sys

    root = str(Path(ctl.__file__).resolve().parent.parent)
    proc = subprocess.Popen(
        [sys.executable, "-c", BROKEN_PIPE.format(root=root, argv=argv)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None
    assert proc.stderr is not None
    proc.stdout.read(10)
    proc.stdout.close()  # the reader is gone: like `| head -c 10`
    err = proc.stderr.read().decode()
    proc.stderr.close()
    assert proc.wait(30) == code, err
    assert err == ""


def test_socket_help_names_every_place_it_looks() -> None:
    parser_help = ctl_help()
    assert "--socket SOCKET" in parser_help
    text = " ".join(parser_help[parser_help.rindex("--socket SOCKET") :].split())
    assert text.startswith(
        "--socket SOCKET daemon socket (default: $CTXD_SOCKET, else socket.path of "
        "./config.yaml, else var/ctxd.sock)"
    )


def ctl_help() -> str:
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        ctl.main(["--help"])
    return out.getvalue()


async def test_status_names_the_strategies_left_out(make_config: ConfigFactory) -> None:
    status = await real_status(make_config, "serving")
    status["strategies"]["premium"].update(
        state="not_configured", rest_reason="OPENROUTER_API_KEY is not set"
    )
    text = ctl.format_status(status)
    assert text.splitlines()[-1] == (
        "not configured, left out of races: premium (OPENROUTER_API_KEY is not set)"
    )
