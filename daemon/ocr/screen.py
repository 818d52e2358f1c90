"""What one read of a screenshot knows so far; no I/O.

The state that the stages of ``daemon/ocr/layout.py``'s ``read`` (and
``daemon/ocr/pictures.py``) pass on: each stage fills some of it, and
says in its docstring which part.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from daemon.ocr import marks
from daemon.ocr.bubble import Bubble, Line
from daemon.ocr.chrome import Frame
from daemon.ocr.pixels import RGB, Image


@dataclass(slots=True, eq=False)
class Screen:
    """What one read knows so far; each stage of ``read`` fills some of it."""

    image: Image
    width: int
    height: int
    frame: Frame
    found: list[Bubble]  # every region a fill found, quote boxes too
    loose: list[Line]  # lines not (yet) placed in or around a bubble
    paper: RGB  # the wallpaper's colour
    dropped: int  # lines left out as not sure
    typical: float = 0  # the median height of a line in a bubble
    messages: list[Bubble] = field(default_factory=list)
    cut: list[Bubble] = field(default_factory=list)  # bubbles a bar or the header cuts
    inside: list[Bubble] = field(default_factory=list)  # a cut bubble's quote, on the wallpaper
    quotes: dict[int, list[Bubble]] = field(default_factory=dict)
    named: dict[int, str] = field(default_factory=dict)  # names above bubbles, by id
    name_lines: list[Line] = field(default_factory=list)
    header: list[Line] = field(default_factory=list)
    limit: float = 0  # the header ends above this
    rows: dict[int, list[list[Line]]] = field(default_factory=dict)

    @property
    def dp(self) -> float:
        return self.width / 360

    def avatar_at(self, line: Line) -> bool:
        """An avatar left of a thread's name row, at its column."""
        return marks.avatar_left(self.image, line.box, line.box[0], self.paper)
