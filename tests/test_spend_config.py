"""The spend keys of a strategy (SPEC §7 ``price``, ``budget``, ``start``): what
loads, and the impossible values that stop the start (exit 78, naming the key)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
import yaml

from daemon.__main__ import main
from daemon.analysis import RaceManager
from daemon.config import StartAfter, load_config
from daemon.errors import ConfigError
from daemon.spend import unenforceable_budgets
from daemon.stats import Stats
from daemon.supervisor import Supervisor
from tests.conftest import config_data
from tests.race_fakes import MemoryStore


def write(tmp_path: Path, premium: dict[str, Any], local: dict[str, Any] | None = None) -> Path:
    strategies: Any = [
        {"name": "multimodal", "provider": "fake", "model": "fast-model", "rank": 1},
        {"name": "premium", "provider": "fake", "model": "slow-model", "rank": 2, **premium},
    ]
    if local is not None:
        strategies.append({"name": "local", "kind": "local_ocr", "rank": 0, **local})
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config_data(tmp_path, strategies=strategies)))
    return path


def test_the_spend_keys_load(tmp_path: Path) -> None:
    config = load_config(
        write(
            tmp_path,
            {
                "price": {"prompt_per_mtok": 3, "completion_per_mtok": 15},
                "budget": {"usd_per_day": 5, "calls_per_minute": 30},
                "start": {"after": 1.5},
            },
            local={"budget": {"calls_per_minute": 100}, "start": "on_failure"},
        )
    )
    premium = config.strategies[1]
    assert premium.price is not None
    assert premium.price.completion_per_mtok == 15
    assert premium.budget is not None
    assert (premium.budget.usd_per_day, premium.budget.calls_per_minute) == (5, 30)
    assert premium.start == StartAfter(after=1.5)
    assert config.strategies[0].start == "always"  # the default: as before
    assert config.strategies[2].start == "on_failure"


@pytest.mark.parametrize(
    ("premium", "local", "expected"),
    [
        (
            {"price": {"prompt_per_mtok": -1, "completion_per_mtok": 1}},
            None,
            "strategies[1].price.prompt_per_mtok: expected `float` >= 0",
        ),
        (
            {"price": {"prompt_per_mtok": float("inf"), "completion_per_mtok": 1}},
            None,
            "strategies[1].price.prompt_per_mtok: must be a finite number of USD",
        ),
        ({"price": {"prompt_per_mtok": 1}}, None, "strategies[1].price: object missing"),
        (
            {"budget": {}},
            None,
            "strategies[1].budget: give usd_per_day, calls_per_minute or both",
        ),
        ({"budget": {"usd_per_day": 0}}, None, "strategies[1].budget.usd_per_day: expected"),
        (
            {"budget": {"calls_per_minute": 2.5}},
            None,
            "strategies[1].budget.calls_per_minute: expected `int | null`, got `float`",
        ),
        ({"budget": {"usd_per_month": 3}}, None, "strategies[1].budget.usd_per_month: unknown key"),
        ({"start": "sometimes"}, None, "strategies[1].start"),
        ({"start": {"after": -1}}, None, "strategies[1].start.after: expected `float` >= 0"),
        (
            {"start": {"after": float("nan")}},
            None,
            "strategies[1].start",
        ),
        (
            {"price": {"prompt_per_mtok": 1, "completion_per_mtok": 1}},
            {"price": {"prompt_per_mtok": 1, "completion_per_mtok": 1}},
            "strategies[2].price: a local_ocr strategy runs on this host",
        ),
        (
            {},
            {"budget": {"usd_per_day": 1}},
            "strategies[2].budget.usd_per_day: a local_ocr strategy costs no USD",
        ),
    ],
)
def test_impossible_spend_values_name_the_key(
    tmp_path: Path, premium: dict[str, Any], local: dict[str, Any] | None, expected: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        load_config(write(tmp_path, premium, local))
    assert expected in str(raised.value)


def test_upgrade_only_on_the_lowest_ranked_strategy_stops_the_start(tmp_path: Path) -> None:
    # Review of issue 17, finding 7: it was accepted and never ran (an
    # upgrade races only what ranks above the cached result).
    with pytest.raises(ConfigError) as raised:
        load_config(write(tmp_path, {}, local={"start": "upgrade_only"}))
    assert "strategies[2].start: upgrade_only on the lowest-ranked strategy never runs" in str(
        raised.value
    )
    load_config(write(tmp_path, {"start": "upgrade_only"}, local={}))  # above the lowest: fine


def test_a_usd_per_day_no_known_cost_can_reach_is_warned_at_the_start(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Review finding 5: no price, a provider that does not report usage.cost:
    # the budget would never trigger. Accepted, with a warning naming the key.
    budget = {"budget": {"usd_per_day": 5}}
    config = load_config(write(tmp_path, budget))
    with caplog.at_level(logging.WARNING, logger="daemon.spend"):
        RaceManager(
            config, MemoryStore(config.rank_of()), Supervisor(8), {}, Stats(config.strategies)
        )
    assert [r.getMessage()[:64] for r in caplog.records] == [
        "strategies[1].budget.usd_per_day (5 USD) of premium may never be"
    ]
    assert "set a price" in caplog.records[0].getMessage()
    priced = {**budget, "price": {"prompt_per_mtok": 3, "completion_per_mtok": 15}}
    assert unenforceable_budgets(load_config(write(tmp_path, priced))) == []
    data = yaml.safe_load(write(tmp_path, budget).read_text())
    data["providers"]["fake"]["base_url"] = "https://openrouter.ai/api/v1"  # reports usage.cost
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(data))
    assert unenforceable_budgets(load_config(tmp_path / "c.yaml")) == []


def test_every_strategy_upgrade_only_stops_the_start_with_78(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = config_data(tmp_path)
    for strategy in data["strategies"]:
        strategy["start"] = "upgrade_only"
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    assert main(["--config", str(path)]) == 78
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "strategies[1].start: every strategy is upgrade_only" in err
