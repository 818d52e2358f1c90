"""Config: typed, strict, one line naming the key, exit 78."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from daemon.__main__ import main
from daemon.config import load_config
from daemon.errors import ConfigError
from daemon.ocr.worker import engine_name
from tests.conftest import config_data, write_config

ROOT = Path(__file__).resolve().parent.parent


def test_shipped_config_loads_from_a_fresh_checkout() -> None:
    config = load_config(ROOT / "config.yaml")
    assert config.socket.path == str(ROOT / "var" / "ctxd.sock")
    assert config.store.path == str(ROOT / "var" / "store")
    assert config.socket.file_mode == 0o660
    by_name = {s.name: s for s in config.strategies}
    assert by_name["multimodal"].model == "google/gemini-3.1-flash-lite"
    assert by_name["multimodal"].rank == 1
    assert by_name["premium"].model == "anthropic/claude-sonnet-4.6"
    assert by_name["premium"].rank == 2
    local = by_name["local"]  # the offline strategy, below both models
    assert (local.kind, local.rank, local.workers, local.user_side) == ("local_ocr", 0, 1, "right")
    # one name everywhere (issue 13, point 6): the name its workers give results
    assert local.model == engine_name() == "rapidocr-onnxruntime 1.4.4"
    assert config.inputs.allowed_dirs[-1] == str(ROOT / "examples")
    assert config.providers["openrouter"].api_key_env == "OPENROUTER_API_KEY"
    assert config.llm.premium_cache_timeout == 30
    assert config.llm.upgrade_retry_after == 600
    assert config.shutdown.drain_timeout == 30


def test_defaults_and_relative_paths(tmp_path: Path) -> None:
    path = tmp_path / "conf" / "ctxd.yaml"
    path.parent.mkdir()
    path.write_text("socket: {path: run/c.sock}\ninputs: {allowed_dirs: [shots, /abs]}\n")
    config = load_config(path)
    assert config.socket.path == str(path.parent / "run" / "c.sock")
    assert config.store.path == str(path.parent / "var" / "store")
    assert config.inputs.allowed_dirs == [str(path.parent / "shots"), "/abs"]
    assert config.socket.max_message_bytes == 16 * 1024 * 1024
    assert config.socket.max_connections == 1024
    assert config.socket.idle_timeout == 300
    assert config.llm.max_background_tasks == 64
    assert config.store.max_events_per_key == 20


def test_empty_file_is_all_defaults(tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text("")
    assert load_config(tmp_path / "c.yaml").strategies == []


def bad(tmp_path: Path, **sections: Any) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(write_config(tmp_path, **sections))
    message = str(info.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize(
    ("sections", "expected"),
    [
        ({"socket": {"pathh": "x"}}, "socket.pathh: unknown key"),
        ({"sockets": {}}, "sockets: unknown key"),
        ({"socket": {"max_connections": "many"}}, "socket.max_connections: expected `int`"),
        ({"socket": {"idle_timeout": -1}}, "socket.idle_timeout: expected `float` > 0"),
        ({"socket": {"mode": "0999"}}, "socket.mode: '0999' is not an octal file mode"),
        ({"socket": {"mode": 4096}}, "socket.mode"),
        ({"llm": {"premium_cache_timeout": -5}}, "llm.premium_cache_timeout: expected `float` > 0"),
        ({"llm": {"max_background_tasks": 0}}, "llm.max_background_tasks: expected `int` >= 1"),
        ({"shutdown": {"drain_timeout": 0}}, "shutdown.drain_timeout"),
        ({"logging": {"level": "LOUD"}}, "logging.level"),
        ({"store": {"map_size_mb": 1.5}}, "store.map_size_mb: expected `int`"),
        ({"providers": {"p": {"base_url": "ftp://x"}}}, "providers.p.base_url: must be an http"),
        ({"providers": {"p": {}}}, "providers.p: object missing required field `base_url`"),
        (
            {"strategies": [{"name": "a", "provider": "fake", "model": "m", "timeout": -1}]},
            "strategies[0].timeout: expected `float` > 0",
        ),
        (
            {
                "strategies": [
                    {"name": "a", "provider": "fake", "model": "m", "rank": 1},
                    {"name": "a", "provider": "fake", "model": "n", "rank": 2},
                ]
            },
            "strategies[1].name: strategy name 'a' is used twice",
        ),
        (
            {"strategies": [{"name": "a", "provider": "fake", "model": "m", "workers": 2}]},
            "strategies[0].workers: only a local_ocr strategy takes this key",
        ),
        (
            {"strategies": [{"name": "a", "kind": "local_ocr", "workers": 0}]},
            "strategies[0].workers: expected `int` >= 1",
        ),
        (
            {"strategies": [{"name": "a", "kind": "local_ocr", "user_side": "top"}]},
            "strategies[0].user_side: invalid enum value 'top'",
        ),
        (
            {
                "strategies": [
                    {"name": "a", "provider": "fake", "model": "m", "rank": 1},
                    {"name": "b", "provider": "fake", "model": "n", "rank": 1},
                ]
            },
            "strategies[1].rank: rank 1 is already used by strategy 'a'",
        ),
        (
            {"strategies": [{"name": "a", "provider": "nope", "model": "m"}]},
            "strategies[0].provider: no provider named 'nope'",
        ),
        (
            {"strategies": [{"name": "a", "model": "m"}]},
            "strategies[0].provider: an openai_chat strategy needs a provider",
        ),
        (
            {"strategies": [{"name": "a", "kind": "local_ocr", "provider": "fake"}]},
            "strategies[0].provider: a local_ocr strategy takes no provider",
        ),
        (
            {"strategies": [{"name": "a", "kind": "magic"}]},
            "strategies[0].kind",
        ),
        ({"strategies": {"a": 1}}, "strategies: expected `array`"),
        (
            {"strategies": [{"name": "a", "provider": "fake", "model": "m", "max_tokens": 0}]},
            "strategies[0].max_tokens: expected `int` >= 1",
        ),
        (
            {"strategies": [{"name": "a", "provider": "fake", "model": "m", "temperature": 3}]},
            "strategies[0].temperature: expected `float` <= 2",
        ),
        (
            {"strategies": [{"name": "a", "provider": "fake", "model": "m", "temperature": "0"}]},
            "strategies[0].temperature: expected `float | null`",
        ),
        (
            {
                "strategies": [
                    {"name": "a", "provider": "fake", "model": "m", "structured_output": "yes"}
                ]
            },
            "strategies[0].structured_output: expected `bool | null`",
        ),
        (
            {"strategies": [{"name": "a", "provider": "fake", "model": "m", "extra_body": [1]}]},
            "strategies[0].extra_body: expected `object | null`",
        ),
        (
            {
                "strategies": [
                    {"name": "a", "provider": "fake", "model": "m", "extra_body": {"model": "x"}}
                ]
            },
            "strategies[0].extra_body.model: ctxd sets this field; use the strategy's key",
        ),
        (
            {"strategies": [{"name": "a", "kind": "local_ocr", "max_tokens": 100}]},
            "strategies[0].max_tokens: only an openai_chat strategy takes this key",
        ),
        (
            {"providers": {"p": {"base_url": "http://x", "max_tokens_field": "tokens"}}},
            "providers.p.max_tokens_field: invalid enum value 'tokens'",
        ),
        (
            {"providers": {"p": {"base_url": "http://x", "fetch_image_urls": "no"}}},
            "providers.p.fetch_image_urls: expected `bool`",
        ),
        ({"socket": {"path": "/tmp/" + "x" * 120}}, "socket.path"),
        ({"llm": {"max_races": 0}}, "llm.max_races: expected `int` >= 1"),
        (
            {"llm": {"max_race_image_mb": 10}},  # a 10 MiB screenshot is 13.3 MiB as sent
            "llm.max_race_image_mb: 10 MiB cannot hold one screenshot of inputs.max_image_bytes",
        ),
    ],
)
def test_bad_values_name_the_key(tmp_path: Path, sections: dict[str, Any], expected: str) -> None:
    assert expected in bad(tmp_path, **sections)


def test_yaml_syntax_error_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("socket:\n  path: [unclosed\n")
    with pytest.raises(ConfigError, match=r"YAML error at line \d+"):
        load_config(path)


def test_top_level_must_be_a_mapping(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_config(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "absent.yaml")


def test_main_exits_78_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = config_data(tmp_path, llm={"request_timeout": -1})
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    assert main(["--config", str(path)]) == 78
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "llm.request_timeout" in err


def test_ctxd_config_env_chooses_the_file(tmp_path: Path) -> None:
    good = write_config(tmp_path)
    env = {**os.environ, "CTXD_CONFIG": str(good)}
    result = subprocess.run(
        [sys.executable, "-m", "daemon", "--check-config"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert str(good) in result.stdout
    bad_path = tmp_path / "bad.yaml"
    bad_path.write_text("socket: {nope: 1}\n")
    result = subprocess.run(
        [sys.executable, "-m", "daemon"],
        env={**os.environ, "CTXD_CONFIG": str(bad_path)},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 78
    assert result.stderr.strip() == f"ctxd: config error: {bad_path}: socket.nope: unknown key"


def test_secrets_are_the_present_api_keys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CTXD_TEST_KEY", "sk-secret-value")
    assert load_config(write_config(tmp_path)).secrets() == ["sk-secret-value"]
    monkeypatch.delenv("CTXD_TEST_KEY")
    assert load_config(write_config(tmp_path)).secrets() == []


def test_ctxd_command_is_installed_beside_python_m_daemon(tmp_path: Path) -> None:
    ctxd = Path(sys.executable).parent / "ctxd"
    assert ctxd.exists(), "pip install -e . should install the ctxd console script"
    good = write_config(tmp_path)
    result = subprocess.run(
        [str(ctxd), "--config", str(good), "--check-config"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    version = subprocess.run([str(ctxd), "--version"], capture_output=True, text=True, check=True)
    assert version.stdout.startswith("ctxd ")


def test_fd_limit_is_raised_towards_the_hard_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    import resource

    from daemon.__main__ import raise_fd_limit

    calls: list[tuple[int, int]] = []
    monkeypatch.setattr(resource, "getrlimit", lambda _: (1024, 8192))
    monkeypatch.setattr(resource, "setrlimit", lambda _, limits: calls.append(limits))
    raise_fd_limit(4000)
    assert calls == [(4000, 8192)]
    raise_fd_limit(100_000)
    assert calls[-1] == (8192, 8192)  # never past the hard limit
    calls.clear()
    monkeypatch.setattr(resource, "getrlimit", lambda _: (50_000, 65536))
    raise_fd_limit(4000)
    assert calls == []  # already enough


def test_the_per_strategy_request_keys(tmp_path: Path) -> None:
    sections: dict[str, Any] = dict(
        providers={
            "fake": {"base_url": "http://127.0.0.1:1/v1"},
            "local": {
                "base_url": "http://127.0.0.1:8080/v1",
                "fetch_image_urls": False,
                "max_tokens_field": "max_completion_tokens",
            },
        },
        strategies=[
            {
                "name": "a",
                "provider": "fake",
                "model": "m",
                "max_tokens": 2000,
                "temperature": 0.3,
                "structured_output": False,
                "extra_body": {"provider": {"data_collection": "deny"}},
            },
            {"name": "b", "provider": "local", "model": "n", "rank": 1},
        ],
    )
    config = load_config(write_config(tmp_path, **sections))
    a, b = config.strategies
    assert (a.max_tokens, a.temperature, a.structured_output) == (2000, 0.3, False)
    assert a.extra_body == {"provider": {"data_collection": "deny"}}
    assert (b.max_tokens, b.temperature, b.structured_output, b.extra_body) == (None,) * 4
    local = config.providers["local"]
    assert (local.fetch_image_urls, local.max_tokens_field) == (False, "max_completion_tokens")
    assert config.providers["fake"].fetch_image_urls is True


def test_the_shipped_model_ids_are_current() -> None:
    """The seed's ids are gone from OpenRouter (issue 19); they survive only
    as examples of the log format in the docs."""
    shipped = (ROOT / "config.yaml").read_text()
    for gone in ("gemini-2.0-flash-exp", "claude-3.5-sonnet"):
        assert gone not in shipped
    by_name = {s.name: s for s in load_config(ROOT / "config.yaml").strategies}
    for name in ("multimodal", "premium"):
        assert by_name[name].max_tokens is not None
        assert by_name[name].structured_output is True
        assert by_name[name].temperature is None
