"""A small OpenAI-compatible server on 127.0.0.1 for tests: scripted latency per model.

    with FakeProvider({"fast-model": Script(latency=0.05), ...}) as fake:
        fake.base_url  # http://127.0.0.1:PORT/v1

It answers the way OpenRouter's current documentation says the real service
does (``respond`` computes every answer; ``mock_handler`` serves the same
ones to ``httpx2.MockTransport`` in unit tests):

* ``POST /v1/chat/completions``: each model answers ``Script.answer`` (a
  MergeStep JSON by default, in a Markdown fence) after ``Script.latency``
  seconds, with ``provider``, ``finish_reason`` and ``usage`` including
  ``cost``; a model id it does not know gets OpenRouter's 400 "... is not a
  valid model ID"; a scripted failure status gets OpenRouter's error body for
  that status (``{"error": {"code", "message", "metadata": {"raw",
  "provider_name"}}}``) unless ``Script.error`` gives one. With a
  ``response_format`` the schema is checked the way strict modes check it
  (400 if it is not strict-safe) and the answer is bare JSON. When the prompt
  states the image size, the default answer's boxes are scaled into it.
  ``Script.noise`` makes a sloppy model: that share of answers carries one
  defect; with a strict schema the defects a schema rules out (not JSON,
  wrong shape, an enum broken) do not happen, the others (a side the layout
  contradicts, an inverted box, a box outside the image, empty text) do.
* ``GET /v1/models``: OpenRouter's model list (``data[].id``,
  ``architecture.input_modalities``, ``supported_parameters``).

Every request is recorded (model, body) in ``fake.requests``. Nagle is off,
or every keep-alive reply would stall ~40 ms.
"""

from __future__ import annotations

import contextlib
import copy
import json
import random
import re
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

ANSWER: dict[str, Any] = {
    "participants": {"user": "Zhang", "talker": "徐康"},
    "layout": {"left": "talker", "right": "user"},
    "bubbles": [
        {"speaker": "talker", "side": "left", "bbox": [100, 200, 350, 250], "text": "真的假的"},
        {"speaker": "user", "side": "right", "bbox": [400, 300, 700, 350], "text": "真的"},
    ],
    "summary": None,
}
CANVAS = (720, 1280)  # the screen ANSWER's boxes are drawn on
PRICE_PER_TOKEN = 1e-6  # USD, for usage.cost
SERVED_BY = "FakeCloud"

SYNTAX_DEFECTS = ["prose", "trailing_comma", "cut", "single_quotes", "missing_layout"]
SHAPE_DEFECTS = ["bbox_floats", "speaker_name"]
SEMANTIC_DEFECTS = ["side_mismatch", "inverted_box", "box_outside", "empty_text"]


@dataclass
class Script:
    latency: float = 0.0
    status: int = 200
    answer: Any = field(default_factory=lambda: ANSWER)
    headers: dict[str, str] = field(default_factory=dict)
    # Answer text that is not JSON when the request body contains this marker
    # (e.g. in the image URL): scripted invalid output for chosen requests.
    invalid_if: str | None = None
    error: dict[str, Any] | None = None  # the error object of a failure (else OpenRouter's)
    finish_reason: str = "stop"
    choice_error: dict[str, Any] | None = None  # a 200 carrying an error in choices[0]
    noise: float = 0.0  # share of sloppy answers (see the module docstring)
    modalities: list[str] = field(default_factory=lambda: ["text", "image"])
    structured: bool = True  # lists structured_outputs in the model list


class _Server(ThreadingHTTPServer):
    request_queue_size = 1024  # the default 5 resets connections under a burst
    daemon_threads = True


def error_body(status: int, model: str, message: str | None = None) -> dict[str, Any]:
    """OpenRouter's error body for ``status`` (its documented shapes)."""
    bodies: dict[int, dict[str, Any]] = {
        400: {"code": 400, "message": message or f"{model} is not a valid model ID"},
        401: {"code": 401, "message": "No auth credentials found"},
        402: {
            "code": 402,
            "message": "This request requires more credits, or fewer max_tokens. "
            "You requested up to 8192 tokens, but can only afford 1200.",
        },
        403: {"code": 403, "message": "Your input was flagged", "metadata": {"reasons": ["x"]}},
        404: {"code": 404, "message": f"No endpoints found for {model}."},
        408: {"code": 408, "message": "Request timed out"},
        429: {
            "code": 429,
            "message": "Provider returned error",
            "metadata": {
                "raw": f"{model} is temporarily rate-limited upstream. Please retry shortly.",
                "provider_name": SERVED_BY,
            },
        },
        502: {
            "code": 502,
            "message": "Provider returned error",
            "metadata": {
                "raw": json.dumps(
                    {"error": {"code": 500, "message": "An internal error has occurred"}}
                ),
                "provider_name": SERVED_BY,
            },
        },
        503: {
            "code": 503,
            "message": "No available model provider that meets your routing requirements",
        },
    }
    return {"error": bodies.get(status, {"code": status, "message": message or "scripted"})}


def stated_size(body: dict[str, Any]) -> tuple[int, int] | None:
    """The image size the request's prompt states, if any."""
    match = re.search(r"The image is (\d+)x(\d+) pixels", json.dumps(body))
    return (int(match.group(1)), int(match.group(2))) if match else None


def strict_schema_problem(schema: Any, where: str = "schema") -> str | None:
    """What a strict structured-outputs mode would reject in ``schema``, or None."""
    if isinstance(schema, list):
        for i, item in enumerate(schema):
            problem = strict_schema_problem(item, f"{where}[{i}]")
            if problem:
                return problem
        return None
    if not isinstance(schema, dict):
        return None
    for key in ("minItems", "maxItems", "minimum", "maximum", "prefixItems", "default", "pattern"):
        if key in schema:
            return f"{where}: '{key}' is not permitted"
    if schema.get("type") == "object":
        props = schema.get("properties", {})
        if schema.get("additionalProperties") is not False:
            return f"{where}: 'additionalProperties' is required to be supplied and to be false"
        missing = set(props) - set(schema.get("required", []))
        if missing:
            return f"{where}: 'required' must list every property; missing {sorted(missing)}"
    for key, value in schema.items():
        problem = strict_schema_problem(value, f"{where}.{key}")
        if problem:
            return problem
    return None


def _scaled(answer: Any, size: tuple[int, int] | None) -> Any:
    if size is None or answer is not ANSWER:
        return answer
    sx, sy = size[0] / CANVAS[0], size[1] / CANVAS[1]
    out = copy.deepcopy(answer)
    for bubble in out["bubbles"]:
        x1, y1, x2, y2 = bubble["bbox"]
        bubble["bbox"] = [
            int(x1 * sx),
            int(y1 * sy),
            max(int(x2 * sx), int(x1 * sx) + 1),
            max(int(y2 * sy), int(y1 * sy) + 1),
        ]
    return out


def _sloppy(answer: dict[str, Any], defect: str, size: tuple[int, int] | None) -> str | Any:
    """``answer`` with one defect: text for a syntax defect, else the object."""
    text = json.dumps(answer, ensure_ascii=False)
    if defect == "prose":
        return "The screenshot shows a chat between two people; they agree to meet."
    if defect == "trailing_comma":
        return text[:-1] + ",}"
    if defect == "cut":
        return text[: len(text) * 2 // 3]
    if defect == "single_quotes":
        return text.replace('"', "'")
    out = copy.deepcopy(answer)
    bubble = out["bubbles"][0]
    if defect == "missing_layout":
        del out["layout"]
    elif defect == "bbox_floats":
        bubble["bbox"] = [v + 0.5 for v in bubble["bbox"]]
    elif defect == "speaker_name":
        bubble["speaker"] = "me"
    elif defect == "side_mismatch":
        bubble["side"] = "right" if bubble["side"] == "left" else "left"
    elif defect == "inverted_box":
        x1, y1, x2, y2 = bubble["bbox"]
        bubble["bbox"] = [x2, y1, x1, y2]
    elif defect == "box_outside":
        width = (size or CANVAS)[0]
        bubble["bbox"] = [width - 50, 10, width + 40, 60]
    elif defect == "empty_text":
        bubble["text"] = "  "
    return out


def answer_text(script: Script, body: dict[str, Any], rng: random.Random | None = None) -> str:
    """What the model says: the scripted answer (in a fence, or bare JSON
    under a response_format), a refusal, or a sloppy answer."""
    if script.invalid_if is not None and script.invalid_if in json.dumps(body):
        return "Sorry, I cannot read this screenshot."
    if isinstance(script.answer, str):
        return script.answer
    size = stated_size(body)
    answer: Any = _scaled(script.answer, size)
    structured = "response_format" in body
    if script.noise and rng is not None and rng.random() < script.noise:
        defect = rng.choice(SYNTAX_DEFECTS + SHAPE_DEFECTS + SEMANTIC_DEFECTS)
        if not (structured and defect not in SEMANTIC_DEFECTS):
            answer = _sloppy(answer, defect, size)
            if isinstance(answer, str):
                return answer
    text = json.dumps(answer, ensure_ascii=False)
    return text if structured else "```json\n" + text + "\n```"


def models_body(scripts: dict[str, Script]) -> dict[str, Any]:
    """``GET /models`` as OpenRouter answers it."""
    data = []
    for model, script in scripts.items():
        params = ["max_tokens", "temperature", "top_p", "stop"]
        if script.structured:
            params += ["response_format", "structured_outputs"]
        data.append(
            {
                "id": model,
                "name": model,
                "architecture": {
                    "modality": "+".join(script.modalities) + "->text",
                    "input_modalities": script.modalities,
                    "output_modalities": ["text"],
                },
                "pricing": {"prompt": str(PRICE_PER_TOKEN), "completion": str(PRICE_PER_TOKEN)},
                "supported_parameters": params,
            }
        )
    return {"data": data}


def respond(
    scripts: dict[str, Script], body: dict[str, Any], rng: random.Random | None = None
) -> tuple[int, dict[str, str], bytes]:
    """(status, headers, payload) of ``POST /chat/completions`` with ``body``."""
    model = str(body.get("model"))
    script = scripts.get(model)
    if script is None:
        return 400, {}, json.dumps(error_body(400, model)).encode()
    if script.status != 200:
        error = {"error": script.error} if script.error else error_body(script.status, model)
        return script.status, dict(script.headers), json.dumps(error).encode()
    response_format = body.get("response_format")
    if isinstance(response_format, dict) and response_format.get("type") == "json_schema":
        spec = response_format.get("json_schema") or {}
        problem = strict_schema_problem(spec.get("schema")) if spec.get("strict") else None
        if problem:
            message = f"Invalid schema for response_format '{spec.get('name')}': {problem}"
            return 400, {}, json.dumps(error_body(400, model, message)).encode()
    return 200, dict(script.headers), completion_body(script, body, rng)


def mock_handler(scripts: dict[str, Script], seed: int = 0) -> Any:
    """An async handler for ``httpx2.MockTransport`` answering like the fake server."""
    import httpx2

    rng = random.Random(seed)

    async def handler(request: httpx2.Request) -> httpx2.Response:
        if request.method == "GET" and request.url.path.endswith("/models"):
            return httpx2.Response(200, json=models_body(scripts))
        status, headers, payload = respond(scripts, json.loads(request.content), rng)
        headers["content-type"] = "application/json"
        return httpx2.Response(status, headers=headers, content=payload)

    return handler


class FakeProvider:
    def __init__(self, scripts: dict[str, Script], seed: int = 0) -> None:
        self.scripts = scripts
        self.requests: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._rng = random.Random(seed)
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _send(self, status: int, headers: dict[str, str], payload: bytes) -> None:
                try:
                    self.send_response(status)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(payload)))
                    for key, value in headers.items():
                        self.send_header(key, value)
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (cancelled): fine

            def do_GET(self) -> None:
                if self.path.endswith("/models"):
                    self._send(200, {}, json.dumps(models_body(fake.scripts)).encode())
                else:
                    self._send(404, {}, json.dumps(error_body(404, "")).encode())

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["content-length"])))
                with fake._lock:
                    fake.requests.append(
                        {
                            "body": body,
                            "authorization": self.headers.get("authorization"),
                            "headers": dict(self.headers.items()),
                        }
                    )
                script = fake.scripts.get(body.get("model"))
                time.sleep(script.latency if script is not None else 0)
                with fake._lock:
                    status, headers, payload = respond(fake.scripts, body, fake._rng)
                self._send(status, headers, payload)

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


def completion_body(
    script: Script, body: dict[str, Any], rng: random.Random | None = None
) -> bytes:
    """The JSON of a chat completion answering ``body`` by ``script``."""
    prompt_tokens, completion_tokens = 1000, 100
    choice: dict[str, Any] = {
        "index": 0,
        "finish_reason": script.finish_reason,
        "native_finish_reason": script.finish_reason,
        "message": {"role": "assistant", "content": answer_text(script, body, rng)},
    }
    if script.choice_error is not None:
        choice["error"] = script.choice_error
        choice["finish_reason"] = "error"
        choice["message"]["content"] = ""
    return json.dumps(
        {
            "id": "gen-test",
            "object": "chat.completion",
            "provider": SERVED_BY,
            "model": body["model"] + "-served",
            "choices": [choice],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
                "cost": (prompt_tokens + completion_tokens) * PRICE_PER_TOKEN,
                "is_byok": False,
            },
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

    async def reply(
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
                    await reply(conn, stream, 200, b"{}")
                elif request.method == b"GET" and request.target.endswith(b"/models"):
                    await reply(conn, stream, 200, json.dumps(models_body(scripts)).encode())
                elif (parsed := json.loads(body)).get("model") not in scripts:
                    status, _, payload = respond(scripts, parsed)
                    await reply(conn, stream, status, payload)
                else:
                    script = scripts[parsed["model"]]
                    mode = rng.choice(CHAOS) if state["chaos"] else "ok"
                    if mode == "hang":
                        await trio.sleep_forever()
                    if mode == "reset":
                        good = completion_body(script, parsed)
                        await reply(conn, stream, 200, good[: len(good) // 2], declared=len(good))
                        stream.socket.setsockopt(
                            socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                        )
                        return  # closing with linger 0 sends a RST mid-body
                    await trio.sleep(script.latency + (rng.uniform(0, 3) if mode == "slow" else 0))
                    if mode == "429":
                        headers = [("retry-after", rng.choice(RETRY_AFTERS))]
                        await reply(conn, stream, 429, b'{"error":"slow down"}', headers)
                    elif mode == "5xx":
                        await reply(conn, stream, rng.choice([500, 502, 503, 504]), b"oops")
                    elif mode == "truncated":
                        await reply(conn, stream, 200, completion_body(script, parsed)[:-40])
                    elif mode == "huge":
                        await reply(conn, stream, 200, b'{"x":"' + b"a" * 9_000_000 + b'"}')
                    elif mode == "non_utf8":
                        await reply(
                            conn, stream, 200, b'{"choices":[{"message":{"content":"\xff\xfe"}}]}'
                        )
                    elif mode == "invalid":
                        await reply(
                            conn,
                            stream,
                            200,
                            completion_body(Script(answer="no JSON here"), parsed),
                        )
                    else:
                        status, extra, payload = respond(scripts, parsed, rng)
                        await reply(conn, stream, status, payload, list(extra.items()))
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
