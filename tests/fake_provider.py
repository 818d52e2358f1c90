"""A small OpenAI-compatible server on 127.0.0.1 for tests: scripted latency per model.

    with FakeProvider({"fast-model": Script(latency=0.05), ...}) as fake:
        fake.base_url  # http://127.0.0.1:PORT/v1

Each model answers ``Script.answer`` (a MergeStep JSON by default) after
``Script.latency`` seconds with ``Script.status``. Every request is recorded
(model, body) in ``fake.requests``. Nagle is off, or every keep-alive reply
would stall ~40 ms.
"""

from __future__ import annotations

import contextlib
import json
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

ANSWER = {
    "participants": {"user": "Zhang", "talker": "徐康"},
    "layout": {"left": "talker", "right": "user"},
    "bubbles": [
        {"speaker": "talker", "side": "left", "bbox": [100, 200, 350, 250], "text": "真的假的"},
        {"speaker": "user", "side": "right", "bbox": [400, 300, 700, 350], "text": "真的"},
    ],
    "summary": None,
}


@dataclass
class Script:
    latency: float = 0.0
    status: int = 200
    answer: Any = field(default_factory=lambda: ANSWER)
    headers: dict[str, str] = field(default_factory=dict)
    # Answer text that is not JSON when the request body contains this marker
    # (e.g. in the image URL): scripted invalid output for chosen requests.
    invalid_if: str | None = None


class _Server(ThreadingHTTPServer):
    request_queue_size = 1024  # the default 5 resets connections under a burst
    daemon_threads = True


def answer_text(script: Script, body: dict[str, Any]) -> str:
    """What the model says: the scripted answer in a fence, or a refusal."""
    if script.invalid_if is not None and script.invalid_if in json.dumps(body):
        return "Sorry, I cannot read this screenshot."
    if isinstance(script.answer, str):
        return script.answer
    return "```json\n" + json.dumps(script.answer, ensure_ascii=False) + "\n```"


class FakeProvider:
    def __init__(self, scripts: dict[str, Script]) -> None:
        self.scripts = scripts
        self.requests: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["content-length"])))
                with fake._lock:
                    fake.requests.append(
                        {"body": body, "authorization": self.headers.get("authorization")}
                    )
                script = fake.scripts.get(body.get("model"), Script(status=404))
                time.sleep(script.latency)
                if script.status == 200:
                    payload = completion_body(script, body)
                else:
                    payload = json.dumps({"error": {"message": "scripted failure"}}).encode()
                try:
                    self.send_response(script.status)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(payload)))
                    for key, value in script.headers.items():
                        self.send_header(key, value)
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (cancelled): fine

        self.server = _Server(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def calls(self, model: str) -> int:
        with self._lock:
            return sum(1 for r in self.requests if r["body"].get("model") == model)

    def __enter__(self) -> FakeProvider:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(5)


def completion_body(script: Script, body: dict[str, Any]) -> bytes:
    """The JSON of a chat completion answering ``body`` by ``script``."""
    return json.dumps(
        {
            "id": "chatcmpl-test",
            "model": body["model"] + "-served",
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": answer_text(script, body)}}
            ],
            "usage": {"prompt_tokens": 1000, "completion_tokens": 100, "total_tokens": 1100},
        }
    ).encode()


CHAOS = ["ok", "slow", "hang", "reset", "429", "5xx", "truncated", "huge", "non_utf8", "invalid"]
RETRY_AFTERS = ["1", "0", "-1", "abc", "99999", "Wed, 21 Oct 2015 07:28:00 GMT", "0.2", "", "1e400"]


async def serve_trio(
    scripts: dict[str, Script], port: int = 0, chaos_seed: int | None = None
) -> None:
    """The same answers from a trio + h11 server: thousands of concurrent calls
    without a thread each (``http.server`` manages ~100/s here).

    With ``chaos_seed``, each call picks one of ``CHAOS`` at random: slow,
    hanging, reset mid-body, 429 with odd Retry-After values, 5xx, truncated
    JSON, a 9 MB body, non-UTF-8 bytes, a completion that is not a MergeStep,
    or a good answer. ``POST /control`` with ``{"chaos": false}`` turns it off."""
    import random

    import h11
    import trio

    rng = random.Random(chaos_seed)
    state = {"chaos": chaos_seed is not None}

    async def read_request(conn: h11.Connection, stream: trio.SocketStream) -> tuple[Any, bytes]:
        request, body = None, b""
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(await stream.receive_some(65536))
            elif isinstance(event, h11.Request):
                request = event
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
                return request, body

    async def respond(
        conn: h11.Connection,
        stream: trio.SocketStream,
        status: int,
        payload: bytes,
        headers: list[tuple[str, str]] | None = None,
        declared: int | None = None,
    ) -> None:
        all_headers = [
            ("content-type", "application/json"),
            ("content-length", str(len(payload) if declared is None else declared)),
        ]
        all_headers += headers or []
        await stream.send_all(conn.send(h11.Response(status_code=status, headers=all_headers)))
        await stream.send_all(conn.send(h11.Data(data=payload)))
        if declared is None:
            await stream.send_all(conn.send(h11.EndOfMessage()))

    async def handle(stream: trio.SocketStream) -> None:
        conn = h11.Connection(h11.SERVER)
        async with stream:
            while True:
                request, body = await read_request(conn, stream)
                if request is None:
                    return
                if request.target.endswith(b"/control"):
                    state["chaos"] = bool(json.loads(body).get("chaos"))
                    await respond(conn, stream, 200, b"{}")
                else:
                    parsed = json.loads(body)
                    script = scripts.get(parsed.get("model"), Script(status=404))
                    mode = rng.choice(CHAOS) if state["chaos"] else "ok"
                    if mode == "hang":
                        await trio.sleep_forever()
                    if mode == "reset":
                        good = completion_body(script, parsed)
                        await respond(conn, stream, 200, good[: len(good) // 2], declared=len(good))
                        stream.socket.setsockopt(
                            socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                        )
                        return  # closing with linger 0 sends a RST mid-body
                    await trio.sleep(script.latency + (rng.uniform(0, 3) if mode == "slow" else 0))
                    if mode == "429":
                        headers = [("retry-after", rng.choice(RETRY_AFTERS))]
                        await respond(conn, stream, 429, b'{"error":"slow down"}', headers)
                    elif mode == "5xx":
                        await respond(conn, stream, rng.choice([500, 502, 503, 504]), b"oops")
                    elif mode == "truncated":
                        await respond(conn, stream, 200, completion_body(script, parsed)[:-40])
                    elif mode == "huge":
                        await respond(conn, stream, 200, b'{"x":"' + b"a" * 9_000_000 + b'"}')
                    elif mode == "non_utf8":
                        await respond(
                            conn, stream, 200, b'{"choices":[{"message":{"content":"\xff\xfe"}}]}'
                        )
                    elif mode == "invalid":
                        await respond(
                            conn,
                            stream,
                            200,
                            completion_body(Script(answer="no JSON here"), parsed),
                        )
                    else:
                        await respond(
                            conn,
                            stream,
                            script.status,
                            completion_body(script, parsed) if script.status == 200 else b"{}",
                        )
                if conn.our_state is h11.MUST_CLOSE:
                    return
                conn.start_next_cycle()

    async def guarded(stream: trio.SocketStream) -> None:
        # A client that went away (a cancelled leg) is fine.
        with contextlib.suppress(
            trio.BrokenResourceError,
            trio.ClosedResourceError,
            h11.RemoteProtocolError,
            h11.LocalProtocolError,
            ValueError,
            OSError,
        ):
            await handle(stream)

    listeners = await trio.open_tcp_listeners(port, host="127.0.0.1", backlog=1024)
    print(f"http://127.0.0.1:{listeners[0].socket.getsockname()[1]}/v1", flush=True)
    await trio.serve_listeners(guarded, listeners)


def main() -> None:
    """Serve from a process of its own: ``python -m tests.fake_provider
    [--chaos=SEED] MODEL=LATENCY[:INVALID_IF] ...``; prints the base URL, then
    serves until killed."""
    import sys

    import trio

    scripts = {}
    chaos_seed = None
    for spec in sys.argv[1:]:
        if spec.startswith("--chaos="):
            chaos_seed = int(spec.split("=", 1)[1])
            continue
        model, _, rest = spec.partition("=")
        latency, _, invalid_if = rest.partition(":")
        scripts[model] = Script(latency=float(latency), invalid_if=invalid_if or None)
    trio.run(serve_trio, scripts, 0, chaos_seed)


if __name__ == "__main__":
    main()
