"""The ``fleet`` section (SPEC §7): optional, checked, exit 78 on a bad value."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest
import yaml

from daemon.__main__ import main
from daemon.config import load_config
from daemon.errors import ConfigError
from tests.conftest import config_data, write_config


def load(tmp_path: Path, fleet: dict[str, Any]) -> Any:
    return load_config(write_config(tmp_path, fleet=fleet)).fleet


def test_absent_means_no_fleet(tmp_path: Path) -> None:
    assert load_config(write_config(tmp_path)).fleet is None


def test_defaults_and_resolved_values(tmp_path: Path) -> None:
    fleet = load(tmp_path, {"url": "redis://10.0.0.5:6379/2"})
    assert fleet.host_id == socket.gethostname()
    assert fleet.timeout == 0.25
    assert fleet.max_events_per_key == 20
    (tmp_path / "ca.pem").write_text("x")
    fleet = load(tmp_path, {"url": "rediss://cache:6380", "ca_file": "ca.pem", "host_id": "a-1"})
    assert fleet.ca_file == str(tmp_path / "ca.pem")
    assert fleet.host_id == "a-1"
    assert load(tmp_path, {"url": "unix:///run/redis.sock"}).url == "unix:///run/redis.sock"
    nodes = ["10.0.0.1:7000", "cache-2:7001"]
    assert load(tmp_path, {"cluster_nodes": nodes}).cluster_nodes == nodes
    fleet = load(tmp_path, {"sentinel_nodes": ["s1:26379"], "sentinel_service": "ctxd"})
    assert (fleet.sentinel_nodes, fleet.sentinel_service) == (["s1:26379"], "ctxd")


def test_password_comes_from_the_environment_and_is_redacted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CTXD_FLEET_PW", "s3cret-fleet")
    config = load_config(
        write_config(tmp_path, fleet={"url": "redis://h", "password_env": "CTXD_FLEET_PW"})
    )
    assert config.fleet is not None
    assert config.fleet.password() == "s3cret-fleet"
    assert "s3cret-fleet" in config.secrets()


@pytest.mark.parametrize(
    ("fleet", "expected"),
    [
        ({}, "fleet: give either url or cluster_nodes"),
        ({"url": "redis://h", "cluster_nodes": ["h:1"]}, "fleet: give either url or cluster_nodes"),
        ({"url": "http://h:6379"}, "fleet.url: must be a redis://, rediss:// or unix:// URL"),
        ({"url": "redis://:pw@h:6379"}, "fleet.url: must not carry credentials"),
        ({"url": "redis://h:notaport"}, "fleet.url: 'redis://h:notaport' is not redis://host"),
        ({"url": "redis://h:6379/x"}, "fleet.url: 'redis://h:6379/x' is not redis://host"),
        ({"url": "unix://"}, "fleet.url: a unix:// URL needs the socket path"),
        ({"url": "redis://h", "ca_file": "ca.pem"}, "fleet.ca_file: only a rediss:// url"),
        ({"url": "rediss://h", "ca_file": "absent.pem"}, "fleet.ca_file: "),
        ({"cluster_nodes": []}, "fleet.cluster_nodes: must name at least one node"),
        ({"cluster_nodes": ["h:0"]}, "fleet.cluster_nodes[0]: 'h:0' is not host:port"),
        ({"cluster_nodes": ["a:1", "b"]}, "fleet.cluster_nodes[1]: 'b' is not host:port"),
        ({"sentinel_nodes": ["s:26379"]}, "fleet.sentinel_service: the primary's name"),
        ({"url": "redis://h", "sentinel_service": "m"}, "fleet.sentinel_service: the primary"),
        ({"sentinel_nodes": [], "sentinel_service": "m"}, "fleet.sentinel_nodes: must name at"),
        ({"sentinel_nodes": ["s"], "sentinel_service": "m"}, "fleet.sentinel_nodes[0]: 's' is"),
        ({"sentinel_nodes": ["s:1"], "sentinel_service": "a b"}, "fleet.sentinel_service: 1-128"),
        (
            {"url": "redis://h", "sentinel_nodes": ["s:1"], "sentinel_service": "m"},
            "fleet: give either url or cluster_nodes (or sentinel_nodes)",
        ),
        (
            {"sentinel_nodes": ["s:1"], "sentinel_service": "m", "ca_file": "ca.pem"},
            "fleet.ca_file: TLS through Sentinel is not supported",
        ),
        ({"url": "redis://h", "host_id": "a b"}, "fleet.host_id: 1-128 characters"),
        ({"url": "redis://h", "password_env": "NOT-A-NAME"}, "fleet.password_env: must be an"),
        ({"url": "redis://h", "password_env": "CTXD_UNSET_PW"}, "$CTXD_UNSET_PW is not set"),
        ({"url": "redis://h", "timeout": 0}, "fleet.timeout: expected `float` > 0"),
        ({"url": "redis://h", "lease_ttl": -1}, "fleet.lease_ttl: expected `float` >= 1.0"),
        # PX 0 would be refused at every take (cold review of issue 14)
        ({"url": "redis://h", "lease_ttl": 0.0001}, "fleet.lease_ttl: expected `float` >= 1.0"),
        ({"url": "redis://h", "max_events_per_key": 0}, "fleet.max_events_per_key"),
        ({"url": "redis://h", "hosts": 2}, "fleet.hosts: unknown key"),
        ({"url": 6379}, "fleet.url: expected `str | null`"),
    ],
)
def test_bad_values_name_the_key(tmp_path: Path, fleet: dict[str, Any], expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write_config(tmp_path, fleet=fleet))
    assert expected in str(info.value)
    assert "\n" not in str(info.value)


def test_a_bad_fleet_value_exits_78(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(config_data(tmp_path, fleet={"url": "redis://:hunter2@h"})))
    assert main(["--config", str(path)]) == 78
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "fleet.url" in err
    assert "hunter2" not in err
