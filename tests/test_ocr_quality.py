"""Extraction quality of the local_ocr strategy on both screenshot sets.

Every screenshot goes through the strategy's own path and is scored with
tests/ocr_eval.py: the engine's lines (PP-OCR, as the worker runs it: a
1080 or 1440 px shot read at 736 px, its shorter side,
``worker.ocr_scale``), then what the worker does after the engine
(``worker.answer``: the layout, ``dropped_lines``), then the same
validation as a model's answer (``parse_merge_step``). The engine's lines
come from tests/data/ocr_lines.json (tests/ocr_lines.py) for each shot whose
key matches (its PNG's bytes, the engine's and its libraries' versions, the
preprocessing's code); any other shot is read by the real engine, in the
daemon's worker processes, and the command that refreshes the cache is
printed (``.venv/bin/python -m tests.ocr_lines --write``).
tests/test_ocr_lines.py proves the cache equal to the engine's reading on
one shot per app, every run. The whole file took 104.9 s when the engine
read every shot (setup 104.6 s), 7.7 s with the cache (setup 7.5 s): one
run after the other at commit 283da90 on the loaded 2-core machine (load
average ~6), ``pytest -s --durations=10``, the two printing the same tables
and misses (again at cb629e4). The check in tests/test_ocr_lines.py (8
shots) takes 9 to 26 s by the load.

* tests/data/chats (make_chats.py): flat boxes on flat backgrounds, kept as
  a regression set at the levels it has had since the strategy was built.
* tests/data/apps (render_apps.py): screenshots drawn like WhatsApp,
  Telegram, WeChat, iMessage, LINE, Messenger and Slack-like threads
  (no bubbles), with bars, headers, keyboards, drafts, date pills, system
  lines, quotes, photos, voice notes, group senders, reply counts and
  reactions; ``s4-*`` are shots of an unseen render (``--seed 4``) that
  showed failures, kept so the floors guard them; ``s11-*`` (``--seed 11``)
  draw what real apps vary and the reader did not expect (the signed-in
  user in a Slack channel, private channels, code blocks, file cards,
  "(edited)", status emoji, APP badges, texts ending in a time, bare
  numbers, 12-hour times, "Edited" / "Forwarded" labels); ``s60-*``
  (``--seed 60``) round 4: link previews, one-character names, groups with
  only the user's messages in view, 1:1 quotes of the talker's message,
  iMessage screens of photos and stickers, typing dots, Sam and Samantha.
  The floors are the levels reached (README, "Local OCR quality"); a change that lowers any
  figure, in total or for one app, fails.

``pytest -s`` prints the tables and every miss.
"""

from __future__ import annotations

import re
from collections import defaultdict
from typing import Any

import msgspec
import pytest

from daemon.extract import parse_merge_step
from daemon.ocr.worker import answer, decode_image
from tests import ocr_lines
from tests.ocr_eval import APPS, DATA, HEADER, Score, app_key, cases
from tests.ocr_lines import engine_result

Reading = tuple[str, dict[str, Any], dict[str, Any], int | None]

# tests/data/chats: 40 screenshots, 281 bubbles: recall, precision, side,
# order and talker 1.000; CER 0.0007 (4 edits in 6,103 characters, all OCR misreads;
# 0.0011 before the worker read wide shots at 736 px).
FLOORS = {"recall": 1.0, "precision": 1.0, "side": 1.0, "order": 1.0, "talker": 1.0}
MAX_CER = 0.002
# One invented field: 26-dark-720's date stamp "Mon 14:05" given as a sender.
MAX_INVENTED = 1

# tests/data/apps: 97 screenshots, 679 bubbles (README has the table): the
# levels reached at the reader of 3dcbbb9 with the shots that draw what real
# apps vary (render_apps.py: s11-* seed 11; s13-*, s14-*, s20-* captions,
# reactions, receipts, unread bands; s25-*, s27-* Telegram's pinned bar, a
# typing indicator, WeChat's recalled-message line, Slack's jumbo emoji
# sizes and second reactions; s60-* round 4: link previews, one-character
# names, groups with only the user's messages, 1:1 quotes of the talker,
# iMessage without a text bubble, typing dots, Sam and Samantha). kind is
# without the sticker allowance (59 emoji-only texts came back as empty
# stickers: kind* 0.997); CER counts the text read on bubbles that have none
# (junk, none here); user is participants.user (the signed-in user is in
# view on 11 Slack shots, 8 of them channels where no pixel says which
# sender is theirs). The 83 shots before s60 reach CER 0.00145 (the same
# reader, `pytest -s`); s60's misses, left for the reader, hold CER (s60-09,
# s60-43: spaces lost, "Meetingmoved to4:30,room B2") above it.
APP_FLOORS = {
    "recall": 1.0,
    "precision": 1.0,
    "side": 0.973,
    "order": 1.0,
    "talker": 1.0,
    "user": 0.272,
    "time": 1.0,
    "sender": 0.994,
    "quote": 0.923,
    "kind": 0.91,
    "kind_sticker": 0.997,
}
APP_MAX = {"cer": 0.0017, "cer_emoji": 0.0162}
APP_MAX_COUNTS = {"textless": 0, "junk": 0, "excused": 6, "invented": 0}
# Chrome returned as a message: none (a set, so that a known one can be
# listed while it is being fixed; any other fails).
KNOWN_CHROME: set[str] = set()
BOX = re.compile(r" [\[(][-\d, ]+[\])]$")  # a miss's box, after its text
# Each app on its own: the targets, except where the level reached
# is below them (floors at that level; README says why).
PER_APP_FLOORS = {
    "recall": 0.97,
    "precision": 0.97,
    "side": 1.0,
    "talker": 0.9,
    "time": 0.9,
    "sender": 0.9,
}
PER_APP_MAX_CER = 0.005
BELOW_TARGET: dict[str, dict[str, float]] = {
    # the signed-in user's messages in Slack channels are on the talker's
    # side: no pixel says which sender is the one signed in
    "slack": {"side": 0.865},
    # "+1" read empty (s13-06); s60-09: a caption read without its spaces
    "whatsapp-dark": {"cer": 0.0066},
}


@pytest.fixture(scope="module")
def readings() -> dict[str, list[Reading]]:
    """Both sets read by the strategy: (name, truth, step, dropped_lines)."""
    shots = [
        (group, png, truth)
        for group, data in (("chats", DATA), ("apps", APPS))
        for png, truth in cases(data)
    ]
    lines = ocr_lines.engine_lines([png for _, png, _ in shots])
    out: dict[str, list[Reading]] = defaultdict(list)
    for group, png, truth in shots:
        # The worker's path after the engine, and the validation of the race.
        reply = answer(decode_image(png.read_bytes()), engine_result(lines[png]), "right")
        assert "error" not in reply, (png.name, reply)
        step = msgspec.to_builtins(parse_merge_step(str(reply["step"])))
        out[group].append((png.name, truth, step, reply["dropped_lines"]))
    return {group: sorted(items, key=lambda r: r[0]) for group, items in out.items()}


def test_quality_on_the_synthetic_screenshots(readings: dict[str, list[Reading]]) -> None:
    assert len(readings["chats"]) >= 30
    score = Score()
    for name, truth, step, _ in readings["chats"]:
        score.add(name, truth, step)
    print("\n" + score.table())
    print("\n".join(score.misses))
    figures = score.figures()
    for name, floor in FLOORS.items():
        assert figures[name] >= floor, (name, figures[name], score.misses)
    assert figures["cer"] <= MAX_CER, (figures["cer"], score.misses)
    assert score.junk == 0, score.misses
    invented = score.time_invented + score.sender_invented + score.quote_invented
    assert invented <= MAX_INVENTED, score.misses
    assert figures["user"] == 1.0, score.misses  # nobody named as the user


def test_quality_on_screenshots_drawn_like_the_apps(readings: dict[str, list[Reading]]) -> None:
    assert len(readings["apps"]) >= 83
    total = Score()
    per_app: dict[str, Score] = defaultdict(Score)
    for name, truth, step, dropped in readings["apps"]:
        total.add(name, truth, step, dropped or 0)
        per_app[app_key(truth)].add(name, truth, step, dropped or 0)
    print("\n" + HEADER)
    for key in sorted(per_app):
        print(per_app[key].row(key))
    print(total.row("total"))
    print("\n".join(total.misses))
    assert len(per_app) >= 10  # every app drawn, light and dark, 1:1 and group, threads
    figures = total.figures()
    for name, floor in APP_FLOORS.items():
        assert figures[name] >= floor, (name, figures[name], total.misses)
    for name, ceiling in APP_MAX.items():
        assert figures[name] <= ceiling, (name, figures[name], total.misses)
    chrome = {BOX.sub("", miss) for miss in total.misses if ": CHROME " in miss}
    assert chrome <= KNOWN_CHROME, chrome  # no key, draft, pill or badge as a message
    counts = {
        "textless": total.textless,  # typing dots, a link card's picture as a message
        "junk": total.junk,
        "excused": total.excused,
        "invented": total.time_invented + total.sender_invented + total.quote_invented,
    }
    for name, ceiling in APP_MAX_COUNTS.items():
        assert counts[name] <= ceiling, (name, counts[name], total.misses)
    for key, score in per_app.items():
        app = score.figures()
        below = BELOW_TARGET.get(key, {})
        for name, floor in PER_APP_FLOORS.items():
            assert app[name] >= below.get(name, floor), (key, name, app[name], score.misses)
        assert app["cer"] <= below.get("cer", PER_APP_MAX_CER), (key, app["cer"], score.misses)


def test_dropped_lines_reach_the_completion(readings: dict[str, list[Reading]]) -> None:
    """Every local answer says how many lines it left out as uncertain; a
    shot with an unsent draft in its input bar leaves out at least that one.
    The draft is the renderer's own (``draft`` in the truth), not a list kept
    here: a new draft in render_apps.py is tested the day it is drawn."""
    dropped = {name: count for name, _, _, count in readings["apps"]}
    assert all(isinstance(count, int) for count in dropped.values()), dropped
    assert all("draft" in truth for _, truth, _, _ in readings["apps"])
    drafts = [name for name, truth, _, _ in readings["apps"] if truth["draft"]]
    assert len(drafts) >= 7, drafts
    for name, truth, _, _ in readings["apps"]:
        if truth["draft"]:
            assert truth["draft"] in truth["chrome"], name
            assert (dropped[name] or 0) >= 1, name


# --- the scorer (tests/ocr_eval.py) and the renderer's truth ---------------------------------


def _bubble(box: list[int], text: str, side: str = "left", **fields: Any) -> dict[str, Any]:
    return {
        "speaker": "talker" if side == "left" else "user",
        "side": side,
        "bbox": box,
        "text": text,
        **fields,
    }


def _scored(
    true: list[dict[str, Any]], pred: list[dict[str, Any]], **truth: Any
) -> tuple[Score, dict[str, float]]:
    score = Score()
    want = {"talker": None, "group": None, "user": None, "chrome": [], **truth, "bubbles": true}
    participants = {"user": None, "talker": None, "group": None}
    participants.update(want.pop("got", {}))
    score.add("shot", want, {"participants": participants, "bubbles": pred})
    return score, score.figures()


def test_the_scorer_reports_kind_without_the_sticker_allowance() -> None:
    """E1: an emoji-only text returned as an empty sticker counted as the
    right kind, and nothing said how many did."""
    score, f = _scored(
        [_bubble([0, 0, 100, 40], "👍👍"), _bubble([0, 50, 100, 90], "hi")],
        [_bubble([0, 0, 100, 40], "", kind="sticker"), _bubble([0, 50, 100, 90], "hi")],
    )
    assert (f["kind"], f["kind_sticker"], score.stickers) == (0.5, 1.0, 1)
    assert "| 0.500 | 1.000 (1) |" in score.row("x")


def test_the_scorer_counts_emoji_and_the_junk_read_on_a_bubble_without_text() -> None:
    """E2: emoji were left out of the only CER, and text read on a voice
    note ("(LC 20"", a waveform) cost nothing."""
    score, f = _scored(
        [_bubble([0, 0, 100, 40], "Haha 😂"), _bubble([0, 50, 100, 90], "", kind="voice")],
        [_bubble([0, 0, 100, 40], "Haha"), _bubble([0, 50, 100, 90], '(LC 20"')],
    )
    assert (score.junk, score.edits, score.chars) == (7, 7, 4)
    assert f["cer"] == 7 / 4
    assert (score.edits_emoji, score.chars_emoji) == (8, 5)  # "Haha😂": one more edit
    assert "shot: junk '(LC 20\"' for voice ''" in score.misses


def test_the_scorer_scores_quotes_the_user_and_invented_fields() -> None:
    """E4: quote and participants.user were never scored, and a time or a
    sender given where the truth shows none cost nothing."""
    quote = {"sender": "Tom Baker", "text": "See you at 10:30"}
    score, f = _scored(
        [
            _bubble([0, 0, 100, 40], "yes", quote=quote),
            _bubble([0, 50, 100, 90], "ok", quote=quote),
            _bubble([0, 100, 100, 140], "fine", time="9:30"),
            _bubble([0, 150, 100, 190], "later"),
        ],
        [
            _bubble(
                [0, 0, 100, 40], "yes", quote={"sender": "TomBaker", "text": "see you at 10:30"}
            ),
            _bubble([0, 50, 100, 90], "ok", quote={"sender": None, "text": "Tom Baker"}),
            _bubble([0, 100, 100, 140], "fine", time="9:30", quote={"sender": None, "text": "x"}),
            _bubble([0, 150, 100, 190], "later", time="Mon14:05", sender="Mon14:05"),
        ],
        user="Alex Kim",
    )
    assert (score.quoted, score.quote_ok, score.quote_invented) == (2, 1, 1)
    assert f["quote"] == 1 / 3
    assert (score.timed, score.time_ok, score.time_invented) == (1, 1, 1)
    assert f["time"] == 0.5
    assert (score.sent, score.sender_invented, f["sender"]) == (0, 1, 0.0)
    assert (score.users, score.user_ok, f["user"]) == (1, 0, 0.0)
    assert "shot: user None for 'Alex Kim'" in score.misses


def test_a_shortened_quote_matches_whatever_its_ellipsis_is_read_as() -> None:
    """Seed 12: '…' at the end of a shortened quote read as '···'."""
    from tests.ocr_eval import same_name

    assert same_name("这个方案整体没问题，预算那部分还要···", "这个方案整体没问题，预算那部分还要…")
    assert same_name("Can you send me the slides f...", "Can you send me the slides f…")
    assert not same_name("这个方案整体没问题", "这个方案整体没问题，预算那部分还要…")
    # s60-11: a quote cut just after a dot ("github.…", four dots drawn) read as "..."
    assert same_name("Look at this https://github...", "Look at this https://github.…")
    assert not same_name("Look at this https://github", "Look at this https://github.…")
    assert not same_name(None, "You")


def test_the_name_is_the_talker_and_the_group_together() -> None:
    """A group title given on a 1:1 chat (or a private channel read as a DM:
    talker 'random' for group 'random') is a wrong name."""
    _, f = _scored([], [], talker="Emma", got={"talker": "Emma", "group": "Family"})
    assert f["talker"] == 0.0
    _, f = _scored([], [], group="random", got={"talker": "random"})
    assert f["talker"] == 0.0
    _, f = _scored([], [], group="random", got={"group": "random"})
    assert f["talker"] == 1.0


def test_the_scorer_counts_what_the_partial_rule_excuses() -> None:
    """E6: a prediction on a cut bubble was left out of every figure, its
    text unseen, and nobody knew how many."""
    score, f = _scored(
        [_bubble([0, 0, 100, 40], "hi")],
        [_bubble([0, 0, 100, 40], "hi"), _bubble([0, 500, 100, 540], "HannvhirthdavlHnn")],
        partial=[[0, 498, 100, 560]],
    )
    assert (score.excused, score.predicted, f["precision"]) == (1, 1, 1.0)
    assert score.row("x").endswith("| 1 |")


def test_a_bubble_over_textless_chrome_counts_against_precision_and_is_named() -> None:
    """Typing dots and a link card's picture have no text to call chrome:
    a bubble predicted over one is an unmatched prediction (precision), and
    the misses and the table's textless column say what it lay over."""
    link = _bubble([0, 0, 200, 120], "Look at this https://airbnb.com/rooms/81234")
    score, f = _scored(
        [link],
        [
            link,
            _bubble([10, 5, 70, 60], "", kind="photo"),  # the card's picture
            _bubble([0, 300, 60, 334], "..."),  # the typing dots
            _bubble([200, 400, 300, 440], "hm"),  # over nothing listed
        ],
        textless=[
            {"what": "link picture", "bbox": [8, 4, 72, 68]},
            {"what": "typing", "bbox": [0, 298, 58, 332]},
        ],
    )
    assert (score.textless, score.chrome, f["precision"]) == (2, 0, 0.25)
    assert f["textless"] == 2.0
    assert "shot: TEXTLESS link picture '' [10, 5, 70, 60]" in score.misses
    assert "shot: TEXTLESS typing '...' [0, 300, 60, 334]" in score.misses
    assert "shot: extra 'hm' [200, 400, 300, 440]" in score.misses
    assert score.row("x").endswith("| 0 | 2 | 0 | 0 |")  # chrome, textless, dropped, excused
    assert "| chrome | textless | dropped | excused |" in HEADER


def test_a_latin_chrome_item_is_chrome_only_as_whole_words() -> None:
    """Slack's "APP" badge made "Happy birthday! ..." chrome (a message the
    input bar's edge cut, unmatched)."""
    score, _ = _scored(
        [],
        [
            _bubble([0, 0, 100, 40], "Happy birthday! Hope you have a wonderful day."),
            _bubble([0, 50, 100, 90], "Jira APP"),
            _bubble([0, 100, 100, 140], "I'll be t"),
        ],
        chrome=["APP", "I'll be th"],
    )
    assert score.chrome == 2
    assert any("extra 'Happy birthday!" in miss for miss in score.misses)


def test_the_committed_shots_draw_what_real_apps_vary() -> None:
    """Review R2: the renderer drew only what the reader assumes. The
    committed set (truth of tests/data/apps) holds each variation at least
    once, so the floors guard the reader on it."""
    truths = [truth for _, truth in cases(APPS)]
    slack = [t for t in truths if t["app"] == "slack"]
    bubbles = [b for t in truths for b in t["bubbles"]]
    chrome = {item for t in truths for item in t["chrome"]}
    texts = {b["text"] for b in bubbles}
    # the signed-in user writing in a channel: theirs, though no pixel says so
    assert any(
        t["group"] and t["user"] == "Alex Kim" and b["speaker"] == "user" and b["side"] == "right"
        for t in slack
        for b in t["bubbles"]
    )
    assert any(t["group"] and "members" not in " ".join(t["chrome"]) for t in slack)  # private
    assert any("\n" in b["text"] for t in slack for b in t["bubbles"])  # a code block
    assert any(b.get("kind") == "file" for t in slack for b in t["bubbles"])
    assert {"(edited)", "APP", "Edited", "edited", "Forwarded"} <= chrome
    assert any(b.get("time", "") and b["time"].endswith("M") for b in bubbles)  # 12-hour
    assert texts & {"See you at 10:30", "Standup moved to 9:30", "明天 9:30 开会"}
    assert texts & {"42", "+1", "3", "2", "100", "20"}
    assert any(b.get("kind") == "photo" and b["text"] for b in bubbles)  # a caption
    assert any(item == "Delivered" or item.startswith("Read ") for item in chrome)
    assert any(item.endswith("unread messages") for item in chrome)
    assert "Pinned Message" in chrome  # Telegram's pinned bar under the header
    assert any("撤回了一条消息" in item or "recalled a message" in item for item in chrome)


def test_the_committed_shots_draw_round_four() -> None:
    """Cold review of issue 15: link previews, one-character names, groups
    with only the user's messages in view, 1:1 quotes of the talker's
    message, iMessage screens without a text bubble, typing dots, names
    that share a prefix were never drawn (s60-*, ``--seed 60``)."""
    truths = [truth for _, truth in cases(APPS)]
    # a link's preview: the text is what was typed, the card's texts are chrome
    linked = [
        (t, b)
        for t in truths
        for b in t["bubbles"]
        if "https://" in b["text"] and b["kind"] == "text"
    ]
    assert {t["app"] for t, _ in linked} >= {"whatsapp", "telegram"}
    for t, b in linked:  # the card's domain, shown under its title, is chrome
        assert any(c in b["text"] for c in t["chrome"] if "." in c and " " not in c), b
    assert any(x["what"] == "link picture" for t in truths for x in t.get("textless", []))
    # one-character names: a talker and a group's sender
    assert any(t["talker"] and len(t["talker"]) == 1 for t in truths if t["app"] == "wechat")
    assert any(
        t["group"] and any(b["sender"] and len(b["sender"]) == 1 for b in t["bubbles"])
        for t in truths
        if t["app"] == "line"
    )
    # groups where only the user's messages are in view: a group, no talker
    mine_only = {
        t["app"]
        for t in truths
        if t["group"] and t["bubbles"] and all(b["speaker"] == "user" for b in t["bubbles"])
    }
    assert mine_only >= {"wechat", "whatsapp"}
    # 1:1 quotes of the talker's message, under the talker's name (Messenger: first name)
    one_to_one = [
        (t, b["quote"]["sender"])
        for t in truths
        for b in t["bubbles"]
        if b.get("quote") and t["talker"]
    ]
    assert any(t["app"] == "whatsapp" and who == t["talker"] for t, who in one_to_one)
    assert any(t["app"] == "telegram" and who == t["talker"] for t, who in one_to_one)
    assert any(
        t["app"] == "messenger"
        and who == t["talker"].split()[0]
        and f"You replied to {who}" in t["chrome"]
        for t, who in one_to_one
    )
    # iMessage with no text bubble in view: the name under the avatar is the only name
    assert any(
        t["app"] == "imessage"
        and t["bubbles"]
        and all(b["kind"] in ("photo", "sticker") for b in t["bubbles"])
        and any(b["kind"] == "sticker" and b["text"] == "" for b in t["bubbles"])
        for t in truths
    )
    # typing dots: never a bubble, listed as textless chrome, in three apps at least
    typing = {t["app"] for t in truths if any(x["what"] == "typing" for x in t.get("textless", []))}
    assert len(typing) >= 3, typing

    # names that share a prefix, in one group and in one DM
    def names(t: dict[str, Any]) -> set[str]:
        return {b["sender"] for b in t["bubbles"] if b.get("sender")} | {t["talker"], t["user"]}

    shared = [t for t in truths if {"Sam", "Samantha"} <= names(t)]
    assert any(t["group"] for t in shared)
    assert any(t["talker"] for t in shared)


def test_a_quote_names_who_wrote_the_quoted_message() -> None:
    """Cold review of issue 15: every 1:1 quote's sender was "You", also
    over the talker's words (10 of the 16 in the shots before s60, drawn so
    too). Round 4's script names who wrote it: "You" for the user's, the
    talker in a 1:1 (Messenger: the first name), the sender in a group."""
    from itertools import pairwise
    from random import Random

    from tests.data.render.apps import APPS as LOOKS
    from tests.data.render.script import Msg, Round4, script

    checked = 0
    for key in ("whatsapp-light", "telegram-dark", "line", "messenger"):
        for group in (False, True):
            for seed in range(6):
                talker = None if group else "Emma Wilson"
                plan = Round4(talker=talker, members=["Sam", "Samantha"], quotes=0.6)
                items = script(LOOKS[key], Random(seed), group, False, 24, 4, plan)
                texts = [m for m in items if isinstance(m, Msg) and m.kind == "text"]
                for before, m in pairwise(texts):
                    if not m.quote:
                        continue
                    assert m.quote[1] == before.text
                    wrote = str(before.sender if group else "Emma Wilson")
                    if before.side == "right":
                        wrote = "You"
                    elif key == "messenger":
                        wrote = wrote.split()[0]
                    assert m.quote[0] == wrote, (key, m)
                    checked += 1
    assert checked > 40, checked


def test_telegram_says_typing_in_its_header_not_with_dots() -> None:
    """Telegram draws no typing bubble in the chat: its header says
    "typing…" (round 5; seed 60's committed shots keep round 4's dots)."""
    from random import Random

    from tests.data.render.apps import APPS as LOOKS
    from tests.data.render.bubble_apps import round4

    asked = {"typing": True}
    for group in (False, True):
        title, subtitle, _, dots = round4(
            LOOKS["telegram-dark"], asked, group, False, "Tom Baker", "online", Random(1), 5
        )
        assert (title, dots) == ("Tom Baker", False)
        assert subtitle == "typing…" or (group and str(subtitle).endswith(" is typing…"))
        _, subtitle, _, dots = round4(
            LOOKS["telegram-dark"], asked, group, False, "Tom Baker", "online", Random(1), 4
        )
        assert dots
        assert "typing" not in str(subtitle)
    *_, dots = round4(LOOKS["whatsapp-dark"], asked, False, False, "Tom", None, Random(1), 5)
    assert dots  # the apps that draw dots still do
