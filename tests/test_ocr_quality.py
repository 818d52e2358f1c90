"""Extraction quality of the local_ocr strategy on tests/data/chats.

Every screenshot goes through the strategy as the daemon runs it (worker
processes, then the same validation as a model's answer) and is scored with
tests/ocr_eval.py. The floors are the levels reached when the strategy was
built (README, "Local OCR quality"); a change that lowers any figure fails.
``pytest -s`` prints the table.
"""

from __future__ import annotations

import base64

import msgspec
import trio

from daemon.config import StrategyConfig
from daemon.extract import parse_merge_step
from daemon.local_ocr import LocalOcr
from daemon.providers import ImageInput
from tests.ocr_eval import Score, cases

# Reached on 40 screenshots, 281 bubbles: recall, precision, side, order and
# talker 1.000; CER 0.0011 (7 edits in 6,103 characters, all OCR misreads).
FLOORS = {"recall": 1.0, "precision": 1.0, "side": 1.0, "order": 1.0, "talker": 1.0}
MAX_CER = 0.002


async def test_quality_on_the_synthetic_screenshots() -> None:
    # Every screenshot at once: a queue and a timeout that hold them all (the
    # timeout covers the wait for a worker; past max_queue a job is refused).
    strategy = StrategyConfig(
        name="local", kind="local_ocr", rank=0, timeout=600, workers=2, max_queue=100
    )
    engine = LocalOcr(strategy)
    score = Score()
    data = cases()
    assert len(data) >= 30

    async def one(png_path: str, truth: dict[str, object]) -> None:
        with open(png_path, "rb") as f:
            encoded = base64.b64encode(f.read()).decode()
        image = ImageInput(f"data:image/png;base64,{encoded}")
        completion = await engine.complete(strategy, image)
        step = msgspec.to_builtins(parse_merge_step(completion.text))
        score.add(png_path.rsplit("/", 1)[-1], truth, step)

    try:
        async with trio.open_nursery() as nursery:
            for png, truth in data:
                nursery.start_soon(one, str(png), truth)
    finally:
        await engine.aclose()
    print("\n" + score.table())
    print("\n".join(score.misses))
    figures = score.figures()
    for name, floor in FLOORS.items():
        assert figures[name] >= floor, (name, figures[name], score.misses)
    assert figures["cer"] <= MAX_CER, (figures["cer"], score.misses)
