"""Fakes for race tests in virtual time: an in-memory store, scripted providers."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx2
import trio

from daemon.analysis import RaceManager
from daemon.config import Config, ProviderConfig
from daemon.errors import StoreError
from daemon.models import Event, Provenance, payload_tag
from daemon.providers import ImageInput, Provider
from daemon.race import Backend
from daemon.stats import Stats
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
        event = Event(
            id=len(self.events) + 1,
            ts=time.time(),
            session_id=session_id,
            category=category,
            resource=resource,
            scene=scene,
            strategy=payload_tag(payload, "_strategy"),
            model=payload_tag(payload, "_model"),
            payload=payload,
            provenance=provenance,
        )
        self.events.append(event)
        return event.id

    def strategies(self) -> list[str]:
        return [e.strategy for e in self.events]


@dataclass
class Behaviour:
    latency: float = 1.0
    status: int = 200
    text: str | None = None  # None: a valid MergeStep in a fence


@dataclass
class ScriptedModels:
    """An httpx2 MockTransport handler: each model sleeps, then answers."""

    behaviours: dict[str, Behaviour]
    calls: dict[str, int] = field(default_factory=dict)
    order: list[str] = field(default_factory=list)  # models in the order called

    async def __call__(self, request: httpx2.Request) -> httpx2.Response:
        model = json.loads(request.content)["model"]
        self.calls[model] = self.calls.get(model, 0) + 1
        self.order.append(model)
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
                "choices": [{"message": {"content": text}}],
                "usage": {"prompt_tokens": 100, "completion_tokens": 10, "total_tokens": 110},
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
    config: Config, behaviours: dict[str, Behaviour], local: dict[str, Backend] | None = None
) -> AsyncIterator[Harness]:
    models = ScriptedModels(behaviours)
    cfg = ProviderConfig(base_url="https://llm.example/v1")
    client = httpx2.AsyncClient(base_url=cfg.base_url + "/", transport=httpx2.MockTransport(models))
    provider = Provider("fake", cfg, client, "sk-test")
    store = MemoryStore(config.rank_of())
    supervisor = Supervisor(config.llm.max_background_tasks)
    races = RaceManager(
        config, store, supervisor, {"fake": provider}, Stats(config.strategies), local=local
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(supervisor.serve)
        yield Harness(config, store, supervisor, races, models)
        nursery.cancel_scope.cancel()
    await client.aclose()
