"""How structured outputs change invalid outputs, measured on the fake provider.

    .venv/bin/python bench/structured_outputs.py [--calls 2000] [--noise 0.3] [--seed 1]

The same sloppy model (``tests.fake_provider.Script(noise=...)``: that share
of its answers carries one defect drawn from eleven: not JSON, a trailing
comma, cut short, single quotes, a missing field, float coordinates, an
unknown speaker, a side the layout contradicts, an inverted box, a box
outside the image, empty text) is called through the real ``Provider`` and
``extract.parse_completion``, once with ``structured_output: false`` and
once with the MergeStep schema in ``response_format``. Under a strict schema
the fake cannot produce the defects a schema rules out (as constrained
decoding cannot), so what this measures is ctxd's side: that the schema it
sends is accepted by a strict-mode check, that a schema-following answer
(bare JSON, no fence) parses, and which invalid outputs remain for
extract.py to catch. How often a real model errs is not measured here (no
live call is possible from this machine).
"""

from __future__ import annotations

import argparse
import collections
import io
import sys
from pathlib import Path

import httpx2
import trio
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from daemon.config import ProviderConfig, StrategyConfig
from daemon.errors import StrategyError
from daemon.extract import parse_completion
from daemon.providers import ImageInput, Provider
from tests.fake_provider import Script, mock_handler


def reason(detail: str) -> str:
    """A short class of an invalid output's detail."""
    for needle, name in [
        ("outside the", "box outside the image"),
        ("is not a box", "inverted box"),
        ("layout puts", "side against the layout"),
        ("empty text", "empty text"),
        ("not valid JSON", "not JSON"),
        ("no JSON object", "not JSON"),
        ("Expected `int`", "wrong type"),
        ("Invalid enum", "wrong enum"),
        ("missing required field", "missing field"),
    ]:
        if needle in detail:
            return name
    return detail[:60]


async def run(calls: int, noise: float, seed: int, structured: bool) -> collections.Counter[str]:
    scripts = {"sloppy": Script(noise=noise)}
    cfg = ProviderConfig(base_url="https://fake.example/api/v1")
    provider = Provider.from_config(
        "fake", cfg, transport=httpx2.MockTransport(mock_handler(scripts, seed))
    )
    strategy = StrategyConfig(
        name="s", provider="fake", model="sloppy", max_retries=0, structured_output=structured
    )
    png = io.BytesIO()
    Image.new("RGB", (720, 1280), "white").save(png, "PNG")
    image = ImageInput.from_bytes(png.getvalue(), "image/png")
    outcomes: collections.Counter[str] = collections.Counter()
    for _ in range(calls):
        try:
            completion = await provider.complete(strategy, image)
            parse_completion(completion.text, completion.image_size, completion.original_size)
            outcomes["valid"] += 1
        except StrategyError as exc:
            outcomes[f"{exc.kind}: {reason(exc.detail)}"] += 1
    await provider.aclose()
    return outcomes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--noise", type=float, default=0.3)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    print(f"{args.calls} calls per mode, noise {args.noise}, seed {args.seed}")
    for structured in (False, True):
        outcomes = trio.run(run, args.calls, args.noise, args.seed, structured)
        invalid = args.calls - outcomes["valid"]
        label = "response_format json_schema" if structured else "no response_format"
        print(f"  {label:28} invalid {invalid:5} ({100 * invalid / args.calls:.1f}%)")
        for name, count in sorted(outcomes.items(), key=lambda kv: -kv[1]):
            if name != "valid":
                print(f"      {count:5}  {name}")


if __name__ == "__main__":
    main()
