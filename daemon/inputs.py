"""The screenshot of an ``analyze`` call: checks and reading (SPEC §10).

``image.path`` is opened once and everything is checked on the open file:
its real path (read back from ``/proc/self/fd``, so a symlink swapped in
between check and open cannot lead outside) must lie inside
``inputs.allowed_dirs``; it must be a regular file (a fifo or a device is
refused without blocking: the open is non-blocking); at most
``inputs.max_image_bytes``; PNG, JPEG, WebP or GIF by its magic bytes. The
read runs in a thread. ``image.data`` gets the same size and magic checks;
``image.url`` (http/https only) is passed to the provider, never fetched.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import stat
from typing import TYPE_CHECKING, Final
from urllib.parse import urlsplit

import trio

from daemon.errors import BadInput
from daemon.providers import ImageInput

if TYPE_CHECKING:
    from daemon.config import InputsConfig
    from daemon.protocol import ImageParams

MAX_URL: Final = 8192


def sniff(data: bytes) -> str | None:
    """The image type by magic bytes, or None."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def url_ok(url: str) -> bool:
    """An http(s) URL of sane length without whitespace."""
    parts = urlsplit(url)
    return (
        parts.scheme in ("http", "https")
        and bool(parts.netloc)
        and len(url) <= MAX_URL
        and not any(c.isspace() for c in url)
    )


def _within(path: str, dirs: list[str]) -> bool:
    for allowed in dirs:
        root = os.path.realpath(allowed)
        if os.path.commonpath([root, path]) == root:
            return True
    return False


def read_image_file(path: str, config: InputsConfig) -> bytes:
    """Blocking: open, check and read ``path`` (see the module docstring)."""
    if not config.allowed_dirs:
        raise BadInput(
            "image.path is not accepted: inputs.allowed_dirs is empty; send image.data",
            "paths_not_accepted",
            "image.path",
        )
    if "\0" in path:  # the OS cannot take it (os.open raises ValueError)
        raise BadInput("image.path contains a NUL byte", "path_invalid", "image.path", path=path)
    if not os.path.isabs(path):
        raise BadInput(
            f"image.path must be absolute: {path!r}", "path_not_absolute", "image.path", path=path
        )
    real = os.path.realpath(path)
    if not _within(real, config.allowed_dirs):
        raise _outside(path)
    try:
        fd = os.open(real, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY)
    except FileNotFoundError:
        raise BadInput(
            f"image.path does not exist: {path!r}", "not_found", "image.path", path=path
        ) from None
    except OSError as exc:
        raise BadInput(
            f"image.path cannot be opened: {exc.strerror}",
            "cannot_open",
            "image.path",
            path=path,
            errno=exc.errno,
        ) from None
    try:
        opened = os.readlink(f"/proc/self/fd/{fd}")
        if not _within(opened, config.allowed_dirs):
            raise _outside(path)
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise _not_regular(path)
        if st.st_size > config.max_image_bytes:
            raise _too_large(st.st_size, config, "image.path")
        chunks = []
        size = 0
        while chunk := os.read(fd, 1 << 20):
            size += len(chunk)
            if size > config.max_image_bytes:  # grew after the fstat
                raise _too_large(None, config, "image.path")
            chunks.append(chunk)
        return b"".join(chunks)
    except BlockingIOError:
        raise _not_regular(path) from None
    finally:
        os.close(fd)


def _outside(path: str) -> BadInput:
    return BadInput(
        "image.path is outside inputs.allowed_dirs", "outside_allowed_dirs", "image.path", path=path
    )


def _not_regular(path: str) -> BadInput:
    return BadInput(
        "image.path is not a regular file", "not_a_regular_file", "image.path", path=path
    )


def _too_large(size: int | None, config: InputsConfig, field: str) -> BadInput:
    limit = config.max_image_bytes
    if size is None:
        return BadInput(f"image is over {limit} bytes", "too_large", field, max_image_bytes=limit)
    return BadInput(
        f"image is {size} bytes; at most {limit}",
        "too_large",
        field,
        size=size,
        max_image_bytes=limit,
    )


def _checked(data: bytes, config: InputsConfig, field: str) -> tuple[ImageInput, str]:
    if len(data) > config.max_image_bytes:
        raise _too_large(len(data), config, field)
    mime = sniff(data)
    if mime is None:
        raise BadInput(
            "the image is not a PNG, JPEG, WebP or GIF (by its first bytes)",
            "unsupported_format",
            field,
        )
    return ImageInput.from_bytes(data, mime), "sha256:" + hashlib.sha256(data).hexdigest()


async def load_image(image: ImageParams, config: InputsConfig) -> tuple[ImageInput, str]:
    """The image for the provider and its default ``resource`` key."""
    given = [name for name in ("path", "url", "data") if getattr(image, name) is not None]
    if len(given) != 1:
        raise BadInput(
            "image needs exactly one of path, url, data", "not_one_source", "image", given=given
        )
    if image.url is not None:
        parts = urlsplit(image.url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise BadInput(
                "image.url must be an http:// or https:// URL", "invalid_url", "image.url"
            )
        if not url_ok(image.url):
            raise BadInput(
                f"image.url must be at most {MAX_URL} characters, without spaces",
                "invalid_url",
                "image.url",
                max_length=MAX_URL,
            )
        return ImageInput(image.url), image.url
    if image.data is not None:
        limit = config.max_image_bytes * 4 // 3 + 4
        if len(image.data) > limit:
            raise _too_large(None, config, "image.data")
        try:
            raw = base64.b64decode(image.data, validate=True)
        except (binascii.Error, ValueError):
            raise BadInput(
                "image.data is not valid base64", "invalid_base64", "image.data"
            ) from None
        return _checked(raw, config, "image.data")
    assert image.path is not None
    data = await trio.to_thread.run_sync(read_image_file, image.path, config)
    return _checked(data, config, "image.path")
