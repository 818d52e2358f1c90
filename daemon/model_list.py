"""The configured model ids against each provider's model list, at start, in the background.

A model id that the provider retired is the most common way for a strategy
to fail every call (OpenRouter answers 400 "not a valid model ID" or 404
"No endpoints found"). ``check_models`` asks each provider once for its list
(``GET {base_url}/models``) and logs one warning per problem: an id not in
the list (with the closest ids it has), a model whose ``input_modalities``
lack ``image``, a model whose ``supported_parameters`` lack structured
outputs while the strategy asks for them. A provider without a list (a local
server, an error, a timeout) is skipped with a debug line: the calls say
the rest. Nothing here stops or delays the daemon.
"""

from __future__ import annotations

import difflib
import logging
from typing import TYPE_CHECKING, Final

import trio

if TYPE_CHECKING:
    from collections.abc import Mapping

    from daemon.config import StrategyConfig
    from daemon.providers import ModelInfo, Provider

logger = logging.getLogger(__name__)

CHECK_TIMEOUT: Final = 30.0
STRUCTURED: Final = frozenset({"structured_outputs", "response_format"})


def problems(strategy: StrategyConfig, provider: str, models: list[ModelInfo]) -> list[str]:
    """What is wrong with ``strategy``'s model according to ``models`` (one line each)."""
    if strategy.model.startswith("@"):  # an OpenRouter preset: not in the list
        return []
    by_id = {m.id: m for m in models}
    # OpenRouter's variants (":nitro", ":floor", ":online", ...) are not listed
    # apart; ":free" ones are.
    info = by_id.get(strategy.model) or by_id.get(strategy.model.split(":", 1)[0])
    if info is None:
        close = difflib.get_close_matches(strategy.model, list(by_id), n=3, cutoff=0.6)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        return [
            f"strategy {strategy.name}: model {strategy.model!r} is not in {provider}'s model "
            f"list ({len(by_id)} models): its calls will fail{hint} "
            "(docs/configuration.md, choosing models)"
        ]
    found = []
    modalities = info.architecture.input_modalities if info.architecture else None
    if modalities is not None and "image" not in modalities:
        found.append(
            f"strategy {strategy.name}: model {strategy.model!r} takes no images on {provider} "
            f"(input_modalities {modalities})"
        )
    params = info.supported_parameters
    if (
        strategy.structured_output is not False
        and params is not None
        and not STRUCTURED & set(params)
    ):
        found.append(
            f"strategy {strategy.name}: model {strategy.model!r} does not list structured "
            f"outputs on {provider}; set structured_output: false if its calls fail"
        )
    return found


async def check_models(
    providers: Mapping[str, Provider], strategies: list[StrategyConfig]
) -> list[str]:
    """Check every openai_chat strategy's model; log and return the problems.

    Runs each provider's look-up at once, each bounded by ``CHECK_TIMEOUT``;
    never raises (short of cancellation)."""
    found: list[str] = []

    async def one(name: str, provider: Provider) -> None:
        mine = [s for s in strategies if s.kind == "openai_chat" and s.provider == name]
        if not mine:
            return
        models = None
        try:
            with trio.move_on_after(CHECK_TIMEOUT):
                models = await provider.list_models()
        except Exception:  # a check at start never stops the start
            logger.debug("%s: the model list could not be read", name, exc_info=True)
            return
        if models is None:
            logger.debug("%s: no model list; configured ids not checked", name)
            return
        for strategy in mine:
            for problem in problems(strategy, name, models):
                logger.warning("%s", problem)
                found.append(problem)

    async with trio.open_nursery() as nursery:
        for name, provider in providers.items():
            nursery.start_soon(one, name, provider)
    return found
