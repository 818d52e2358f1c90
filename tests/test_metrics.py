"""daemon/metrics.py: ``metrics.listen``, Prometheus text from a live daemon."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from clients.client import Client, RpcError
from daemon.config import load_config
from daemon.errors import ConfigError
from tests.conftest import config_data
from tests.fake_provider import FakeProvider, Script
from tests.process import Daemon

PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 200


def http_get(path: str, target: str = "/metrics", method: str = "GET") -> tuple[int, bytes]:
    """(status, body) of one HTTP/1.1 request over the Unix socket at ``path``
    (waiting up to 10 s for it: the daemon binds it after its main socket)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(10)
        connect(sock, path)
        sock.sendall(f"{method} {target} HTTP/1.1\r\nHost: ctxd\r\n\r\n".encode())
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    head, _, body = reply.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


def connect(sock: socket.socket, path: str) -> None:
    deadline = time.monotonic() + 10
    while True:
        try:
            sock.connect(path)
            return
        except (FileNotFoundError, ConnectionRefusedError):
            assert time.monotonic() < deadline, f"nothing listens on {path}"
            time.sleep(0.02)


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(path: str) -> Samples:
    status, body = http_get(path)
    assert status == 200
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(body.decode())
        for s in family.samples
    }


def sample(samples: Samples, name: str, **labels: str) -> float:
    return samples[name, frozenset(labels.items())]


@pytest.fixture
def fake() -> Iterator[FakeProvider]:
    with FakeProvider({"fast-model": Script(latency=0.05), "slow-model": Script(latency=0.2)}) as f:
        yield f


@pytest.mark.process
def test_a_live_daemon_serves_prometheus_text_that_agrees_with_status(
    short_tmp: Path, fake: FakeProvider
) -> None:
    """Misses, a hit, an unknown method and a store write, then one scrape,
    parsed by prometheus_client's own parser: each counter is the figure
    ``status`` gives, the histograms are whole, the requests are counted
    by method and outcome."""
    shots = short_tmp / "shots"
    shots.mkdir()
    (shots / "a.png").write_bytes(PNG)
    metrics_path = str(short_tmp / "metrics.sock")
    daemon = Daemon(
        short_tmp,
        env={"CTXD_TEST_KEY": "sk-metrics"},
        providers={"fake": {"base_url": fake.base_url, "api_key_env": "CTXD_TEST_KEY"}},
        inputs={"allowed_dirs": [str(shots)]},
        metrics={"listen": f"unix:{metrics_path}"},
    ).start()
    try:
        with Client(daemon.socket_path) as client:
            params = {"conversation_id": "m1", "image": {"path": str(shots / "a.png")}}
            assert client.call("analyze", params, timeout=30)["provenance"]["cached"] is False
            deadline = time.monotonic() + 15
            while client.call("status")["background"]["count"]:  # the premium leg
                assert time.monotonic() < deadline
                time.sleep(0.02)
            assert client.call("analyze", params)["provenance"]["cached"] is True
            with pytest.raises(RpcError):
                client.call("no.such.method")
            client.call(
                "events.append",
                {"session_id": "m2", "category": "c", "resource": "r", "payload": {}},
            )
            samples = scrape(metrics_path)
            status = client.call("status")
    finally:
        daemon.signal()
        assert daemon.wait() == 0
    cache = status["cache"]
    for name in ("hits", "misses", "coalesced", "upgrades"):
        assert sample(samples, f"ctxd_cache_{name}_total") == cache[name], name
    assert cache["hits"] == 1
    assert cache["misses"] == 1
    for name, figures in status["strategies"].items():
        labels = {"strategy": name, "model": figures["model"]}
        for key in ("calls", "wins", "invalid", "errors", "timeouts", "cancelled", "tokens"):
            assert sample(samples, f"ctxd_strategy_{key}_total", **labels) == figures[key], key
        count = sample(samples, "ctxd_strategy_latency_seconds_count", strategy=name)
        assert (
            sample(samples, "ctxd_strategy_latency_seconds_bucket", strategy=name, le="+Inf")
            == count
        )
        buckets = sorted(
            (float(dict(key)["le"]), value)
            for (metric, key), value in samples.items()
            if metric == "ctxd_strategy_latency_seconds_bucket" and dict(key)["strategy"] == name
        )
        assert [v for _, v in buckets] == sorted(v for _, v in buckets)  # cumulative
    assert sample(samples, "ctxd_strategy_wins_total", strategy="premium", model="slow-model") == 1
    assert sample(samples, "ctxd_strategy_latency_seconds_count", strategy="premium") == 1
    assert sample(samples, "ctxd_store_events") == status["store"]["events"] == 3
    assert sample(samples, "ctxd_store_used_bytes") == status["store"]["used_bytes"]
    assert sample(samples, "ctxd_background_tasks_max") == status["background"]["max"]
    assert sample(samples, "ctxd_state", state="serving") == 1
    assert sample(samples, "ctxd_state", state="draining") == 0
    assert sample(samples, "ctxd_requests_total", method="analyze", outcome="ok") == 2
    assert sample(samples, "ctxd_requests_total", method="-", outcome="method_not_found") == 1
    assert sample(samples, "ctxd_requests_total", method="events.append", outcome="ok") == 1
    assert not Path(metrics_path).exists()  # removed at the stop


@pytest.mark.process
def test_only_get_or_head_of_metrics(short_tmp: Path) -> None:
    metrics_path = str(short_tmp / "metrics.sock")
    daemon = Daemon(short_tmp, metrics={"listen": f"unix:{metrics_path}"}).start()
    try:
        assert http_get(metrics_path, "/")[0] == 404
        assert http_get(metrics_path, method="POST")[0] == 405
        status, body = http_get(metrics_path, method="HEAD")
        assert (status, body) == (200, b"")
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:  # not HTTP at all
            sock.settimeout(10)
            connect(sock, metrics_path)
            sock.sendall(b"\x00\x01garbage\r\n\r\n")
            assert sock.recv(100) == b""  # closed, nothing else happens
        assert http_get(metrics_path)[0] == 200
    finally:
        daemon.signal()
        assert daemon.wait() == 0


@pytest.mark.process
def test_a_loopback_tcp_port(short_tmp: Path) -> None:
    with socket.socket() as probe:  # a port free a moment ago
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    daemon = Daemon(short_tmp, metrics={"listen": f"127.0.0.1:{port}"}).start()
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
                    sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: ctxd\r\n\r\n")
                    reply = b""
                    while chunk := sock.recv(65536):
                        reply += chunk
                break
            except ConnectionRefusedError:
                assert time.monotonic() < deadline
                time.sleep(0.02)
    finally:
        daemon.signal()
        assert daemon.wait() == 0
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK")
    assert b"content-type: text/plain; version=" in head
    names = {f.name for f in text_string_to_metric_families(body.decode())}
    assert {"ctxd_requests", "ctxd_cache_hits", "ctxd_strategy_latency_seconds"} <= names


def write_config(root: Path, **metrics: Any) -> Path:
    import yaml

    path = root / "config.yaml"
    path.write_text(yaml.safe_dump(config_data(root, metrics=metrics)))
    return path


@pytest.mark.parametrize(
    ("listen", "problem"),
    [
        ("0.0.0.0:9464", "is not a loopback address"),
        ("192.168.1.5:9464", "is not a loopback address"),
        ("127.0.0.1:99999", "is not host:port or unix:/path"),
        ("127.0.0.1", "is not host:port or unix:/path"),
        ("unix:var/metrics.sock", "needs an absolute path"),
    ],
)
def test_metrics_listen_is_loopback_or_a_unix_path(
    tmp_path: Path, listen: str, problem: str
) -> None:
    with pytest.raises(ConfigError, match=f"metrics.listen: .*{problem}"):
        load_config(write_config(tmp_path, listen=listen))


@pytest.mark.parametrize(
    "listen", ["127.0.0.1:9464", "[::1]:9464", "localhost:9464", "unix:/run/m.sock"]
)
def test_metrics_listen_accepted(tmp_path: Path, listen: str) -> None:
    config = load_config(write_config(tmp_path, listen=listen))
    assert config.metrics is not None
    assert config.metrics.listen == listen


def test_metrics_are_off_by_default(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    import yaml

    path.write_text(yaml.safe_dump(config_data(tmp_path)))
    assert load_config(path).metrics is None
