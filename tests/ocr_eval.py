"""Scoring an extraction against the ground truth of tests/data/chats and tests/data/apps.

Used by tests/test_ocr_quality.py and bench/ocr_bench.py. Definitions:

* a predicted bubble matches a true one when their boxes overlap with
  IoU >= 0.5 (greedy, best pairs first, each bubble matched at most once);
  a predicted bubble that matches none but overlaps a ``partial`` box of the
  truth (a bubble the header or the input bar cuts) with IoU >= 0.5 is not
  counted at all: the truth neither wants nor forbids it;
* recall = matched / true bubbles, precision = matched / predicted bubbles;
* side accuracy = matched bubbles with the right side / matched;
* order = pairs of matched bubbles in the same relative order as in the
  truth / all such pairs (pairs within one screenshot);
* CER = character edit distance / true characters, over matched bubbles of
  ``kind`` text, after NFKC (so a full-width comma equals a half-width one),
  emoji removed (PP-OCR's alphabet has none: an emoji is neither wanted nor
  counted), whitespace runs collapsed to one space and spaces next to CJK
  text removed;
* name = screenshots whose name is right / screenshots: ``participants.group``
  equals the group's title for a group, else ``participants.talker`` equals
  the talker (null when the screenshot shows no name);
* time, sender = matched bubbles whose ``time`` (``sender``) equals the
  truth's / matched bubbles whose truth shows one;
* kind = matched bubbles whose ``kind`` (absent: text) equals the truth's /
  matched (an emoji-only text bubble may also come back as a sticker);
* chrome = predicted bubbles that match no bubble and whose text is (part
  of) a text the truth lists as ``chrome``: keys, suggestions, the input's
  placeholder or draft, date pills, system lines, badges, bars. Target 0.
"""

from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DATA = Path(__file__).resolve().parent / "data" / "chats"
APPS = Path(__file__).resolve().parent / "data" / "apps"
IOU_MIN = 0.5


def cases(data: Path = DATA) -> list[tuple[Path, dict[str, Any]]]:
    """(screenshot, truth) pairs, in name order."""
    out = []
    for truth in sorted(data.glob("*.json")):
        out.append((truth.with_suffix(".png"), json.loads(truth.read_text(encoding="utf-8"))))
    return out


def iou(a: list[int], b: list[int]) -> float:
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union else 0.0


_CJK_SPACE = re.compile(r"(?<=[^\x00-\x7f])\s+|\s+(?=[^\x00-\x7f])")
_EMOJI = re.compile("[\U0001f000-\U0001ffff\u2600-\u27bf\ufe0f\u200d]")


def normalise(text: str) -> str:
    text = _EMOJI.sub("", text)
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


def _is_chrome(text: str, chrome: list[str]) -> bool:
    """An unmatched line is chrome when it reads as one of the shot's chrome
    items: the same text, or one inside the other when the shorter has at
    least 3 characters (a one-letter key, "q" or "t", is in almost any text)."""
    got = normalise(text).lower()
    if not got:
        return False
    for item in chrome:
        want = normalise(item).lower()
        if not want:
            continue
        if want == got or (min(len(want), len(got)) >= 3 and (got in want or want in got)):
            return True
    return False


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
    timed: int = 0
    time_ok: int = 0
    sent: int = 0
    sender_ok: int = 0
    kind_ok: int = 0
    chrome: int = 0
    dropped: int = 0
    misses: list[str] = field(default_factory=list)

    def add(self, name: str, truth: dict[str, Any], step: dict[str, Any], dropped: int = 0) -> None:
        """Score one screenshot; ``step`` is the MergeStep (as builtins)."""
        self.screenshots += 1
        self.dropped += dropped
        true = truth["bubbles"]
        partial = truth.get("partial", [])
        pred = [
            p
            for p in step["bubbles"]
            if not any(iou(p["bbox"], box) >= IOU_MIN for box in partial)
            or any(iou(p["bbox"], t["bbox"]) >= IOU_MIN for t in true)
        ]
        self.true_bubbles += len(true)
        self.predicted += len(pred)
        participants = step["participants"]
        if truth.get("group") is not None:
            got_name, want_name = participants.get("group"), truth["group"]
        else:
            got_name, want_name = participants.get("talker"), truth["talker"]
        if got_name == want_name:
            self.talker_ok += 1
        else:
            self.misses.append(f"{name}: name {got_name!r} for {want_name!r}")
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
        for ti in sorted(set(range(len(true))) - used_t):
            self.misses.append(
                f"{name}: missed {true[ti].get('kind', 'text')} {true[ti]['text']!r}"
            )
        for pi in sorted(set(range(len(pred))) - used_p):
            chrome = _is_chrome(pred[pi]["text"], truth.get("chrome", []))
            self.chrome += chrome
            what = "CHROME" if chrome else "extra"
            self.misses.append(f"{name}: {what} {pred[pi]['text']!r} {pred[pi]['bbox']}")
        self.matched += len(pairs)
        for ti, pi in pairs:
            t, p = true[ti], pred[pi]
            self.side_ok += t["side"] == p["side"]
            if t["side"] != p["side"]:
                self.misses.append(f"{name}: side {p['side']} for {t['side']} {t['text']!r}")
            want_kind, got_kind = t.get("kind", "text"), p.get("kind") or "text"
            emoji_only = want_kind == "text" and not normalise(t["text"])
            kind_ok = got_kind == want_kind or (emoji_only and got_kind == "sticker")
            self.kind_ok += kind_ok
            if not kind_ok:
                self.misses.append(f"{name}: kind {got_kind} for {want_kind} {t['text']!r}")
            if t.get("time") is not None:
                self.timed += 1
                self.time_ok += p.get("time") == t["time"]
                if p.get("time") != t["time"]:
                    self.misses.append(f"{name}: time {p.get('time')!r} for {t['time']!r}")
            if t.get("sender") is not None:
                self.sent += 1
                self.sender_ok += p.get("sender") == t["sender"]
                if p.get("sender") != t["sender"]:
                    self.misses.append(f"{name}: sender {p.get('sender')!r} for {t['sender']!r}")
            if want_kind != "text":
                continue
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
            "time": self.time_ok / self.timed if self.timed else 1.0,
            "sender": self.sender_ok / self.sent if self.sent else 1.0,
            "kind": self.kind_ok / max(self.matched, 1),
            "chrome": float(self.chrome),
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

    def row(self, label: str) -> str:
        """One line of the per-app table (``ocr_bench.py --apps``, the quality test)."""
        f = self.figures()
        return (
            f"| {label:<15} | {self.screenshots:>5} | {self.true_bubbles:>7} | {f['recall']:.3f} "
            f"| {f['precision']:.3f} | {f['side']:.3f} | {f['cer']:.4f} | {f['talker']:.3f} "
            f"| {f['time']:.3f} ({self.timed}) | {f['sender']:.3f} ({self.sent}) "
            f"| {f['kind']:.3f} | {self.chrome} | {self.dropped} |"
        )


HEADER = (
    "| app             | shots | bubbles | recall | prec. | side  | CER    | name  "
    "| time        | sender      | kind  | chrome | dropped |\n"
    "| --------------- | ----- | ------- | ------ | ----- | ----- | ------ | ----- "
    "| ----------- | ----------- | ----- | ------ | ------- |"
)


def app_key(truth: dict[str, Any]) -> str:
    """The row a screenshot of tests/data/apps is reported in."""
    app = str(truth.get("app", "chats"))
    if app in ("whatsapp", "imessage"):
        return f"{app}-{truth.get('theme', '')}"
    if app == "wechat" and truth.get("group"):
        return "wechat-group"
    return app
