"""daemon/images.py: screenshots downscaled and re-encoded under the models' limits."""

from __future__ import annotations

import base64
import io
import random

import pytest
from PIL import Image

from daemon import images


def data_url(img: Image.Image, fmt: str = "PNG") -> str:
    out = io.BytesIO()
    img.save(out, fmt)
    mime = "image/png" if fmt == "PNG" else "image/jpeg"
    return f"data:{mime};base64,{base64.b64encode(out.getvalue()).decode()}"


def decoded(url: str) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))


def test_a_small_screenshot_is_sent_as_it_is() -> None:
    url = data_url(Image.new("RGB", (720, 1280), "white"))
    assert images.probe(url) == (720, 1280)
    assert not images.needs_work(url, (720, 1280))
    prepared = images.prepare(url)
    assert prepared.url == url
    assert prepared.size == prepared.original_size == (720, 1280)


def test_a_large_screenshot_is_downscaled_to_1568_on_the_long_side() -> None:
    img = Image.new("RGB", (1440, 3200), "white")
    for y in range(0, 3200, 200):
        img.paste((30, 160, 60), (100, y, 900, y + 80))
    url = data_url(img)
    assert images.needs_work(url, images.probe(url))
    prepared = images.prepare(url)
    assert prepared.original_size == (1440, 3200)
    assert prepared.size == (706, 1568)
    assert decoded(prepared.url).size == (706, 1568)
    assert prepared.url.startswith("data:image/png;base64,")  # flat colours: PNG is smaller


def test_a_noisy_image_is_reencoded_under_5_mb_of_base64() -> None:
    rng = random.Random(1)
    noise = Image.frombytes("RGB", (1500, 1500), rng.randbytes(1500 * 1500 * 3))
    url = data_url(noise)
    assert len(url) > images.MAX_BASE64  # ~6.8 MB of base64 as a PNG
    prepared = images.prepare(url)
    assert len(prepared.url) <= images.MAX_BASE64
    assert prepared.url.startswith("data:image/jpeg;base64,")
    assert prepared.size == prepared.original_size == (1500, 1500)


def test_transparency_is_flattened_for_jpeg_and_kept_for_png() -> None:
    img = Image.new("RGBA", (2000, 1000), (0, 0, 0, 0))
    prepared = images.prepare(data_url(img))
    assert prepared.size == (1568, 784)
    assert decoded(prepared.url).mode in ("RGBA", "RGB")


@pytest.mark.parametrize(
    "url",
    [
        "data:image/png;base64," + base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\0" * 200).decode(),
        "data:image/png;base64,@@@not base64@@@",
        "https://img.example/1.png",
        "data:text/plain,hello",
    ],
)
def test_what_pillow_cannot_read_is_sent_unchanged_without_a_size(url: str) -> None:
    assert images.probe(url) is None
    prepared = images.prepare(url)
    assert (prepared.url, prepared.size, prepared.original_size) == (url, None, None)


def test_too_many_pixels_are_refused_before_decoding() -> None:
    url = data_url(Image.new("1", (7_745, 7_745)))  # 60 M pixels, a small PNG: 0.5 GB to prepare
    with pytest.raises(images.TooLarge, match="7745x7745 pixels; at most 25000000"):
        images.prepare(url)


def test_fit_never_scales_up() -> None:
    assert images.fit((100, 50)) == (100, 50)
    assert images.fit((3136, 100)) == (1568, 50)
