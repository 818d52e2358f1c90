"""daemon/ocr/words.py: what a line's text says, from its text alone."""

from __future__ import annotations

import pytest

from daemon.ocr.words import clean_time, is_receipt, is_time, split_time


@pytest.mark.parametrize(
    ("text", "split"),
    [
        ("Saturday? 10:22 W", ("Saturday?", "10:22")),
        ("Saturday? 9:41 AM", ("Saturday?", "9:41 AM")),
        # Spanish and other locales print "a. m." / "p. m.", a space inside
        # (cold review 4, finding 2: the time came back inside the text).
        ("Saturday? 1:21 p. m.", ("Saturday?", "1:21 p. m.")),
        ("Are you free this weekend? 1:09 p. m.W", ("Are you free this weekend?", "1:09 p. m.")),
        ("Booked the table for 8 1:15 p.m.", ("Booked the table for 8", "1:15 p.m.")),
        # The half of the day before the time: Chinese, Japanese, Korean.
        ("好呀 下午3:45", ("好呀", "下午3:45")),
        ("了解です 午後3:45", ("了解です", "午後3:45")),
        ("좋아요 오후 3:45", ("좋아요", "오후 3:45")),
        # No Latin "am" is taken from before a time: those are words.
        ("I am 3:45", ("I am", "3:45")),
        ("No time here", ("No time here", None)),
    ],
)
def test_a_time_at_a_bubbles_end_in_any_locale_is_split_from_the_text(
    text: str, split: tuple[str, str | None]
) -> None:
    assert split_time(text) == split


@pytest.mark.parametrize(
    "text", ["1:09 p. m.", "11:14 a.m.", "午後3:45", "下午 3:45", "오전 9:05", "20.50", "9:41 AM"]
)
def test_a_time_alone_in_any_locale_is_a_time(text: str) -> None:
    """LINE prints the time beside a bubble, alone: a time, never a message."""
    assert is_time(text)


@pytest.mark.parametrize("text", ["下午见", "晚上七点在老地方见", "Read the book", "3:4", "25:10"])
def test_words_and_odd_numbers_are_no_time(text: str) -> None:
    assert not is_time(text)


def test_a_read_receipt_with_a_time_in_any_locale() -> None:
    assert is_receipt("Read 8:12 a. m.")
    assert is_receipt("既読 午後3:45")
    assert not is_receipt("Read the book")


def test_a_time_is_given_as_the_app_shows_it() -> None:
    assert clean_time("9:31AM") == "9:31 AM"
    assert clean_time("1:09p. m.") == "1:09 p. m."
    assert clean_time("20.50") == "20:50"
