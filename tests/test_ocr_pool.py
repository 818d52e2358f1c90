"""daemon/ocr/pool.py and process.py: the pool and its processes, fake worker and real one.

These start processes, so they run on the real clock; every wait is bounded.
"""

from __future__ import annotations

import base64
import ctypes
import io
import os
import re
import signal
import subprocess
import sys
import threading
import time
import tracemalloc
from pathlib import Path
from typing import Any

import msgspec
import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from daemon.analysis import Wait
from daemon.config import Config, StrategyConfig
from daemon.errors import StrategyError
from daemon.extract import parse_merge_step
from daemon.logs import conversation
from daemon.models import AnalyzeResult, CacheKey
from daemon.ocr.pool import LocalOcr
from daemon.providers import ImageInput, Provider
from tests.conftest import ConfigFactory
from tests.process import gone
from tests.race_fakes import Behaviour, Harness, harness

ROOT = Path(__file__).resolve().parent.parent
PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 56
IMAGE = ImageInput.from_bytes(PNG, "image/png")
STRATEGY = StrategyConfig(name="local", kind="local_ocr", rank=0, timeout=30)


def fake(*args: str) -> list[str]:
    return [sys.executable, "-m", "tests.fake_ocr_worker", *args]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def pids(directory: Path) -> list[int]:
    return sorted(int(p.name) for p in directory.iterdir())


@pytest.fixture
async def pid_dir(short_tmp: Path) -> Path:
    path = short_tmp / "pids"
    path.mkdir()
    return path


async def test_answers_with_text_the_extractor_validates() -> None:
    engine = LocalOcr(STRATEGY, fake())
    try:
        completion = await engine.complete(STRATEGY, IMAGE)
    finally:
        await engine.aclose()
    step = parse_merge_step(completion.text)
    assert step.bubbles[0].text == f"{len(PNG)} bytes"
    assert completion.served_model == "fake-ocr 1.0"
    assert step.conversation[0].speaker == "talker"


async def test_user_side_is_passed_to_the_worker() -> None:
    strategy = msgspec.structs.replace(STRATEGY, user_side="left")
    engine = LocalOcr(strategy, fake())
    try:
        step = parse_merge_step((await engine.complete(strategy, IMAGE)).text)
    finally:
        await engine.aclose()
    assert step.layout.left == "user"
    assert step.bubbles[0].side == "right"


async def test_at_most_workers_inferences_run_at_once(pid_dir: Path) -> None:
    strategy = msgspec.structs.replace(STRATEGY, workers=2)
    engine = LocalOcr(strategy, fake("--delay", "0.2", "--pid-dir", str(pid_dir)))
    peak = 0

    async def one() -> None:
        nonlocal peak
        await engine.complete(strategy, IMAGE)

    async def watch() -> None:
        nonlocal peak
        while True:
            peak = max(peak, engine._limiter.borrowed_tokens)
            await trio.sleep(0.01)

    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(watch)
            async with trio.open_nursery() as calls:
                for _ in range(6):
                    calls.start_soon(one)
            nursery.cancel_scope.cancel()
    finally:
        await engine.aclose()
    assert peak == 2
    assert len(pids(pid_dir)) == 2  # reused, not one process per call


async def test_warm_starts_the_workers_before_the_first_call(pid_dir: Path) -> None:
    strategy = msgspec.structs.replace(STRATEGY, workers=2)
    engine = LocalOcr(strategy, fake("--pid-dir", str(pid_dir)))
    try:
        await engine.warm()
        assert len(engine._idle) == 2
        assert engine.engine == "fake-ocr 1.0"
        await engine.complete(strategy, IMAGE)
        assert len(pids(pid_dir)) == 2
    finally:
        await engine.aclose()
    for pid in pids(pid_dir):
        assert not alive(pid)  # aclose stops idle workers


async def test_cancelling_an_inference_kills_its_worker_at_once(pid_dir: Path) -> None:
    jobs = pid_dir.parent / "jobs"
    jobs.mkdir()
    worker = fake("--delay", "60", "--pid-dir", str(pid_dir), "--job-dir", str(jobs))
    engine = LocalOcr(STRATEGY, worker)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(engine.complete, STRATEGY, IMAGE)
            # Cancel once the worker has the job, not after a fixed wait: on a
            # loaded machine the worker's start alone took longer (no pid yet).
            with trio.fail_after(30):
                while not any(jobs.iterdir()):  # noqa: ASYNC110 - another process writes it
                    await trio.sleep(0.01)
            started = time.monotonic()
            nursery.cancel_scope.cancel()
        waited = time.monotonic() - started
        (pid,) = pids(pid_dir)
        assert not alive(pid)
        assert waited < 10  # not the 60 s the inference would take
        assert engine._idle == []
        engine.command = fake()  # the next call starts a new worker
        step = parse_merge_step((await engine.complete(STRATEGY, IMAGE)).text)
        assert step.bubbles
    finally:
        await engine.aclose()


async def test_a_worker_that_dies_mid_inference_is_an_error_and_is_replaced(
    pid_dir: Path,
) -> None:
    engine = LocalOcr(STRATEGY, fake("--die-on-job", "2", "--pid-dir", str(pid_dir)))
    try:
        await engine.complete(STRATEGY, IMAGE)
        with pytest.raises(StrategyError) as info:
            await engine.complete(STRATEGY, IMAGE)
        assert info.value.kind == "connection"
        assert "status 3" in info.value.detail
        await engine.complete(STRATEGY, IMAGE)  # a new worker
    finally:
        await engine.aclose()
    assert len(pids(pid_dir)) == 2


async def test_an_idle_worker_that_died_is_replaced_at_the_next_inference(
    pid_dir: Path, log: io.StringIO
) -> None:
    """Issue 18: a worker killed while idle (the OOM killer, an operator)
    failed the next inference with "exited with status -9"."""
    engine = LocalOcr(STRATEGY, fake("--pid-dir", str(pid_dir)))
    try:
        await engine.warm()
        (pid,) = pids(pid_dir)
        os.kill(pid, signal.SIGKILL)
        with trio.fail_after(10):
            while not gone(pid):  # noqa: ASYNC110 - another process
                await trio.sleep(0.02)
        step = parse_merge_step((await engine.complete(STRATEGY, IMAGE)).text)
        assert step.bubbles
        assert len(pids(pid_dir)) == 2
        assert f"idle OCR worker {pid} exited (status -9)" in log.getvalue()
    finally:
        await engine.aclose()


async def test_an_idle_worker_that_dies_is_reaped_at_once(pid_dir: Path) -> None:
    """While the pool runs, a worker that dies idle leaves no zombie behind
    until the next inference: it is waited for, and dropped from the pool."""
    engine = LocalOcr(STRATEGY, fake("--pid-dir", str(pid_dir)))
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(engine.run)
            with trio.fail_after(10):
                while not engine._idle:  # noqa: ASYNC110 - a process starts
                    await trio.sleep(0.02)
            (pid,) = pids(pid_dir)
            os.kill(pid, signal.SIGKILL)
            with trio.fail_after(10):
                while Path(f"/proc/{pid}").exists():  # noqa: ASYNC110 - a zombie has an entry
                    await trio.sleep(0.02)
            assert engine._idle == []
            nursery.cancel_scope.cancel()
    finally:
        await engine.aclose()


def worker_lines(out: io.StringIO) -> list[str]:
    """``LEVEL [conversation] message`` of the lines the workers' stderr became."""
    return [
        line.split(" ", 1)[1]
        for line in out.getvalue().splitlines()
        if line[:1].isdigit() and re.search(r" OCR worker \d+: ", line)
    ]


async def test_worker_stderr_is_logged_in_spec_form_with_the_conversation(
    log: io.StringIO,
) -> None:
    """Nothing a worker writes reaches the journal raw: each line becomes a
    WARNING of the daemon's log, tagged with the conversation being read."""
    engine = LocalOcr(STRATEGY, fake("--stderr", "onnx says hi"))
    try:
        with conversation("conv-7"):
            await engine.complete(STRATEGY, IMAGE)
        pid = engine._idle[0].process.pid
    finally:
        await engine.aclose()
    assert worker_lines(log) == [
        f"WARNING [conv-7] OCR worker {pid}: onnx says hi (start, from Python)",
        f"WARNING [conv-7] OCR worker {pid}: onnx says hi (start, from fd 2)",
        f"WARNING [conv-7] OCR worker {pid}: onnx says hi (job 1, from Python)",
        f"WARNING [conv-7] OCR worker {pid}: onnx says hi (job 1, from fd 2)",
    ]


async def test_stderr_written_before_the_answer_is_logged_with_its_job(
    log: io.StringIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under load the relay task may not get its turn before the answer
    arrives: the job's stderr lines stayed in the pipe and were logged later,
    outside the conversation (``WARNING [-] ...``). What is already in the
    pipe when the answer comes is logged then, with the job's conversation."""
    import daemon.ocr.process

    async def never_runs(self: Any) -> None:  # the relay task that had no turn
        await trio.sleep_forever()

    engine = LocalOcr(STRATEGY, fake("--stderr", "onnx says hi"))
    try:
        await engine.warm()
        monkeypatch.setattr(daemon.ocr.process.Worker, "_relay_stderr", never_runs)
        with conversation("conv-9"):
            await engine.complete(STRATEGY, IMAGE)
        pid = engine._idle[0].process.pid
        job_lines = [line for line in worker_lines(log) if "job 1" in line]
        assert job_lines == [
            f"WARNING [conv-9] OCR worker {pid}: onnx says hi (job 1, from Python)",
            f"WARNING [conv-9] OCR worker {pid}: onnx says hi (job 1, from fd 2)",
        ]
    finally:
        monkeypatch.undo()
        await engine.aclose()


async def test_a_worker_that_crashes_says_why(log: io.StringIO) -> None:
    engine = LocalOcr(STRATEGY, fake("--crash-on-job", "1"))
    try:
        with conversation("conv-8"), pytest.raises(StrategyError) as info:
            await engine.complete(STRATEGY, IMAGE)
    finally:
        await engine.aclose()
    assert info.value.kind == "connection"
    assert "status 1: RuntimeError: scripted crash on job 1" in info.value.detail
    logged = worker_lines(log)
    assert any("Traceback (most recent call last):" in line for line in logged)
    assert all(line.startswith("WARNING [conv-8] OCR worker ") for line in logged)


async def test_a_worker_that_writes_more_than_a_pipe_holds_is_not_stuck(
    log: io.StringIO,
) -> None:
    engine = LocalOcr(STRATEGY, fake("--spew", "300000"))
    try:
        with trio.fail_after(20):
            for _ in range(2):
                step = parse_merge_step((await engine.complete(STRATEGY, IMAGE)).text)
                assert step.bubbles
    finally:
        await engine.aclose()
    assert len(worker_lines(log)) == 2 * (300000 // 100)


async def test_a_worker_that_never_gets_ready_is_an_error() -> None:
    engine = LocalOcr(STRATEGY, fake("--no-ready"))
    with pytest.raises(StrategyError) as info:
        await engine.complete(STRATEGY, IMAGE)
    assert info.value.kind == "connection"
    assert "could not start" in info.value.detail
    await engine.warm()  # logs, does not raise
    assert engine._idle == []


async def test_an_image_the_worker_cannot_decode_is_invalid_output() -> None:
    engine = LocalOcr(STRATEGY, fake())
    broken = ImageInput.from_bytes(b"\x89PNG\r\n\x1a\nBROKEN", "image/png")
    try:
        with pytest.raises(StrategyError) as info:
            await engine.complete(STRATEGY, broken)
        assert info.value.kind == "invalid_output"
        await engine.complete(STRATEGY, IMAGE)  # the worker lives on
        assert len(engine._idle) == 1
    finally:
        await engine.aclose()


async def test_a_url_input_is_not_configured_and_starts_no_worker(pid_dir: Path) -> None:
    engine = LocalOcr(STRATEGY, fake("--pid-dir", str(pid_dir)))
    with pytest.raises(StrategyError) as info:
        await engine.complete(STRATEGY, ImageInput("https://example.com/chat.png"))
    assert info.value.kind == "not_configured"
    assert "URL" in info.value.detail
    assert pids(pid_dir) == []


async def test_without_the_ocr_extra_the_strategy_is_not_configured(pid_dir: Path) -> None:
    engine = LocalOcr(STRATEGY, fake("--pid-dir", str(pid_dir)))
    engine.available = False
    with pytest.raises(StrategyError) as info:
        await engine.complete(STRATEGY, IMAGE)
    assert info.value.kind == "not_configured"
    assert ".[ocr]" in info.value.detail
    await engine.warm()
    assert pids(pid_dir) == []


async def test_after_aclose_no_worker_is_started(pid_dir: Path) -> None:
    engine = LocalOcr(STRATEGY, fake("--pid-dir", str(pid_dir)))
    await engine.aclose()
    with pytest.raises(StrategyError) as info:
        await engine.complete(STRATEGY, IMAGE)
    assert info.value.kind == "cancelled"
    assert pids(pid_dir) == []


async def test_daemon_memory_stays_flat_over_1000_analyses() -> None:
    """The daemon's side of the pool (pipes, frames, processes) leaks nothing:
    traced allocations after 1,000 inferences are where they were after 100."""
    engine = LocalOcr(STRATEGY, fake())
    image = ImageInput.from_bytes(PNG + os.urandom(4096), "image/png")
    try:
        for _ in range(100):
            parse_merge_step((await engine.complete(STRATEGY, image)).text)
        tracemalloc.start()
        try:
            baseline, _ = tracemalloc.get_traced_memory()
            for _ in range(900):
                parse_merge_step((await engine.complete(STRATEGY, image)).text)
            after, _ = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    finally:
        await engine.aclose()
    assert after - baseline < 64 * 1024, after - baseline


# ---------------------------------------------------------------- the real worker --


def example(name: str) -> ImageInput:
    data = (ROOT / "examples" / name).read_bytes()
    return ImageInput(f"data:image/png;base64,{base64.b64encode(data).decode()}")


async def test_the_real_worker_reads_the_shipped_example() -> None:
    engine = LocalOcr(STRATEGY)
    try:
        completion = await engine.complete(STRATEGY, example("chat.png"))
        broken = ImageInput.from_bytes(PNG, "image/png")
        with pytest.raises(StrategyError) as info:
            await engine.complete(STRATEGY, broken)
    finally:
        await engine.aclose()
    assert completion.served_model == "rapidocr-onnxruntime 1.4.4"
    step = parse_merge_step(completion.text)
    assert step.participants.talker == "Tom Baker"
    assert [b.side for b in step.bubbles] == [
        "left",
        "right",
        "left",
        "left",
        "left",
        "left",
        "right",
    ]
    assert step.bubbles[-1].text == "OK"
    assert info.value.kind == "invalid_output"
    assert "decoded" in info.value.detail


async def test_config_accepts_local_ocr_keys(make_config: ConfigFactory) -> None:
    config: Config = make_config(
        strategies=[{"name": "local", "kind": "local_ocr", "workers": 2, "user_side": "left"}]
    )
    (strategy,) = config.strategies
    assert (strategy.workers, strategy.user_side) == (2, "left")
    assert strategy.model == "rapidocr-onnxruntime 1.4.4"  # as its results say


async def test_a_worker_outlives_the_thread_that_started_it(
    monkeypatch: pytest.MonkeyPatch, pid_dir: Path
) -> None:
    """Regression: the real worker once set PR_SET_PDEATHSIG, which fires
    when the *thread* that forked exits; trio forks from its thread cache,
    whose threads end after 10 s idle, so every worker died 10 s after the
    last spawn (SIGKILL, seen as "exited with status -9")."""
    import trio._core._thread_cache as thread_cache

    # Long enough for the worker to be up before its spawning thread ends.
    monkeypatch.setattr(thread_cache, "IDLE_TIMEOUT", 1.0)
    spawners: list[threading.Thread] = []
    popen_init = subprocess.Popen.__init__

    def recording_init(self: Any, *args: Any, **kwargs: Any) -> None:
        spawners.append(threading.current_thread())
        popen_init(self, *args, **kwargs)

    monkeypatch.setattr(subprocess.Popen, "__init__", recording_init)
    engine = LocalOcr(STRATEGY)
    try:
        await engine.warm()
        (worker,) = engine._idle
        assert spawners
        assert threading.main_thread() not in spawners
        with trio.fail_after(10):
            while any(t.is_alive() for t in spawners):  # noqa: ASYNC110 - no event for that
                await trio.sleep(0.05)
        await trio.sleep(0.2)
        assert worker.process.poll() is None
        completion = await engine.complete(STRATEGY, example("chat.png"))
        assert parse_merge_step(completion.text).bubbles
        assert engine._idle == [worker]
    finally:
        await engine.aclose()


async def test_a_worker_exits_when_the_daemon_dies_even_with_input_open() -> None:
    """kill -9 of the daemon: the worker notices its parent is gone (not only
    end of input, which a busy worker would not read until done)."""
    read_end, write_end = os.pipe()  # held open here: the worker sees no EOF
    try:
        spawn = (
            "import os, subprocess, sys\n"
            "p = subprocess.Popen([sys.executable, '-m', 'daemon.ocr.worker',"
            " '--parent', str(os.getpid())],"
            " stdin=int(sys.argv[1]), stdout=subprocess.DEVNULL, pass_fds=[int(sys.argv[1])])\n"
            "print(p.pid)\n"
        )
        result = await trio.run_process(
            [sys.executable, "-c", spawn, str(read_end)],
            capture_stdout=True,
            pass_fds=[read_end],
            cwd=ROOT,
        )
        pid = int(result.stdout)
        with trio.fail_after(10):
            while not gone(pid):  # noqa: ASYNC110 - polling another process
                await trio.sleep(0.05)
    finally:
        os.close(read_end)
        os.close(write_end)


# ------------------------------------------------------------------- in the race --

KEY = CacheKey("conv-ocr", "context_analysis", "sha256:ocr", "")


def race_config(make_config: ConfigFactory) -> Config:
    return make_config(
        strategies=[
            {"name": "local", "kind": "local_ocr", "rank": 0, "timeout": 30},
            {"name": "multimodal", "provider": "fake", "model": "fast-model", "rank": 1},
            {"name": "premium", "provider": "fake", "model": "slow-model", "rank": 2},
        ]
    )


async def run_race(h: Harness, wait: Wait = "first") -> AnalyzeResult:
    deadline = trio.current_time() + 30
    return await h.races.analyze(KEY, IMAGE, wait=wait, refresh=False, deadline=deadline)


async def test_local_ocr_answers_first_and_the_models_upgrade_the_cache(
    make_config: ConfigFactory,
) -> None:
    config = race_config(make_config)
    engine = LocalOcr(config.strategies[0], fake())
    behaviours = {"fast-model": Behaviour(0.3), "slow-model": Behaviour(0.6)}
    try:
        async with harness(config, behaviours, local={"local": engine}) as h:
            # The worker process is up first: this is about ranks, and a cold
            # start under load took longer than the fast model's 0.3 s.
            await engine.warm()
            first = await run_race(h)
            assert first.provenance.strategy == "local"
            assert first.provenance.model == "fake-ocr 1.0"
            assert first.pending == ["premium", "multimodal"]
            best = await run_race(h, wait="best")
            assert best.provenance.strategy == "premium"
            assert h.store.strategies() == ["local", "multimodal", "premium"]
    finally:
        await engine.aclose()


async def test_a_higher_ranked_answer_kills_the_running_inference(
    make_config: ConfigFactory, pid_dir: Path
) -> None:
    config = race_config(make_config)
    engine = LocalOcr(config.strategies[0], fake("--delay", "60", "--pid-dir", str(pid_dir)))
    behaviours = {"fast-model": Behaviour(0.2), "slow-model": Behaviour(0.4)}
    try:
        async with harness(config, behaviours, local={"local": engine}) as h:
            await engine.warm()
            first = await run_race(h)
            assert first.provenance.strategy == "multimodal"
            local = h.races.ctx.stats.strategies["local"]
            assert local.cancelled == 1  # ended when the answer was accepted
            with trio.fail_after(10):  # the lost leg's worker is killed, not waited for
                while not all(gone(pid) for pid in pids(pid_dir)):  # noqa: ASYNC110 - processes
                    await trio.sleep(0.02)
    finally:
        await engine.aclose()


async def test_without_keys_local_ocr_answers_alone(make_config: ConfigFactory) -> None:
    config = race_config(make_config)
    engine = LocalOcr(config.strategies[0], fake())
    try:
        async with harness(config, {}, local={"local": engine}) as h:
            provider = h.races.providers["fake"]
            assert isinstance(provider, Provider)
            provider._api_key = None
            answer = await run_race(h)
            assert answer.provenance.strategy == "local"
            assert answer.pending == []
    finally:
        await engine.aclose()


def _deny_write_execute() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_MDWE)")


def test_the_real_worker_answers_a_bad_request_with_an_error_and_reads_the_next() -> None:
    """A frame that is not a job (not msgpack, not a map, no ``image_url``,
    a field of the wrong type) is answered with an error; the worker lives
    and reads the next job (it died of a KeyError on a frame without
    ``image_url``: cold review 4)."""
    from daemon.ocr.worker import HEADER, read_frame, write_frame

    proc = subprocess.Popen(
        [sys.executable, "-m", "daemon.ocr.worker"], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    assert proc.stdin is not None
    assert proc.stdout is not None
    stdin, stdout = proc.stdin, proc.stdout

    def reply() -> dict[str, Any]:
        frame = read_frame(stdout)
        assert frame is not None, "the worker died"
        answer: dict[str, Any] = msgspec.msgpack.decode(frame)
        return answer

    try:
        assert reply()["ready"] is True
        stdin.write(HEADER.pack(3) + b"\xc1\xc1\xc1")  # never valid msgpack
        stdin.flush()
        assert reply()["error"].startswith("bad request: ")
        for bad in (
            {"user_side": "right"},  # no image_url
            {"image_url": 7},
            {"image_url": example("chat.png").url, "user_side": "up"},
            {"image_url": "https://example.com/a.png"},
        ):
            write_frame(stdin, bad)
            assert reply()["error"].startswith("bad request: "), bad
        write_frame(stdin, ["image_url"])  # type: ignore[arg-type]  # not a map
        assert reply()["error"].startswith("bad request: ")
        write_frame(stdin, {"image_url": example("chat.png").url})
        answer = reply()
        assert "error" not in answer, answer
        assert len(parse_merge_step(answer["step"]).bubbles) == 7
    finally:
        stdin.close()
        assert proc.wait(30) == 0
        stdout.close()


PR_SET_MDWE, PR_GET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN = 65, 66, 1


def test_the_real_worker_runs_under_memory_deny_write_execute() -> None:
    """systemd/ctxd.service sets MemoryDenyWriteExecute=yes (systemd uses the
    kernel's PR_SET_MDWE for it where the kernel has it, Linux 6.3+): ONNX
    Runtime, OpenCV and NumPy must work without writable+executable memory."""
    from daemon.ocr.worker import read_frame, write_frame

    proc = subprocess.Popen(
        [sys.executable, "-m", "daemon.ocr.worker"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        preexec_fn=_deny_write_execute,
        cwd=ROOT,
    )
    assert proc.stdin is not None
    assert proc.stdout is not None
    try:
        ready = read_frame(proc.stdout)
        assert ready is not None
        assert msgspec.msgpack.decode(ready)["ready"] is True
        write_frame(proc.stdin, {"image_url": example("chat.png").url, "user_side": "right"})
        reply = read_frame(proc.stdout)
        assert reply is not None
        answer = msgspec.msgpack.decode(reply)
        assert "error" not in answer, answer
        assert len(parse_merge_step(answer["step"]).bubbles) == 7
        libc_check = f"import ctypes; print(ctypes.CDLL(None).prctl({PR_GET_MDWE}, 0, 0, 0, 0))"
        inherited = subprocess.run(
            [sys.executable, "-c", libc_check],
            preexec_fn=_deny_write_execute,
            capture_output=True,
            text=True,
            check=True,
        )
        assert inherited.stdout.strip() == "1"  # the restriction really was in force
    finally:
        proc.stdin.close()
        assert proc.wait(30) == 0
        proc.stdout.close()


def test_a_worker_denied_setpriority_still_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    from daemon.ocr import worker as ocr_worker

    def denied(increment: int) -> int:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr("os.nice", denied)
    assert ocr_worker.lower_priority() is False


def test_a_layout_bug_fails_its_screenshot_not_the_worker(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Cold review of issue 15, B1: a KeyError in the thread reader killed the
    worker process (the daemon then restarts it: seconds of model loading,
    every inference in flight lost). The screenshot gets an error answer and
    the traceback goes to stderr, which the daemon logs."""
    from daemon.ocr import layout as ocr_layout
    from daemon.ocr import worker as ocr_worker

    png = (ROOT / "examples" / "chat.png").read_bytes()
    reader = object.__new__(ocr_worker.Reader)  # no engine loaded: its lines are given
    reader.engine = None
    monkeypatch.setattr(ocr_worker, "run_engine", lambda engine, rgb: [])

    def broken(*args: object) -> None:
        raise KeyError("")

    monkeypatch.setattr(ocr_layout, "read", broken)
    reply = reader.read(png, "right")
    assert reply["error"].startswith("the layout failed on this ")
    assert "KeyError" in reply["error"]
    assert "KeyError" in capsys.readouterr().err
    monkeypatch.undo()
    monkeypatch.setattr(ocr_worker, "run_engine", lambda engine, rgb: [])
    assert "step" in reader.read(png, "right")  # the same reader goes on: the next one is read


@pytest.mark.parametrize(("fmt", "mime"), [("JPEG", "image/jpeg"), ("WEBP", "image/webp")])
async def test_the_real_worker_reads_jpeg_and_webp(fmt: str, mime: str) -> None:
    import io

    from PIL import Image

    with Image.open(ROOT / "examples" / "chat.png") as image:
        out = io.BytesIO()
        image.convert("RGB").save(out, fmt, quality=95)
    engine = LocalOcr(STRATEGY)
    try:
        completion = await engine.complete(STRATEGY, ImageInput.from_bytes(out.getvalue(), mime))
    finally:
        await engine.aclose()
    step = parse_merge_step(completion.text)
    assert len(step.bubbles) == 7
    assert step.participants.talker is not None
    assert step.participants.talker.replace(" ", "") == "TomBaker"  # JPEG blurs the space


async def test_the_real_worker_refuses_a_decompression_bomb() -> None:
    """A tiny file that decodes to 100 megapixels is refused before decoding."""
    import io

    from PIL import Image

    out = io.BytesIO()
    Image.new("1", (10_000, 10_000)).save(out, "PNG")
    assert len(out.getvalue()) < 100_000
    engine = LocalOcr(STRATEGY)
    try:
        with pytest.raises(StrategyError) as info:
            await engine.complete(STRATEGY, ImageInput.from_bytes(out.getvalue(), "image/png"))
        assert info.value.kind == "invalid_output"
        assert "too large" in info.value.detail
        assert len(engine._idle) == 1  # the worker lives on
    finally:
        await engine.aclose()


@pytest.mark.parametrize("size", [(5000, 5), (5, 3000), (1, 1)])
async def test_an_image_the_engine_cannot_read_is_invalid_output_and_the_worker_lives(
    size: tuple[int, int],
) -> None:
    """Regression: a 5000x5 strip made the engine raise (ResizeImgError),
    which killed the worker; the next call paid a new worker's start."""
    import io

    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", size, "white").save(out, "PNG")
    engine = LocalOcr(STRATEGY)
    try:
        await engine.warm()
        (worker,) = engine._idle
        with pytest.raises(StrategyError) as info:
            await engine.complete(STRATEGY, ImageInput.from_bytes(out.getvalue(), "image/png"))
        assert info.value.kind == "invalid_output"
        assert engine._idle == [worker]
    finally:
        await engine.aclose()


@pytest.fixture(scope="module")
def reader() -> Any:
    from daemon.ocr.worker import Reader

    return Reader(threads=1)


MAGIC = [b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF89a", b"RIFF\0\0\0\0WEBP"]


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(magic=st.sampled_from(MAGIC), body=st.binary(max_size=2048))
def test_the_worker_answers_any_bytes_with_an_error_never_an_exception(
    reader: Any, magic: bytes, body: bytes
) -> None:
    answer = reader.read(magic + body, "right")
    assert set(answer) == {"error"}
    assert answer["error"]


@pytest.mark.parametrize("size", [(1, 160), (160, 1), (2, 400)])
def test_a_strip_the_detector_would_blow_up_is_refused_before_reading(
    reader: Any, size: tuple[int, int]
) -> None:
    """Regression (found by a fuzz of small images): the detector scales an
    image up until its shorter side is 736 px, so a 1x160 PNG of a few bytes
    cost 125 s of CPU; it is refused before the engine sees it."""
    import io

    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", size, "white").save(out, "PNG")
    started = time.monotonic()
    answer = reader.read(out.getvalue(), "right")
    assert answer == {"error": f"image of {size[0]}x{size[1]} pixels is too narrow to read"}
    assert time.monotonic() - started < 5  # not the minutes the engine would take


@given(width=st.integers(1, 100_000), height=st.integers(1, 100_000))
def test_what_the_detector_would_process_is_bounded_by_what_is_let_through(
    width: int, height: int
) -> None:
    from daemon.ocr.worker import MAX_PIXELS, detector_pixels

    pixels = detector_pixels(width, height)
    assert pixels >= width * height
    if min(width, height) >= 736:
        assert pixels == width * height
    if pixels <= MAX_PIXELS:  # what reaches the engine: at most 40 Mpx of detector input
        assert max(width, height) / min(width, height) <= MAX_PIXELS / 736**2


async def test_a_worker_that_hangs_at_start_is_an_error_and_is_killed(
    monkeypatch: pytest.MonkeyPatch, pid_dir: Path
) -> None:
    import daemon.ocr.process

    monkeypatch.setattr(daemon.ocr.process, "START_TIMEOUT", 0.5)
    engine = LocalOcr(STRATEGY, fake("--start-delay", "60", "--pid-dir", str(pid_dir)))
    with pytest.raises(StrategyError) as info:
        await engine.complete(STRATEGY, IMAGE)
    assert info.value.kind == "connection"
    assert "not ready within 0.5s" in info.value.detail
    await engine.warm()  # logs, does not raise (it once would have crashed the daemon)
    assert engine._idle == []
    assert all(gone(pid) for pid in pids(pid_dir))


async def test_a_worker_that_sends_a_broken_frame_is_an_error_and_is_killed(
    pid_dir: Path,
) -> None:
    engine = LocalOcr(STRATEGY, fake("--garbage", "--pid-dir", str(pid_dir)))
    with pytest.raises(StrategyError) as info:
        await engine.complete(STRATEGY, IMAGE)
    assert info.value.kind == "connection"
    assert "broken frame" in info.value.detail
    assert engine._idle == []
    assert all(gone(pid) for pid in pids(pid_dir))


async def test_a_worker_finishing_after_aclose_is_stopped_not_kept(pid_dir: Path) -> None:
    engine = LocalOcr(STRATEGY, fake("--delay", "0.5", "--pid-dir", str(pid_dir)))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(engine.complete, STRATEGY, IMAGE)
        with trio.fail_after(10):
            while not pids(pid_dir):  # noqa: ASYNC110 - the worker announces itself by a file
                await trio.sleep(0.02)
        await engine.aclose()  # while the inference runs
    assert engine._idle == []
    assert all(gone(pid) for pid in pids(pid_dir))


async def test_output_printed_by_a_library_in_the_worker_never_corrupts_a_frame() -> None:
    """Anything written to fd 1 inside the worker (a C library's printf, a
    print()) goes to stderr; the frames have their own descriptor."""
    script = (
        "import os, sys\n"
        "import daemon.ocr.worker as w\n"
        "class Loud:\n"
        "    def __init__(self, threads=0):\n"
        "        pass\n"
        "    def read(self, data, user_side):\n"
        "        print('chatter from python')\n"
        "        os.write(1, b'chatter from C\\n')\n"
        "        return {'error': 'read ' + str(len(data))}\n"
        "w.Reader = Loud\n"
        "w.engine_name = lambda: 'loud 1.0'\n"
        "sys.exit(w.main([]))\n"
    )
    engine = LocalOcr(STRATEGY, [sys.executable, "-c", script])
    try:
        for _ in range(3):
            with pytest.raises(StrategyError) as info:
                await engine.complete(STRATEGY, IMAGE)
            assert (info.value.kind, info.value.detail) == ("invalid_output", f"read {len(PNG)}")
        assert engine.engine == "loud 1.0"
        assert len(engine._idle) == 1  # the same worker answered all three
    finally:
        await engine.aclose()
