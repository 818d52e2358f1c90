"""The cache of the OCR engine's lines (tests/ocr_lines.py) is current and exact.

The one slow test here runs the real engine, in the daemon's worker
processes, on one screenshot per app of tests/data/apps (between them every
width the set has: each is scaled differently) and one of tests/data/chats, and
proves that the cache holds exactly what it reads today: so every run
checks that tests/test_ocr_quality.py scores what the engine would read.
"""

from __future__ import annotations

import json
from collections import defaultdict
from importlib import metadata
from typing import TYPE_CHECKING, Any

import pytest
from PIL import Image

from daemon.ocr import worker as ocr_worker
from daemon.ocr.layout import lines_from_ocr
from tests import ocr_lines
from tests.ocr_eval import APPS, DATA, cases
from tests.ocr_lines import Cache, canonical, engine_result, shot_key

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path


def width(png: Path) -> int:
    with Image.open(png) as image:
        return image.size[0]


def one_per_app() -> list[Path]:
    """A shot of each app of tests/data/apps, each app's first at a width not
    picked yet where it has one (the 736 px scaling is checked at every
    width), else its first at its smallest width; and the first of
    tests/data/chats."""
    by_app: dict[str, list[Path]] = defaultdict(list)
    for png, truth in cases(APPS):
        by_app[str(truth["app"])].append(png)
    picked: list[Path] = []
    widths: set[int] = set()
    for app in sorted(by_app):
        pngs = by_app[app]
        sizes = {png: width(png) for png in pngs}
        smallest = min(pngs, key=lambda p: sizes[p])  # the cheapest to read
        png = next((p for p in pngs if sizes[p] not in widths), smallest)
        widths.add(sizes[png])
        picked.append(png)
    return [*picked, cases(DATA)[0][0]]


async def test_the_cache_holds_what_the_engine_reads_now_on_one_shot_per_app() -> None:
    picked = one_per_app()
    assert len(picked) >= 8
    assert {720, 1080, 1440} <= {width(png) for png in picked}
    replies = await ocr_lines.read_with_engine(picked)
    cache = Cache()
    for png in picked:
        cached = cache.lines(png, png.read_bytes())
        assert cached is not None, (png.name, cache.why_stale(), ocr_lines.WRITE)
        assert replies[png]["engine_lines"] == cached, (png.name, ocr_lines.WRITE)
        # The quality test's path from the cached lines is the worker's own.
        local = ocr_worker.answer(
            ocr_worker.decode_image(png.read_bytes()), engine_result(cached), "right"
        )
        assert {key: replies[png][key] for key in local} == local, png.name


def test_a_shot_is_read_by_the_engine_unless_its_key_matches(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    first, second, third = ocr_lines.shots()[:3]
    lines = {first: [[[1, 2, 3, 2, 3, 4, 1, 4], "hi", 0.5]], second: [], third: []}
    cache = Cache(tmp_path / "lines.json")
    cache.write(lines)
    loaded = Cache(tmp_path / "lines.json")
    assert loaded.lines(first, first.read_bytes()) == lines[first]
    assert loaded.lines(first, first.read_bytes() + b"\0") is None  # a redrawn PNG
    loaded.prints = {**loaded.prints, "onnxruntime": "0.0.1"}  # an upgrade
    assert loaded.lines(second, second.read_bytes()) is None
    assert "onnxruntime" in loaded.why_stale()

    read: list[Path] = []

    async def engine(pngs: Sequence[Path]) -> dict[Path, dict[str, Any]]:
        read.extend(pngs)
        return {png: {"engine_lines": [[[0, 0, 9, 0, 9, 9, 0, 9], "new", 1.0]]} for png in pngs}

    monkeypatch.setattr(ocr_lines, "read_with_engine", engine)
    fresh = Cache(tmp_path / "lines.json")
    fresh.entries[ocr_lines.shot_name(third)] = ("stale", [])
    got = ocr_lines.engine_lines([first, second, third], fresh)
    assert read == [third]
    assert got[first] == lines[first]
    assert got[second] == []
    assert got[third] == [[[0, 0, 9, 0, 9, 9, 0, 9], "new", 1.0]]
    assert ocr_lines.WRITE in capsys.readouterr().out


def test_the_key_follows_the_versions_and_the_preprocessing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    before = ocr_lines.fingerprint()
    data = b"\x89PNG..."
    assert shot_key(data, before) != shot_key(data + b"x", before)
    versions = {"onnxruntime": "9.9.9"}
    real = metadata.version
    monkeypatch.setattr(metadata, "version", lambda name: versions.get(name, real(name)))
    assert ocr_lines.fingerprint()["onnxruntime"] == "9.9.9"
    monkeypatch.undo()
    monkeypatch.setattr(ocr_worker, "DETECTOR_MIN_SIDE", 960)  # a new scale for the engine
    assert ocr_lines.fingerprint()["preprocessing"] != before["preprocessing"]
    monkeypatch.undo()
    for name, value in (("PHONE_ASPECT", 1.3), ("MAX_READ_PIXELS", 8_000_000)):
        monkeypatch.setattr(ocr_worker, name, value)  # which shots are phones, how large the rest
        assert ocr_lines.fingerprint()["preprocessing"] != before["preprocessing"]
        monkeypatch.undo()
    assert ocr_lines.fingerprint() == before

    def scale(width: int, height: int) -> float:
        """One docstring."""
        return min(1.0, 736 / min(width, height))  # one comment

    def same(width: int, height: int) -> float:
        """Another docstring: not the code."""
        return min(1.0, 736 / min(width, height))

    def other(width: int, height: int) -> float:
        return min(1.0, 960 / min(width, height))

    def renamed(width: int, height: int) -> float:
        return min(1.0, 736 / min(width, height))

    assert ocr_lines._code(scale).replace("scale", "same") == ocr_lines._code(same)
    assert ocr_lines._code(scale).replace("scale", "other") != ocr_lines._code(other)
    monkeypatch.setattr(
        ocr_lines, "PREPROCESSING", (*ocr_lines.PREPROCESSING[:-1], renamed)
    )  # a changed step
    assert ocr_lines.fingerprint()["preprocessing"] != before["preprocessing"]


def test_the_cache_keeps_the_engine_lines_bit_for_bit(tmp_path: Path) -> None:
    result = [
        [[[54.0, 35.0], [121.0, 35.0], [121.0, 68.0], [54.0, 68.0]], "9:41", 0.9964790195226669],
        [[[1.5, 2.25], [3.0, 2.0], [3.0, 4.0], [1.0, 4.0]], "妈妈 ok", 0.1 + 0.2],
    ]
    lines = canonical(result)
    assert lines[0][0] == [54, 35, 121, 35, 121, 68, 54, 68]
    png = ocr_lines.shots()[0]
    Cache(tmp_path / "lines.json").write({png: lines})
    text = (tmp_path / "lines.json").read_text(encoding="utf-8")
    assert len(text.splitlines()) == 4  # the fingerprint, "shots", one line per shot, the end
    assert json.loads(text)["shots"][ocr_lines.shot_name(png)]["lines"] == lines
    loaded = Cache(tmp_path / "lines.json").lines(png, png.read_bytes())
    assert loaded is not None
    assert engine_result(loaded) == result
    assert lines_from_ocr(engine_result(loaded), 0.68) == lines_from_ocr(result, 0.68)
