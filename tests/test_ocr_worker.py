"""daemon/ocr/worker.py after the engine: ``answer`` (the layout's step or an error)."""

from __future__ import annotations

from typing import Any

import numpy as np

from daemon.extract import parse_merge_step
from daemon.ocr.worker import answer


def _line(x1: int, y1: int, x2: int, y2: int, text: str) -> list[Any]:
    """One line as the engine gives it: four corners, the text, a score."""
    return [[[x1, y1], [x2, y1], [x2, y2], [x1, y2]], text, 0.99]


def test_an_empty_chat_is_a_step_with_no_bubbles_and_its_names() -> None:
    """A chat just opened (no message in view, the keyboard up, someone
    typing) is "nothing there", with who the chat is with: the worker gave
    an error, so the daemon lost the names and waited for the models
    (cold review 4, finding 5; seed 91: 4 of 66 shots)."""
    rgb = np.full((1280, 720, 3), 255, np.uint8)
    rgb[:150] = (240, 240, 240)  # the header's bar
    engine = [_line(120, 60, 330, 100, "Priya Shah"), _line(120, 100, 300, 125, "online")]
    reply = answer(rgb, engine, "right")
    assert "error" not in reply, reply
    step = parse_merge_step(reply["step"])
    assert step.bubbles == []
    assert step.participants is not None
    assert step.participants.talker == "Priya Shah"
    assert reply["dropped_lines"] == 0


def test_a_screen_with_no_bubble_and_no_header_is_not_answered() -> None:
    """No bubble and no name: the layout is not sure it is a chat at all, and
    the other strategies answer."""
    blank = np.full((1280, 720, 3), 255, np.uint8)
    assert answer(blank, [], "right") == {"error": "no chat bubble found (0 text lines)"}
    assert answer(blank, None, "right") == {"error": "no chat bubble found (0 text lines)"}
