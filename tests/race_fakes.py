"""Fakes for race tests in virtual time: in-memory stores (one that appends at
once, one whose appends wait for a group commit), scripted providers."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx2
import msgspec
import trio

from daemon.analysis import RaceManager
from daemon.config import Config, ProviderConfig
from daemon.errors import StoreError
from daemon.models import Event, Provenance
from daemon.providers import ImageInput, Provider
from daemon.race import Backend
from daemon.spend import Spend
from daemon.stats import Stats
from daemon.store.format import encode_payload
from daemon.supervisor import Supervisor
from tests.fake_provider import ANSWER

IMAGE = ImageInput.from_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 16, "image/png")


class MemoryStore:
    """The store's best/append contract, in memory, without threads."""

    def __init__(self, rank_of: Callable[[str], int]) -> None:
        self.rank_of = rank_of
        self.events: list[Event] = []
        self.fail = False

    def best(self, session_id: str, category: str, resource: str, scene: str = "") -> Event | None:
        mine = [
            e
            for e in self.events
            if (e.session_id, e.category, e.resource, e.scene)
            == (session_id, category, resource, scene)
        ]
        return max(mine, key=lambda e: (self.rank_of(e.strategy), e.id), default=None)

    async def append(
        self,
        session_id: str,
        category: str,
        resource: str,
        scene: str,
        payload: dict[str, Any],
        provenance: Provenance | None = None,
    ) -> int:
        await trio.lowlevel.checkpoint()
        if self.fail:
            raise StoreError("disk on fire")
        return self._store((session_id, category, resource, scene), payload, provenance)

    def _store(
        self,
        key: tuple[str, str, str, str],
        payload: dict[str, Any] | msgspec.Raw,
        provenance: Provenance | None,
    ) -> int:
        """Keep one event under the next id, its payload as JSON text like the
        real store's; its id."""
        session_id, category, resource, scene = key
        text, (strategy, model) = encode_payload(payload)
        event = Event(
            id=len(self.events) + 1,
            ts=time.time(),
            session_id=session_id,
            category=category,
            resource=resource,
            scene=scene,
            strategy=strategy,
            model=model,
            payload=msgspec.Raw(text),
            provenance=provenance,
        )
        self.events.append(event)
        return event.id

    def strategies(self) -> list[str]:
        return [e.strategy for e in self.events]


class GatedStore(MemoryStore):
    """The store as the race meets it: an append waits for a commit, and one
    commit ends several appends at once, in one step, the way the real
    writer's synced group commit wakes all its writers together.

    The test commits by hand (``commit``), or ``run`` does it ``linger``
    seconds after the first append of each group arrives (``harness(...,
    linger=...)``), as the real writer lingers to group its batches."""

    def __init__(self, rank_of: Callable[[str], int]) -> None:
        super().__init__(rank_of)
        self.waiting: list[_Pending] = []
        self.commits: list[list[int]] = []  # the ids each commit made durable
        self._arrived = trio.Event()

    async def append(
        self,
        session_id: str,
        category: str,
        resource: str,
        scene: str,
        payload: dict[str, Any],
        provenance: Provenance | None = None,
    ) -> int:
        pending = _Pending((session_id, category, resource, scene), payload, provenance)
        self.waiting.append(pending)
        self._arrived.set()
        await pending.done.wait()
        if pending.event_id is None:
            raise StoreError("disk on fire")
        return pending.event_id

    def commit(self, count: int | None = None, *, fail: bool = False) -> list[int]:
        """Make the first ``count`` waiting appends (all by default) durable,
        or fail them, in one step; returns the ids given."""
        group = self.waiting[:count]
        del self.waiting[: len(group)]
        ids = []
        for pending in group:
            if fail or self.fail:
                continue
            pending.event_id = self._store(pending.key, pending.payload, pending.provenance)
            ids.append(pending.event_id)
        for pending in group:
            pending.done.set()
        self.commits.append(ids)
        return ids

    async def run(self, linger: float) -> None:
        """Commit every group ``linger`` seconds after its first append."""
        while True:
            await self._arrived.wait()
            self._arrived = trio.Event()
            await trio.sleep(linger)
            self.commit()


@dataclass
class _Pending:
    key: tuple[str, str, str, str]
    payload: dict[str, Any]
    provenance: Provenance | None
    done: trio.Event = field(default_factory=trio.Event)
    event_id: int | None = None


@dataclass
class Behaviour:
    latency: float = 1.0
    status: int = 200
    text: str | None = None  # None: a valid MergeStep in a fence
    cost: float | None = None  # usage.cost, as OpenRouter reports it (None: not given)


@dataclass
class ScriptedModels:
    """An httpx2 MockTransport handler: each model sleeps, then answers."""

    behaviours: dict[str, Behaviour]
    calls: dict[str, int] = field(default_factory=dict)
    order: list[str] = field(default_factory=list)  # models in the order called
    at: dict[str, list[float]] = field(default_factory=dict)  # when each call came (trio time)

    async def __call__(self, request: httpx2.Request) -> httpx2.Response:
        model = json.loads(request.content)["model"]
        self.calls[model] = self.calls.get(model, 0) + 1
        self.order.append(model)
        self.at.setdefault(model, []).append(trio.current_time())
        behaviour = self.behaviours[model]
        await trio.sleep(behaviour.latency)
        if behaviour.status != 200:
            return httpx2.Response(behaviour.status, text="scripted failure")
        text = behaviour.text
        if text is None:
            text = "```json\n" + json.dumps(ANSWER, ensure_ascii=False) + "\n```"
        return httpx2.Response(
            200,
            json={
                "model": model,
                "provider": "Scripted",  # OpenRouter names the upstream that served the call
                "choices": [{"message": {"content": text}}],
                "usage": {
                    "prompt_tokens": 100,
                    "completion_tokens": 10,
                    "total_tokens": 110,
                    **({"cost": behaviour.cost} if behaviour.cost is not None else {}),
                },
            },
        )


@dataclass
class Harness:
    config: Config
    store: MemoryStore
    supervisor: Supervisor
    races: RaceManager
    models: ScriptedModels


@asynccontextmanager
async def harness(
    config: Config,
    behaviours: dict[str, Behaviour],
    local: dict[str, Backend] | None = None,
    *,
    linger: float | None = None,
    spend: Spend | None = None,
) -> AsyncIterator[Harness]:
    """Scripted models behind a real Provider, a supervisor, a RaceManager.

    The store appends in one checkpoint, unless ``linger`` is given: then it
    is a GatedStore that commits each group ``linger`` seconds after its
    first append (a result is "storing" that long)."""
    models = ScriptedModels(behaviours)
    cfg = ProviderConfig(base_url="https://llm.example/v1")
    client = httpx2.AsyncClient(base_url=cfg.base_url + "/", transport=httpx2.MockTransport(models))
    provider = Provider("fake", cfg, client, "sk-test")
    store = MemoryStore(config.rank_of()) if linger is None else GatedStore(config.rank_of())
    supervisor = Supervisor(config.llm.max_background_tasks)
    stats = Stats(config.strategies, {"fake": provider.ledger}, spend=spend)
    races = RaceManager(config, store, supervisor, {"fake": provider}, stats, local=local)
    async with trio.open_nursery() as nursery:
        await nursery.start(supervisor.serve)
        if isinstance(store, GatedStore):
            assert linger is not None
            nursery.start_soon(store.run, linger)
        yield Harness(config, store, supervisor, races, models)
        nursery.cancel_scope.cancel()
    await client.aclose()
