"""Scoring an extraction against the ground truth of tests/data/chats.

Used by tests/test_ocr_quality.py and bench/ocr_bench.py. Definitions:

* a predicted bubble matches a true one when their boxes overlap with
  IoU >= 0.5 (greedy, best pairs first, each bubble matched at most once);
* recall = matched / true bubbles, precision = matched / predicted bubbles;
* side accuracy = matched bubbles with the right side / matched;
* order = pairs of matched bubbles in the same relative order as in the
  truth / all such pairs (pairs within one screenshot);
* CER = character edit distance / true characters, over matched bubbles,
  after NFKC (so a full-width comma equals a half-width one), whitespace
  runs collapsed to one space and spaces next to CJK text removed;
* talker = screenshots whose ``participants.talker`` equals the title
  (null when the screenshot has no title) / screenshots.
"""

from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DATA = Path(__file__).resolve().parent / "data" / "chats"
IOU_MIN = 0.5


def cases() -> list[tuple[Path, dict[str, Any]]]:
    """(screenshot, truth) pairs, in name order."""
    out = []
    for truth in sorted(DATA.glob("*.json")):
        out.append((truth.with_suffix(".png"), json.loads(truth.read_text(encoding="utf-8"))))
    return out


def iou(a: list[int], b: list[int]) -> float:
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union else 0.0


_CJK_SPACE = re.compile(r"(?<=[^\x00-\x7f])\s+|\s+(?=[^\x00-\x7f])")


def normalise(text: str) -> str:
    text = unicodedata.normalize("NFKC", text)
    text = " ".join(text.split())
    return _CJK_SPACE.sub("", text)


def edit_distance(a: str, b: str) -> int:
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, start=1):
        current = [i]
        for j, cb in enumerate(b, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


@dataclass
class Score:
    screenshots: int = 0
    true_bubbles: int = 0
    predicted: int = 0
    matched: int = 0
    side_ok: int = 0
    pairs: int = 0
    pairs_ok: int = 0
    chars: int = 0
    edits: int = 0
    talker_ok: int = 0
    misses: list[str] = field(default_factory=list)

    def add(self, name: str, truth: dict[str, Any], step: dict[str, Any]) -> None:
        """Score one screenshot; ``step`` is the MergeStep (as builtins)."""
        self.screenshots += 1
        true = truth["bubbles"]
        pred = step["bubbles"]
        self.true_bubbles += len(true)
        self.predicted += len(pred)
        if step["participants"]["talker"] == truth["talker"]:
            self.talker_ok += 1
        else:
            self.misses.append(f"{name}: talker {step['participants']['talker']!r}")
        candidates = sorted(
            (
                (iou(t["bbox"], p["bbox"]), ti, pi)
                for ti, t in enumerate(true)
                for pi, p in enumerate(pred)
            ),
            reverse=True,
        )
        used_t: set[int] = set()
        used_p: set[int] = set()
        pairs: list[tuple[int, int]] = []
        for overlap, ti, pi in candidates:
            if overlap < IOU_MIN:
                break
            if ti in used_t or pi in used_p:
                continue
            used_t.add(ti)
            used_p.add(pi)
            pairs.append((ti, pi))
        for ti in set(range(len(true))) - used_t:
            self.misses.append(f"{name}: missed {true[ti]['text']!r}")
        for pi in set(range(len(pred))) - used_p:
            self.misses.append(f"{name}: extra {pred[pi]['text']!r}")
        self.matched += len(pairs)
        for ti, pi in pairs:
            t, p = true[ti], pred[pi]
            self.side_ok += t["side"] == p["side"]
            expected, got = normalise(t["text"]), normalise(p["text"])
            self.chars += len(expected)
            distance = edit_distance(expected, got)
            self.edits += distance
            if distance:
                self.misses.append(f"{name}: text {got!r} for {expected!r}")
        for i, (ta, pa) in enumerate(pairs):
            for tb, pb in pairs[i + 1 :]:
                self.pairs += 1
                self.pairs_ok += (ta < tb) == (pa < pb)

    def figures(self) -> dict[str, float]:
        return {
            "recall": self.matched / max(self.true_bubbles, 1),
            "precision": self.matched / max(self.predicted, 1),
            "side": self.side_ok / max(self.matched, 1),
            "order": self.pairs_ok / max(self.pairs, 1),
            "cer": self.edits / max(self.chars, 1),
            "talker": self.talker_ok / max(self.screenshots, 1),
        }

    def table(self) -> str:
        f = self.figures()
        return "\n".join(
            [
                f"screenshots {self.screenshots}, true bubbles {self.true_bubbles}, "
                f"predicted {self.predicted}, matched {self.matched}",
                "bubble recall     {:.3f}".format(f["recall"]),
                "bubble precision  {:.3f}".format(f["precision"]),
                "side accuracy     {:.3f}".format(f["side"]),
                "order accuracy    {:.3f}".format(f["order"]),
                "character error   {:.4f}".format(f["cer"]),
                "talker name       {:.3f}".format(f["talker"]),
            ]
        )
