"""What the race costs under each ``start`` policy of the premium strategy.

    .venv/bin/python bench/spend_bench.py [--screenshots 2000] [--seed 1]

A scripted workload in virtual time (trio's MockClock: the whole run takes
seconds of CPU, not hours), through the daemon's own RaceManager, Provider
(httpx2 MockTransport) and Spend:

* a fast model answers in ~0.5 s (lognormal, sigma 0.25), valid 85% of the
  time; a premium model in ~3 s, valid 99%; each call uses 1,800 prompt and
  700 completion tokens, priced like config.yaml's models (fast $0.25 /
  $1.50, premium $3 / $15 per million tokens; the provider reports no cost,
  so the config ``price`` gives it);
* screenshots arrive one every ~1 s (exponential gaps), each request in its
  own task; 30% of them repeat one of the 100 before (an app re-reading a
  chat it has open), so about that share can be a cache hit;
* the same arrivals for every policy; each model draws its latency and
  validity from a seeded stream of its own, in call order (so a policy that
  calls less sees a different, equally likely, sequence of draws).

Printed per policy of the premium (the fast one is always ``always``):
answer latency p50/p99 over the requests answered (hits included), requests
that got no answer (-32001), the premium's calls (legs started), USD per
1,000 screenshots (known costs; calls cancelled in flight are counted apart,
their cost unknown), and the share of answers served from the premium's
result (fresh or cached).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import random
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
import msgspec
import trio
import trio.testing

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from daemon.analysis import RaceManager  # noqa: E402
from daemon.config import Config, ProviderConfig  # noqa: E402
from daemon.errors import AllStrategiesFailed, DeadlineExceeded  # noqa: E402
from daemon.models import CacheKey  # noqa: E402
from daemon.providers import Provider  # noqa: E402
from daemon.stats import Stats  # noqa: E402
from daemon.supervisor import Supervisor  # noqa: E402
from tests.conftest import config_data  # noqa: E402
from tests.fake_provider import ANSWER  # noqa: E402
from tests.race_fakes import IMAGE, MemoryStore  # noqa: E402

FAST, PREMIUM = "fast-model", "premium-model"
PROMPT_TOKENS, COMPLETION_TOKENS = 1800, 700
VALID = "```json\n" + json.dumps(ANSWER, ensure_ascii=False) + "\n```"
POLICIES: list[tuple[str, Any]] = [
    ("always", "always"),
    ("after 0.6s", {"after": 0.6}),
    ("after 1s", {"after": 1.0}),
    ("on_failure", "on_failure"),
    ("upgrade_only", "upgrade_only"),
]


@dataclass(frozen=True)
class Arrival:
    at: float  # seconds from the start
    screenshot: int


def workload(count: int, rng: random.Random) -> list[Arrival]:
    arrivals = []
    t = 0.0
    seen: list[int] = []
    for _ in range(count):
        t += rng.expovariate(1.0)
        if seen and rng.random() < 0.30:
            screenshot = rng.choice(seen[-100:])
        else:
            screenshot = len(seen)
            seen.append(screenshot)
        arrivals.append(Arrival(t, screenshot))
    return arrivals


class Models:
    """The two scripted models; each call draws its latency and validity from
    a stream of its own, so every policy sees the same draws in call order."""

    def __init__(self, seed: int) -> None:
        self.rng = {FAST: random.Random(seed * 7 + 1), PREMIUM: random.Random(seed * 7 + 2)}
        self.spec = {FAST: (0.5, 0.85), PREMIUM: (3.0, 0.99)}

    async def __call__(self, request: httpx2.Request) -> httpx2.Response:
        model = json.loads(request.content)["model"]
        median, valid_share = self.spec[model]
        rng = self.rng[model]
        latency = median * math.exp(rng.gauss(0, 0.25))
        valid = rng.random() < valid_share
        await trio.sleep(latency)
        return httpx2.Response(
            200,
            json={
                "model": model,
                "choices": [{"message": {"content": VALID if valid else "no JSON, sorry"}}],
                "usage": {
                    "prompt_tokens": PROMPT_TOKENS,
                    "completion_tokens": COMPLETION_TOKENS,
                    "total_tokens": PROMPT_TOKENS + COMPLETION_TOKENS,
                },
            },
        )


def make_config(start: Any) -> Config:
    strategies: Any = [
        {
            "name": "fast",
            "provider": "fake",
            "model": FAST,
            "rank": 1,
            "timeout": 10,
            "max_retries": 0,
            "price": {"prompt_per_mtok": 0.25, "completion_per_mtok": 1.50},
        },
        {
            "name": "premium",
            "provider": "fake",
            "model": PREMIUM,
            "rank": 2,
            "timeout": 30,
            "max_retries": 0,
            "price": {"prompt_per_mtok": 3.0, "completion_per_mtok": 15.0},
            "start": start,
        },
    ]
    data = config_data(
        Path("/nonexistent"),
        llm={"premium_cache_timeout": 30, "max_background_tasks": 64, "request_timeout": 60},
        strategies=strategies,
    )
    return msgspec.convert(data, Config, strict=True)


@dataclass
class Row:
    policy: str
    latencies: list[float]
    failed: int
    premium_calls: int
    usd: float
    unknown: int
    premium_answers: int
    answered: int
    hits: int


async def run_policy(name: str, start: Any, arrivals: list[Arrival], seed: int) -> Row:
    config = make_config(start)
    provider_config = ProviderConfig(base_url="https://llm.example/v1")
    client = httpx2.AsyncClient(
        base_url=provider_config.base_url + "/", transport=httpx2.MockTransport(Models(seed))
    )
    provider = Provider("fake", provider_config, client, "sk-bench")
    store = MemoryStore(config.rank_of())
    supervisor = Supervisor(config.llm.max_background_tasks)
    stats = Stats(config.strategies, {"fake": provider.ledger})
    races = RaceManager(config, store, supervisor, {"fake": provider}, stats)
    latencies: list[float] = []
    failed = premium_answers = hits = 0

    async def one(arrival: Arrival) -> None:
        nonlocal failed, premium_answers, hits
        await trio.sleep_until(arrival.at)
        key = CacheKey("bench", "context_analysis", f"sha256:{arrival.screenshot}", "")
        started = trio.current_time()
        try:
            answer = await races.analyze(
                key, IMAGE, wait="first", refresh=False, deadline=started + 60
            )
        except (AllStrategiesFailed, DeadlineExceeded):
            failed += 1
            return
        latencies.append(trio.current_time() - started)
        hits += answer.provenance.cached
        premium_answers += answer.provenance.strategy == "premium"

    async with trio.open_nursery() as nursery:
        await nursery.start(supervisor.serve)
        async with trio.open_nursery() as requests:
            for arrival in arrivals:
                requests.start_soon(one, arrival)
        await supervisor.wait_idle()
        nursery.cancel_scope.cancel()
    await client.aclose()
    spend = stats.spend.since_start
    return Row(
        policy=name,
        latencies=latencies,
        failed=failed,
        premium_calls=spend["premium"].calls,
        usd=spend["fast"].usd + spend["premium"].usd,
        unknown=spend["fast"].cost_unknown + spend["premium"].cost_unknown,
        premium_answers=premium_answers,
        answered=len(latencies),
        hits=hits,
    )


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--screenshots", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    logging.getLogger("daemon").addHandler(logging.NullHandler())  # no per-call lines
    logging.getLogger("daemon").propagate = False
    arrivals = workload(args.screenshots, random.Random(args.seed))
    unique = len({a.screenshot for a in arrivals})
    print(
        f"{len(arrivals)} screenshots ({unique} distinct, {1 - unique / len(arrivals):.0%} "
        f"repeats), fast ~0.5 s valid 85%, premium ~3 s valid 99%, virtual time"
    )
    header = (
        f"{'premium start':<14}{'p50 ms':>8}{'p99 ms':>8}{'no answer':>10}{'hits':>7}"
        f"{'premium calls':>15}{'USD/1k shots':>14}{'unknown cost':>14}{'premium answers':>17}"
    )
    print(header)
    print("-" * len(header))
    for name, start in POLICIES:
        clock = trio.testing.MockClock(autojump_threshold=0)
        row = trio.run(run_policy, name, start, arrivals, args.seed, clock=clock)
        share = row.premium_answers / row.answered if row.answered else 0.0
        print(
            f"{row.policy:<14}{pct(row.latencies, 0.5) * 1000:>8.0f}"
            f"{pct(row.latencies, 0.99) * 1000:>8.0f}{row.failed:>10}{row.hits:>7}"
            f"{row.premium_calls:>15}{row.usd / len(arrivals) * 1000:>14.2f}"
            f"{row.unknown:>14}{share:>17.1%}"
        )
    print(
        "(latency over the answered requests, hits included; premium answers: share of the "
        "answered requests served from the premium's result, fresh or cached)"
    )


if __name__ == "__main__":
    main()
