"""A client for ctxd, standard library only: copy this file into any app.

    from client import Client, RpcError

    with Client("/run/ctxd.sock") as ctxd:
        print(ctxd.call("health"))
        try:
            result = ctxd.call("analyze", {"conversation_id": "c1",
                                           "image": {"path": "/srv/shots/1.png"}},
                               timeout=90)
        except RpcError as exc:
            print(exc.code, exc.message, exc.data)

One connection carries many calls at once: ``call`` may be used from several
threads, each call waits for the response with its own id, in whatever order
the daemon answers. A reader thread owns the receiving side. When the
connection ends, every waiting call raises ``ConnectionClosed`` (or the
connection-level error the daemon sent before closing, such as -32005).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import socket
import threading
from concurrent.futures import Future
from typing import Any

__all__ = ["Client", "ConnectionClosed", "RpcError"]


class RpcError(Exception):
    """An error response: ``code``, ``message``, ``data`` as the daemon sent them."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(f"{message} ({code})")
        self.code = code
        self.message = message
        self.data = data


class ConnectionClosed(ConnectionError):
    """The connection ended before the response arrived."""


class Client:
    def __init__(self, path: str, timeout: float = 60.0, connect_timeout: float = 5.0) -> None:
        """Connect to the daemon at ``path``; ``timeout`` is the default per call."""
        self.path = path
        self.timeout = timeout
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.settimeout(connect_timeout)
        try:
            self._sock.connect(path)
        except BaseException:
            self._sock.close()
            raise
        self._sock.settimeout(None)
        self._ids = itertools.count(1)
        self._lock = threading.Lock()  # guards _pending, _closed_error and sends
        self._pending: dict[int, Future[Any]] = {}
        self._closed_error: BaseException | None = None
        self._reader = threading.Thread(target=self._read_loop, name="ctxd-client", daemon=True)
        self._reader.start()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection; calls still waiting raise ConnectionClosed."""
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()
        self._reader.join(timeout=5)

    def call(self, method: str, params: Any = None, timeout: float | None = None) -> Any:
        """Call ``method`` and return its result; raises RpcError, TimeoutError
        (the call is then forgotten; a late response is dropped) or
        ConnectionClosed."""
        future: Future[Any] = Future()
        with self._lock:
            if self._closed_error is not None:
                raise self._closed_error
            call_id = next(self._ids)
            self._pending[call_id] = future
            message: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "id": call_id}
            if params is not None:
                message["params"] = params
            try:
                self._sock.sendall(_encode(message))
            except OSError as exc:
                del self._pending[call_id]
                raise ConnectionClosed(f"cannot send to {self.path}: {exc}") from exc
        try:
            return future.result(timeout=self.timeout if timeout is None else timeout)
        except TimeoutError:
            with self._lock:
                self._pending.pop(call_id, None)
            raise TimeoutError(f"{method}: no response within the timeout") from None

    def notify(self, method: str, params: Any = None) -> None:
        """Send a notification (no response, no error report)."""
        message: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
        if params is not None:
            message["params"] = params
        with self._lock:
            self._sock.sendall(_encode(message))

    def _read_loop(self) -> None:
        reader = self._sock.makefile("rb")
        error: BaseException = ConnectionClosed(f"connection to {self.path} closed")
        try:
            for line in reader:
                try:
                    message = json.loads(line)
                except ValueError:
                    continue
                for response in message if isinstance(message, list) else [message]:
                    if isinstance(response, dict):
                        connection_error = self._deliver(response)
                        if connection_error is not None:
                            error = connection_error
        except OSError:
            pass
        finally:
            with self._lock:
                self._closed_error = error
                pending, self._pending = self._pending, {}
            for future in pending.values():
                future.set_exception(error)

    def _deliver(self, response: dict[str, Any]) -> RpcError | None:
        """Complete the call ``response`` answers; return an error with id null."""
        err = response.get("error")
        rpc_error = None
        if isinstance(err, dict):
            rpc_error = RpcError(err.get("code", 0), err.get("message", ""), err.get("data"))
        with self._lock:
            future = self._pending.pop(response.get("id"), None)  # type: ignore[arg-type]
        if future is None:
            return rpc_error if response.get("id") is None else None
        if rpc_error is not None:
            future.set_exception(rpc_error)
        else:
            future.set_result(response.get("result"))
        return None


def _encode(message: dict[str, Any]) -> bytes:
    return json.dumps(message, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"
