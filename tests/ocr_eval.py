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
* excused = predicted bubbles left out of the figures by that rule (its
  text is not looked at: a cut row's garbage is excused too);
* CER = character edit distance / true characters, over every matched
  bubble: the truth's text (empty for a photo, a voice note, a file sent
  without a word) against the predicted one, after NFKC (so a full-width
  comma equals a half-width one), emoji removed (PP-OCR's alphabet has
  none), whitespace runs collapsed to one space and spaces next to CJK text
  removed. Text read on a bubble whose truth has none (a voice note's
  waveform read as "(LC 20"") costs its characters (``junk``);
* CER+emoji = the same with emoji kept: what a reader that must give the
  emoji loses (an emoji-only message returned empty costs every emoji);
* name = screenshots whose ``participants.talker`` and
  ``participants.group`` both equal the truth's (the group's title for a
  group, the talker for a 1:1 or a DM; null when not shown) / screenshots;
* user = screenshots whose ``participants.user`` equals the truth's
  ``user`` (the signed-in user's name where a message of theirs is in view,
  also where the pixels cannot tell it is theirs) / screenshots where
  either names one;
* time, sender = matched bubbles whose ``time`` (``sender``) equals the
  truth's / (matched bubbles whose truth shows one + those where the
  prediction invents one the truth does not show);
* quote = matched bubbles whose ``quote`` sender and text equal the
  truth's (normalised as for the CER, spaces and case aside) / (matched
  bubbles whose truth quotes + those with an invented quote);
* kind = matched bubbles whose ``kind`` (absent: text) equals the truth's /
  matched; kind* the same where an emoji-only text bubble returned as a
  sticker counts as right, and ``stickers`` how many did;
* chrome = predicted bubbles that match no bubble and whose text is (part
  of) a text the truth lists as ``chrome``: keys, suggestions, the input's
  placeholder or draft, date pills, system lines, badges, bars. Target 0;
* textless = predicted bubbles that match no bubble, are not chrome, and
  lie over something the truth lists as ``textless`` (drawn, no text, no
  message: typing dots, a link card's picture; IoU >= 0.5 with it, or half
  of the prediction inside it). Text cannot tell them from a message, so
  the box does; like chrome they count against precision. Target 0.
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
_JOINERS = re.compile("[\ufe0f\u200d]")


# a shortened quote's end: "…" (dots before it are the cut text's or the
# reader's, no one can tell: "github.…" is drawn as four dots), "...", "···"
_ELLIPSIS = re.compile(r"(\.*…|\.{3,}|[·・]{2,})$")


def same_name(a: str | None, b: str | None) -> bool:
    """Two names or quoted texts read alike: normalised, spaces and case
    aside, a shortened quote's ending ellipsis whether read as "…", "..."
    or "···", with the dots just before it ("github.…" cut from
    "github.com" reads as "github...")."""
    if a is None or b is None:
        return a is b

    def key(text: str) -> str:
        return _ELLIPSIS.sub("…", normalise(text).replace(" ", "").lower())

    return key(a) == key(b)


def normalise(text: str, emoji: bool = False) -> str:
    """The text as the CER compares it (``emoji``: keep the emoji, drop
    only their joiners and variation selectors)."""
    text = _EMOJI.sub("", text) if not emoji else _JOINERS.sub("", text)
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
    least 3 characters (a one-letter key, "q" or "t", is in almost any text);
    a Latin item inside a longer text only as whole words (Slack's "APP"
    badge is not in "Happy birthday"; a draft read in part, "I'll be t", is
    still the draft)."""
    got = normalise(text).lower()
    if not got:
        return False
    for item in chrome:
        want = normalise(item).lower()
        if not want:
            continue
        if want == got or (min(len(want), len(got)) >= 3 and (got in want or _words(want, got))):
            return True
    return False


def _over(pred: dict[str, Any], box: list[int]) -> bool:
    """A predicted bubble lies over ``box``: IoU >= 0.5, or half of it inside."""
    b = pred["bbox"]
    ix = max(0, min(b[2], box[2]) - max(b[0], box[0]))
    iy = max(0, min(b[3], box[3]) - max(b[1], box[1]))
    area = (b[2] - b[0]) * (b[3] - b[1])
    return iou(b, box) >= IOU_MIN or (area > 0 and ix * iy >= area / 2)


def _words(item: str, text: str) -> bool:
    """``item`` is in ``text`` (as whole words when it is Latin)."""
    if not item.isascii():
        return item in text
    edge = "(?<![a-z0-9]){}(?![a-z0-9])"
    return re.search(edge.format(re.escape(item)), text) is not None


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
    kind_sticker_ok: int = 0  # kind_ok, with an emoji-only text as a sticker counted right
    stickers: int = 0  # emoji-only texts returned as stickers
    chars_emoji: int = 0
    edits_emoji: int = 0
    junk: int = 0  # characters read on matched bubbles whose truth has no text
    users: int = 0
    user_ok: int = 0
    time_invented: int = 0
    sender_invented: int = 0
    quoted: int = 0
    quote_ok: int = 0
    quote_invented: int = 0
    excused: int = 0  # predictions left out by the partial rule
    chrome: int = 0
    textless: int = 0  # unmatched predictions over textless chrome (typing dots, a picture)
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
        self.excused += len(step["bubbles"]) - len(pred)
        self.true_bubbles += len(true)
        self.predicted += len(pred)
        participants = step.get("participants") or {}
        got_names = (participants.get("talker"), participants.get("group"))
        want_names = (truth.get("talker"), truth.get("group"))
        if got_names == want_names:
            self.talker_ok += 1
        else:
            self.misses.append(f"{name}: name {got_names!r} for {want_names!r} (talker, group)")
        got_user, want_user = participants.get("user"), truth.get("user")
        if got_user is not None or want_user is not None:
            self.users += 1
            self.user_ok += got_user == want_user
            if got_user != want_user:
                self.misses.append(f"{name}: user {got_user!r} for {want_user!r}")
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
        textless = truth.get("textless", [])
        for pi in sorted(set(range(len(pred))) - used_p):
            chrome = _is_chrome(pred[pi]["text"], truth.get("chrome", []))
            over = [] if chrome else [t["what"] for t in textless if _over(pred[pi], t["bbox"])]
            self.chrome += chrome
            self.textless += bool(over)
            what = "CHROME" if chrome else (f"TEXTLESS {over[0]}" if over else "extra")
            self.misses.append(f"{name}: {what} {pred[pi]['text']!r} {pred[pi]['bbox']}")
        self.matched += len(pairs)
        for ti, pi in pairs:
            t, p = true[ti], pred[pi]
            self.side_ok += t["side"] == p["side"]
            if t["side"] != p["side"]:
                self.misses.append(f"{name}: side {p['side']} for {t['side']} {t['text']!r}")
            want_kind, got_kind = t.get("kind") or "text", p.get("kind") or "text"
            emoji_only = want_kind == "text" and not normalise(t["text"])
            sticker = emoji_only and got_kind == "sticker"
            self.kind_ok += got_kind == want_kind
            self.kind_sticker_ok += got_kind == want_kind or sticker
            self.stickers += sticker
            if got_kind != want_kind:
                what = (
                    "sticker for an emoji-only text" if sticker else f"{got_kind} for {want_kind}"
                )
                self.misses.append(f"{name}: kind {what} {t['text']!r}")
            for key in ("time", "sender"):
                want, got = t.get(key), p.get(key)
                if want is None and got is None:
                    continue
                if want is None:
                    setattr(self, f"{key}_invented", getattr(self, f"{key}_invented") + 1)
                    self.misses.append(f"{name}: invented {key} {got!r} on {t['text']!r}")
                    continue
                if key == "time":
                    self.timed += 1
                    self.time_ok += got == want
                else:
                    self.sent += 1
                    self.sender_ok += got == want
                if got != want:
                    self.misses.append(f"{name}: {key} {got!r} for {want!r}")
            want_q, got_q = t.get("quote"), p.get("quote")
            if want_q is not None:
                self.quoted += 1
                ok = got_q is not None and all(
                    same_name(got_q.get(k), want_q.get(k)) for k in ("sender", "text")
                )
                self.quote_ok += ok
                if not ok:
                    self.misses.append(f"{name}: quote {got_q!r} for {want_q!r}")
            elif got_q is not None:
                self.quote_invented += 1
                self.misses.append(f"{name}: invented quote {got_q!r} on {t['text']!r}")
            expected, got = normalise(t["text"]), normalise(p["text"])
            self.chars += len(expected)
            distance = edit_distance(expected, got)
            self.edits += distance
            if not expected and got:
                self.junk += len(got)
            if distance:
                what = "junk" if not expected else "text"
                self.misses.append(f"{name}: {what} {got!r} for {want_kind} {expected!r}")
            expected, got = normalise(t["text"], emoji=True), normalise(p["text"], emoji=True)
            self.chars_emoji += len(expected)
            self.edits_emoji += edit_distance(expected, got)
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
            "cer_emoji": self.edits_emoji / max(self.chars_emoji, 1),
            "talker": self.talker_ok / max(self.screenshots, 1),
            "user": _share(self.user_ok, self.users),
            "time": _share(self.time_ok, self.timed + self.time_invented),
            "sender": _share(self.sender_ok, self.sent + self.sender_invented),
            "quote": _share(self.quote_ok, self.quoted + self.quote_invented),
            "kind": self.kind_ok / max(self.matched, 1),
            "kind_sticker": self.kind_sticker_ok / max(self.matched, 1),
            "chrome": float(self.chrome),
            "textless": float(self.textless),
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
        """One line of the per-app table (``ocr_bench.py --apps``, the quality test):
        HEADER says what each column is; (n) how many bubbles or shots a
        figure is over, +n how many of them the prediction invented."""
        f = self.figures()

        def of(figure: str, count: int, invented: int | None = None) -> str:
            more = f"+{invented}" if invented else ""
            return f"{f[figure]:.3f} ({count}{more})"

        return (
            f"| {label:<15} | {self.screenshots:>5} | {self.true_bubbles:>7} | {f['recall']:.3f} "
            f"| {f['precision']:.3f} | {f['side']:.3f} | {f['cer']:.4f} ({self.junk}) "
            f"| {f['cer_emoji']:.4f} | {f['talker']:.3f} | {of('user', self.users)} "
            f"| {of('time', self.timed, self.time_invented)} "
            f"| {of('sender', self.sent, self.sender_invented)} "
            f"| {of('quote', self.quoted, self.quote_invented)} "
            f"| {f['kind']:.3f} | {f['kind_sticker']:.3f} ({self.stickers}) | {self.chrome} "
            f"| {self.textless} | {self.dropped} | {self.excused} |"
        )


def _share(ok: int, out_of: int) -> float:
    return ok / out_of if out_of else 1.0


HEADER = (
    "| app             | shots | bubbles | recall | prec. | side  | CER (junk) | CER+emoji "
    "| name  | user      | time      | sender    | quote     | kind  | kind* (stickers) "
    "| chrome | textless | dropped | excused |\n"
    "| --------------- | ----- | ------- | ------ | ----- | ----- | ---------- | --------- "
    "| ----- | --------- | --------- | --------- | --------- | ----- | ---------------- "
    "| ------ | -------- | ------- | ------- |"
)


def app_key(truth: dict[str, Any]) -> str:
    """The row a screenshot of tests/data/apps is reported in."""
    app = str(truth.get("app", "chats"))
    if app in ("whatsapp", "imessage"):
        return f"{app}-{truth.get('theme', '')}"
    if app == "wechat" and truth.get("group"):
        return "wechat-group"
    return app
