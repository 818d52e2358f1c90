"""Screenshots as the models accept them; pure functions, no trio.

Vision models downscale large images on their side anyway (Anthropic to
about 1568 px on the long side, and it refuses an image over 5 MB), so a
screenshot sent bigger costs upload time and tokens for nothing, and a box
the model gives is in the pixels it saw. ``probe`` reads only the header of
a ``data:`` URL (cheap, fine on the event loop); ``prepare`` decodes,
downscales to at most ``MAX_SIDE`` on the long side and re-encodes as PNG or
JPEG, whichever is smaller, until the base64 is under ``MAX_BASE64`` bytes.
It is CPU work for a thread (``Provider`` runs it with
``trio.to_thread.run_sync``).

An image Pillow cannot read is sent as it came, with no size: the provider
decides, and its boxes are not checked against a size nobody knows.
"""

from __future__ import annotations

import base64
import binascii
import io
from typing import TYPE_CHECKING, Final

import msgspec
from PIL import Image

if TYPE_CHECKING:
    from collections.abc import Iterator

MAX_SIDE: Final = 1568
MAX_BASE64: Final = 5 * 1024 * 1024
# Refused before decoding: a PNG of a few MB can hold a billion pixels, and
# one of 60 Mpx (250 KB flat) cost ~0.5 GB and 2 s to prepare. A tall
# screenshot (1170x20000, 23.4 Mpx) still fits.
MAX_PIXELS: Final = 25_000_000
PROBE_CHARS: Final = 128 * 1024  # base64 characters decoded to read a header
JPEG_QUALITIES: Final = (90, 80, 70, 55)
_FORMATS: Final = ("PNG", "JPEG", "WEBP", "GIF")


class Prepared(msgspec.Struct, frozen=True, kw_only=True):
    """The image as sent: its URL, its size, and the size of the original.

    ``size`` is None when nobody knows it (a URL, an image Pillow cannot read)."""

    url: str
    size: tuple[int, int] | None = None
    original_size: tuple[int, int] | None = None
    reason: str | None = None  # why the size is unknown, for the debug log


class TooLarge(Exception):
    """The image has more pixels than ``MAX_PIXELS``."""


def _split(url: str) -> tuple[str, str] | None:
    """(mime, base64 payload) of a base64 ``data:`` URL, or None."""
    if not url.startswith("data:"):
        return None
    head, sep, payload = url.partition(",")
    if not sep or not head.endswith(";base64"):
        return None
    return head[5:].split(";", 1)[0], payload


def probe(url: str) -> tuple[int, int] | None:
    """The pixel size of a ``data:`` URL from its first bytes, or None when
    the header cannot be read from them (not an image, or a long JPEG
    preamble: ``prepare`` decodes it all)."""
    parts = _split(url)
    if parts is None:
        return None
    chunk = parts[1][: PROBE_CHARS - PROBE_CHARS % 4]
    try:
        data = base64.b64decode(chunk, validate=False)
        with Image.open(io.BytesIO(data), formats=_FORMATS) as img:
            return img.size
    except (OSError, ValueError, binascii.Error, Image.DecompressionBombError):
        return None


def needs_work(url: str, size: tuple[int, int] | None) -> bool:
    """Whether ``prepare`` would change this image (or must look at all of it)."""
    if _split(url) is None:
        return False
    if size is None:
        return len(url) > PROBE_CHARS  # a header beyond the probe: decode it all
    return max(size) > MAX_SIDE or len(url) > MAX_BASE64


def fit(size: tuple[int, int], max_side: int = MAX_SIDE) -> tuple[int, int]:
    """``size`` scaled down (never up) so that its long side is at most ``max_side``."""
    width, height = size
    long_side = max(width, height)
    if long_side <= max_side:
        return size
    scale = max_side / long_side
    return max(1, round(width * scale)), max(1, round(height * scale))


def prepare(url: str) -> Prepared:
    """The image downscaled and re-encoded under the limits (blocking; CPU).

    Raises TooLarge for an image over ``MAX_PIXELS``; returns the URL
    unchanged, with no size, for anything Pillow cannot decode."""
    parts = _split(url)
    if parts is None:
        return Prepared(url=url, reason="not a base64 data URL")
    try:
        data = base64.b64decode(parts[1], validate=False)
        with Image.open(io.BytesIO(data), formats=_FORMATS) as img:
            original = img.size
            if original[0] * original[1] > MAX_PIXELS:
                raise TooLarge(f"{original[0]}x{original[1]} pixels; at most {MAX_PIXELS}")
            if max(original) <= MAX_SIDE and len(url) <= MAX_BASE64:
                return Prepared(url=url, size=original, original_size=original)
            target = fit(original)
            if img.format == "JPEG":
                img.draft("RGB", target)  # decode at a reduced scale when it can
            img.load()
            frame = _normalised(img)
    except (OSError, ValueError, binascii.Error, Image.DecompressionBombError) as exc:
        return Prepared(url=url, reason=f"not decodable: {type(exc).__name__}")
    max_side = MAX_SIDE
    while True:
        target = fit(original, max_side)
        resized = frame if frame.size == target else frame.resize(target, Image.Resampling.LANCZOS)
        for mime, encoded in _encodings(resized):
            text = base64.b64encode(encoded).decode()
            if len(text) + 40 <= MAX_BASE64:
                return Prepared(
                    url=f"data:{mime};base64,{text}", size=target, original_size=original
                )
        max_side = int(max_side * 0.75)  # not even a JPEG fits: smaller, again


def _normalised(img: Image.Image) -> Image.Image:
    """RGB, or RGBA when the image has transparency (PNG keeps it)."""
    if img.mode in ("RGB", "RGBA", "L"):
        return img.copy()
    if img.mode in ("LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        return img.convert("RGBA")
    return img.convert("RGB")


def _encodings(img: Image.Image) -> Iterator[tuple[str, bytes]]:
    """The encodings to try, best first: PNG or JPEG at quality 90, whichever
    is smaller (a screenshot of flat colours is often smaller as PNG, one
    with photos as JPEG), then lower JPEG qualities."""
    png = io.BytesIO()
    img.save(png, "PNG", optimize=False, compress_level=6)
    rgb = img
    if img.mode == "RGBA":  # JPEG has no alpha: flatten on white
        rgb = Image.new("RGB", img.size, (255, 255, 255))
        rgb.paste(img, mask=img.getchannel("A"))
    elif img.mode != "RGB":
        rgb = img.convert("RGB")

    def jpeg(quality: int) -> tuple[str, bytes]:
        out = io.BytesIO()
        rgb.save(out, "JPEG", quality=quality, optimize=True)
        return "image/jpeg", out.getvalue()

    first = [("image/png", png.getvalue()), jpeg(JPEG_QUALITIES[0])]
    first.sort(key=lambda item: len(item[1]))
    yield first[0]
    for quality in JPEG_QUALITIES[1:]:
        yield jpeg(quality)
