"""Fuzzing analyze's params and paths (issue 6): always -32602 or -32003 (or,
for a good image, the race's own answer), and never a file opened outside
inputs.allowed_dirs."""

from __future__ import annotations

import base64
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from daemon.config import load_config
from daemon.errors import RpcError
from daemon.protocol import AnalyzeParams, decode_params
from daemon.store import Store
from tests.conftest import write_config
from tests.helpers import make_service

PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 64


@pytest.fixture(scope="module")
def tree() -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="ctxd-fuzzin-", dir="/tmp"))
    allowed = root / "allowed"
    allowed.mkdir()
    (root / "secret.png").write_bytes(PNG)
    (allowed / "ok.png").write_bytes(PNG)
    (allowed / "text.png").write_text("not an image")
    (allowed / "big.png").write_bytes(PNG + b"\0" * 5000)
    (allowed / "empty.png").write_bytes(b"")
    (allowed / "polyglot.png").write_bytes(b"%PDF-1.4\n" + PNG)
    (allowed / "link_out.png").symlink_to(root / "secret.png")
    (allowed / "link_in.png").symlink_to(allowed / "ok.png")
    (allowed / "dir_out").symlink_to(root)
    (allowed / "loop").symlink_to(allowed / "loop")
    (allowed / "sub").mkdir()
    os.mkfifo(allowed / "fifo.png")
    yield root
    shutil.rmtree(root, ignore_errors=True)


NAMES = [
    "ok.png",
    "text.png",
    "big.png",
    "empty.png",
    "polyglot.png",
    "link_out.png",
    "link_in.png",
    "dir_out",
    "loop",
    "sub",
    "fifo.png",
    "secret.png",
    "..",
    ".",
    "",
    "nope.png",
    "ok.png\x00.png",
]


@st.composite
def paths(draw: st.DrawFn, root: Path) -> str:
    parts = draw(st.lists(st.sampled_from(NAMES), min_size=1, max_size=4))
    base = draw(
        st.sampled_from([str(root / "allowed"), str(root), "/dev", "/proc/self", "", "allowed"])
    )
    if draw(st.integers(0, 9)) == 0:
        return draw(st.sampled_from(["/dev/zero", "/dev/null", "/etc/passwd", "/proc/self/mem"]))
    return "/".join([base, *parts])


def images(root: Path) -> st.SearchStrategy[Any]:
    datas = st.sampled_from([PNG, PNG[:5], b"", b"%PDF" + PNG, PNG + b"\0" * 5000]).map(
        lambda b: base64.b64encode(b).decode()
    ) | st.text(max_size=20)
    return st.one_of(
        st.fixed_dictionaries({"path": paths(root)}),
        st.fixed_dictionaries({"data": datas}, optional={"mime": st.text(max_size=10)}),
        st.fixed_dictionaries(
            {
                "url": st.text(max_size=30)
                | st.sampled_from(
                    [
                        "http://x/y.png",
                        "file:///etc/passwd",
                        "javascript:x",
                        "https://",
                        "http://a b",
                    ]
                )
            }
        ),
        st.dictionaries(
            st.sampled_from(["path", "url", "data", "mime", "other"]), st.text(max_size=5)
        ),
        st.none(),
        st.text(max_size=5),
    )


def params_for(root: Path) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {"conversation_id": st.text(max_size=5) | st.just("c")},
        optional={
            "image": images(root),
            "resource": st.text(max_size=10),
            "wait": st.sampled_from(["first", "best", "x"]),
            "refresh": st.booleans() | st.integers(),
            "timeout": st.floats(allow_nan=False) | st.integers(),
            "scene": st.text(max_size=3),
        },
    )


def test_analyze_params_never_read_outside_allowed_dirs(
    tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    allowed = os.path.realpath(tree / "allowed")
    opened: list[str] = []
    real_open = os.open

    def spy_open(path: Any, flags: int, *args: Any) -> int:
        fd = real_open(path, flags, *args)
        if sys._getframe(1).f_code.co_filename.endswith("daemon/inputs.py"):
            opened.append(os.readlink(f"/proc/self/fd/{fd}"))
        return fd

    monkeypatch.setattr(os, "open", spy_open)
    config = load_config(
        write_config(
            tree,
            inputs={"allowed_dirs": [str(tree / "allowed")], "max_image_bytes": 1000},
            llm={"request_timeout": 1},
        )
    )
    store = Store.open(config.store, config.rank_of())
    codes: set[int] = set()

    def analyze(params: dict[str, Any]) -> None:
        async def one() -> None:
            service = make_service(config, store)
            async with trio.open_nursery() as nursery:
                await nursery.start(service.supervisor.serve)
                try:
                    raw = msgspec.Raw(msgspec.json.encode(params))
                    decoded = decode_params(raw, AnalyzeParams)
                    with trio.fail_after(5):
                        await service.analyze(decoded)
                except RpcError as error:
                    codes.add(error.code)
                nursery.cancel_scope.cancel()

        trio.run(one)

    @settings(suppress_health_check=[HealthCheck.too_slow], deadline=None)
    @given(params=params_for(tree))
    def fuzz(params: dict[str, Any]) -> None:
        analyze(params)

    try:
        fuzz()
        # And the names that must reach os.open, whatever the search drew.
        for name in ("ok.png", "link_in.png", "fifo.png", "text.png", "polyglot.png", "sub"):
            analyze({"conversation_id": "c", "image": {"path": str(tree / "allowed" / name)}})
    finally:
        store.close()
    assert codes <= {-32602, -32003, -32001, -32002}, codes  # never -32603
    assert opened, "the fuzz never reached a file"
    outside = [p for p in opened if os.path.commonpath([allowed, p]) != allowed]
    assert outside == []
