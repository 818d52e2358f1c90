"""image.path / image.data / image.url checks; nothing outside allowed_dirs is read."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest

from daemon.config import InputsConfig
from daemon.errors import BadInput
from daemon.inputs import load_image, read_image_file, sniff
from daemon.protocol import ImageParams

PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 100
JPEG = b"\xff\xd8\xff\xe0" + b"\0" * 100
GIF = b"GIF89a" + b"\0" * 100
WEBP = b"RIFF\0\0\0\0WEBPVP8 " + b"\0" * 100


@pytest.fixture
def allowed(tmp_path: Path) -> Path:
    root = tmp_path / "shots"
    root.mkdir()
    return root


def config_for(root: Path, max_bytes: int = 10_000) -> InputsConfig:
    return InputsConfig(allowed_dirs=[str(root)], max_image_bytes=max_bytes)


@pytest.mark.parametrize(
    ("data", "mime"),
    [(PNG, "image/png"), (JPEG, "image/jpeg"), (GIF, "image/gif"), (WEBP, "image/webp")],
)
async def test_each_format_by_magic(allowed: Path, data: bytes, mime: str) -> None:
    (allowed / "a.img").write_bytes(data)
    image, resource = await load_image(
        ImageParams(path=str(allowed / "a.img")), config_for(allowed)
    )
    assert image.url.startswith(f"data:{mime};base64,")
    assert resource.startswith("sha256:")
    assert sniff(data) == mime


def bad_path(path: str, config: InputsConfig) -> str:
    with pytest.raises(BadInput) as info:
        read_image_file(path, config)
    assert info.value.code == -32003
    return info.value.message


def test_traversal_and_symlinks_out_are_refused(allowed: Path, tmp_path: Path) -> None:
    secret = tmp_path / "secret.png"
    secret.write_bytes(PNG)
    cfg = config_for(allowed)
    assert "outside inputs.allowed_dirs" in bad_path(str(allowed / ".." / "secret.png"), cfg)
    (allowed / "link.png").symlink_to(secret)
    assert "outside inputs.allowed_dirs" in bad_path(str(allowed / "link.png"), cfg)
    (allowed / "dirlink").symlink_to(tmp_path)
    assert "outside inputs.allowed_dirs" in bad_path(str(allowed / "dirlink" / "secret.png"), cfg)
    sibling = tmp_path / "shots-evil"  # a prefix of the allowed dir is not inside it
    sibling.mkdir()
    (sibling / "x.png").write_bytes(PNG)
    assert "outside inputs.allowed_dirs" in bad_path(str(sibling / "x.png"), cfg)
    assert "must be absolute" in bad_path("shots/x.png", cfg)


def test_nul_byte_in_path_is_bad_input(allowed: Path) -> None:
    # Regression (found by tests/test_fuzz_inputs.py): os.path.realpath raised
    # ValueError, which reached the client as -32603 instead of -32003.
    assert "NUL byte" in bad_path(str(allowed / "ok.png\x00.png"), config_for(allowed))


def test_symlink_inside_is_fine(allowed: Path) -> None:
    (allowed / "real.png").write_bytes(PNG)
    (allowed / "alias.png").symlink_to(allowed / "real.png")
    assert read_image_file(str(allowed / "alias.png"), config_for(allowed)) == PNG


def test_fifo_device_directory_and_missing_are_refused_without_blocking(allowed: Path) -> None:
    cfg = config_for(allowed)
    os.mkfifo(allowed / "pipe.png")
    assert "not a regular file" in bad_path(str(allowed / "pipe.png"), cfg)
    assert "not a regular file" in bad_path(str(allowed), cfg)
    assert "does not exist" in bad_path(str(allowed / "nope.png"), cfg)
    dev = InputsConfig(allowed_dirs=["/dev"], max_image_bytes=100)
    assert "not a regular file" in bad_path("/dev/zero", dev)


def test_size_limit(allowed: Path) -> None:
    (allowed / "big.png").write_bytes(PNG + b"\0" * 10_000)
    assert "at most 10000" in bad_path(str(allowed / "big.png"), config_for(allowed))


def test_no_allowed_dirs_means_no_paths(allowed: Path) -> None:
    (allowed / "a.png").write_bytes(PNG)
    message = bad_path(str(allowed / "a.png"), InputsConfig(allowed_dirs=[]))
    assert "inputs.allowed_dirs is empty" in message


def test_swapped_for_a_symlink_between_check_and_open(
    allowed: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real path is checked again on the opened file: a swap in between
    (here: right after realpath) cannot lead outside."""
    secret = tmp_path / "secret.png"
    secret.write_bytes(PNG)
    target = allowed / "a.png"
    target.write_bytes(PNG)
    real_realpath = os.path.realpath

    def swapping_realpath(path: str) -> str:
        resolved = real_realpath(path)
        if path == str(target):
            target.unlink()
            target.symlink_to(secret)
        return resolved

    monkeypatch.setattr(os.path, "realpath", swapping_realpath)
    with pytest.raises(BadInput, match="outside"):
        read_image_file(str(target), config_for(allowed))


@pytest.mark.parametrize(
    ("params", "why"),
    [
        (ImageParams(), "exactly one of"),
        (ImageParams(path="/a", url="http://x/y.png"), "exactly one of"),
        (ImageParams(url="file:///etc/passwd"), "http:// or https://"),
        (ImageParams(url="ftp://x/y.png"), "http:// or https://"),
        (ImageParams(url="http://"), "http:// or https://"),
        (ImageParams(url="http://x/a b.png"), "without spaces"),
        (ImageParams(data="not base64!!"), "not valid base64"),
        (ImageParams(data=base64.b64encode(b"%PDF-1.4 polyglot").decode()), "not a PNG"),
        (ImageParams(data=base64.b64encode(PNG[:5]).decode()), "not a PNG"),
        (ImageParams(data="A" * 20_000), "over 10000 bytes"),
    ],
)
async def test_bad_images(allowed: Path, params: ImageParams, why: str) -> None:
    with pytest.raises(BadInput, match=why):
        await load_image(params, config_for(allowed))


async def test_data_and_url(allowed: Path) -> None:
    image, resource = await load_image(
        ImageParams(data=base64.b64encode(JPEG).decode(), mime="image/jpeg"), config_for(allowed)
    )
    assert image.url.startswith("data:image/jpeg;base64,")
    assert resource.startswith("sha256:")
    url = "https://cdn.example/shot.png?x=1"
    image, resource = await load_image(ImageParams(url=url), config_for(allowed))
    assert (image.url, resource) == (url, url)


@pytest.mark.parametrize(
    ("params", "reason", "field"),
    [
        (ImageParams(), "not_one_source", "image"),
        (ImageParams(url="ftp://x/y.png"), "invalid_url", "image.url"),
        (ImageParams(url="http://x/a b.png"), "invalid_url", "image.url"),
        (ImageParams(data="not base64!!"), "invalid_base64", "image.data"),
        (ImageParams(data=base64.b64encode(b"%PDF").decode()), "unsupported_format", "image.data"),
        (ImageParams(data="A" * 20_000), "too_large", "image.data"),
        (ImageParams(path="shots/a.png"), "path_not_absolute", "image.path"),
        (ImageParams(path="/etc/passwd"), "outside_allowed_dirs", "image.path"),
        (ImageParams(path="/a\0b"), "path_invalid", "image.path"),
    ],
)
async def test_every_refusal_says_its_reason_and_field(
    allowed: Path, params: ImageParams, reason: str, field: str
) -> None:
    """Issue 13, point 2: a program acts on ``data.reason`` and ``data.field``,
    never on the message's words."""
    with pytest.raises(BadInput) as info:
        await load_image(params, config_for(allowed))
    assert info.value.data is not None
    assert (info.value.data["reason"], info.value.data["field"]) == (reason, field)
    if field == "image.path":
        assert info.value.data["path"] == params.path


async def test_path_refusals_name_the_path(allowed: Path) -> None:
    (allowed / "text.png").write_bytes(b"plain text")
    (allowed / "big.png").write_bytes(PNG + b"\0" * 20_000)
    (allowed / "dir.png").mkdir()
    cases = {
        "missing.png": "not_found",
        "dir.png": "not_a_regular_file",
        "big.png": "too_large",
        "text.png": "unsupported_format",
    }
    for name, reason in cases.items():
        path = str(allowed / name)
        with pytest.raises(BadInput) as info:
            await load_image(ImageParams(path=path), config_for(allowed))
        data = info.value.data
        assert data is not None
        assert (data["reason"], data["field"]) == (reason, "image.path"), name
        if reason == "too_large":
            assert (data["size"], data["max_image_bytes"]) == (len(PNG) + 20_000, 10_000)
        elif reason != "unsupported_format":
            assert data["path"] == path
    with pytest.raises(BadInput) as info:
        read_image_file(str(allowed / "a.png"), InputsConfig(allowed_dirs=[]))
    assert info.value.data == {"reason": "paths_not_accepted", "field": "image.path"}
