"""One OCR worker process (``python -m daemon.ocr.worker``) seen from the daemon.

Its command line, its start (the models load; the worker says which engine
it runs), one framed request and answer at a time over its stdin and
stdout (``daemon/ocr/worker.py``'s frames), and its death: killed at once
when its answer is no longer wanted, reaped, its pipes closed.

Whatever a worker writes to stderr (a traceback, a warning of ONNX Runtime or
OpenCV) comes out of the daemon's log as ``OCR worker <pid>: <line>`` at
WARNING, in SPEC §6 form with the conversation being read, never raw. The
pipe is read while the daemon waits for the worker (its start, each
inference) and to its end when the worker dies or is killed: an idle worker
writes nothing, so the pipe never fills.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from typing import Any, Final

import msgspec
import trio

from daemon.ocr.worker import HEADER, MAX_FRAME

logger = logging.getLogger(__name__)

REAP_GRACE: Final = 2.0  # seconds a killed worker may take to be reaped
STDERR_LINE: Final = 2000  # characters of one stderr line that are logged
START_TIMEOUT = 120.0  # seconds a worker may take to load its models (tests lower it)


def worker_command(workers: int) -> list[str]:
    """The worker's command line: each of ``workers`` processes gets an equal
    share of this host's cores for ONNX Runtime's threads (oversubscribed,
    two workers of two threads each on two cores read 1.25 screenshots/s;
    two of one thread, 2.5/s; one of two threads, 1.9/s)."""
    threads = max(1, len(os.sched_getaffinity(0)) // workers)
    return [
        sys.executable,
        "-m",
        "daemon.ocr.worker",
        "--parent",
        str(os.getpid()),
        "--threads",
        str(threads),
    ]


class WorkerDied(Exception):
    """The worker exited; the message says how, with its last stderr line."""


class Worker:
    """One worker process and its framed pipe."""

    def __init__(self, process: trio.Process) -> None:
        self.process = process
        self._buffer = bytearray()
        self._stderr = bytearray()  # the start of a line not yet logged
        self._stderr_reader = False  # a task reads stderr right now
        self._stderr_closed = trio.Event()  # read to its end
        self.last_stderr_line = ""
        self.idle_watch: trio.CancelScope | None = None  # reaps it if it dies while idle

    @classmethod
    async def start(cls, command: list[str]) -> tuple[Worker, str]:
        """A ready worker and the engine it runs.

        Raises WorkerDied if it exits before it is ready; cancelled, it is killed."""
        process = await trio.lowlevel.open_process(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        worker = cls(process)
        try:
            with trio.fail_after(START_TIMEOUT):
                ready = await worker.receive_relaying()
        except trio.TooSlowError:
            await worker.kill()
            raise WorkerDied(f"was not ready within {START_TIMEOUT:g}s") from None
        except BaseException:
            await worker.kill()
            raise
        if ready.get("niced") is False:
            logger.warning(
                "OCR worker %d could not lower its priority (setpriority denied): "
                "inferences compete with the event loop for the CPU",
                process.pid,
            )
        return worker, str(ready.get("engine", "local_ocr"))

    async def ask(self, request: dict[str, Any]) -> dict[str, Any]:
        assert self.process.stdin is not None
        data = msgspec.msgpack.encode(request)
        try:
            await self.process.stdin.send_all(HEADER.pack(len(data)) + data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            raise await self._died() from None
        return await self.receive_relaying()

    async def receive_relaying(self) -> dict[str, Any]:
        """``receive``, logging what the worker writes to stderr meanwhile."""
        message: dict[str, Any] = {}
        died: WorkerDied | None = None
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._relay_stderr)
            try:
                message = await self.receive()
            except WorkerDied as exc:  # raised below, not inside an ExceptionGroup
                died = exc
            nursery.cancel_scope.cancel(reason="the worker answered or died")
        self._relay_written_stderr()
        if died is not None:
            raise died
        return message

    def _relay_written_stderr(self) -> None:
        """Log what the worker wrote to stderr before its answer and is still
        in the pipe (the relay task may not have had its turn), now, under
        this job's conversation: read without waiting, the pipe is non-blocking."""
        stream = self.process.stderr
        if not isinstance(stream, trio.lowlevel.FdStream):
            return
        if self._stderr_closed.is_set() or self._stderr_reader:
            return
        while True:
            try:
                data = os.read(stream.fileno(), 65536)
            except OSError:  # BlockingIOError: nothing more written yet
                break
            if not data:  # its end: the next relay logs the rest and marks it
                break
            self._stderr += data
        self._log_stderr(final=False)

    async def _relay_stderr(self) -> None:
        """Log the worker's stderr line by line until it closes (or we are
        cancelled). Called while another task relays, it waits for that one."""
        stream = self.process.stderr
        if stream is None or self._stderr_closed.is_set():
            return
        if self._stderr_reader:
            await self._stderr_closed.wait()
            return
        self._stderr_reader = True
        try:
            while True:
                try:
                    data = await stream.receive_some(65536)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    data = b""
                if not data:
                    self._log_stderr(final=True)
                    self._stderr_closed.set()
                    return
                self._stderr += data
                self._log_stderr(final=False)
        finally:
            self._stderr_reader = False

    def _log_stderr(self, *, final: bool) -> None:
        lines = bytes(self._stderr).split(b"\n")
        rest = b"" if final else lines.pop()
        if len(rest) > 65536:  # a "line" without end: log it as it is
            lines.append(rest)
            rest = b""
        self._stderr = bytearray(rest)
        for raw in lines:
            line = raw.decode("utf-8", "replace").rstrip()
            if line:
                self.last_stderr_line = line[:STDERR_LINE]
                logger.warning("OCR worker %d: %s", self.process.pid, self.last_stderr_line)

    async def receive(self) -> dict[str, Any]:
        size = HEADER.unpack(await self._receive_exactly(HEADER.size))[0]
        if size > MAX_FRAME:
            raise WorkerDied(f"sent a frame of {size} bytes")
        try:
            message = msgspec.msgpack.decode(await self._receive_exactly(size))
        except msgspec.DecodeError:
            raise WorkerDied("sent a broken frame") from None
        if not isinstance(message, dict):
            raise WorkerDied("sent something that is not a message")
        return message

    async def _receive_exactly(self, size: int) -> bytes:
        stream = self.process.stdout
        assert stream is not None
        while len(self._buffer) < size:
            try:
                chunk = await stream.receive_some(max(65536, size - len(self._buffer)))
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                chunk = b""
            if not chunk:
                raise await self._died()
            self._buffer += chunk
        data = bytes(self._buffer[:size])
        del self._buffer[:size]
        return data

    async def _died(self) -> WorkerDied:
        """The worker closed its pipe: wait a moment for its exit status and its
        last words on stderr, to say why."""
        with trio.move_on_after(REAP_GRACE):
            await self.process.wait()
            await self._relay_stderr()
        code = self.process.poll()
        why = "exited" if code is None else f"exited with status {code}"
        if self.last_stderr_line:
            why += f": {self.last_stderr_line[:200]}"
        return WorkerDied(why)

    async def kill(self) -> None:
        """Kill and reap; safe to call from a cancelled or finally block."""
        with trio.CancelScope(shield=True), trio.move_on_after(REAP_GRACE):
            if self.process.returncode is None:
                self.process.kill()
            await self.process.wait()
            await self._relay_stderr()  # what it wrote before it died: to its end
            for stream in (self.process.stdin, self.process.stdout, self.process.stderr):
                if stream is not None:
                    await stream.aclose()
