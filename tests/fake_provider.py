"""A small OpenAI-compatible server on 127.0.0.1 for tests: scripted latency per model.

    with FakeProvider({"fast-model": Script(latency=0.05), ...}) as fake:
        fake.base_url  # http://127.0.0.1:PORT/v1

Each model answers ``Script.answer`` (a MergeStep JSON by default) after
``Script.latency`` seconds with ``Script.status``. Every request is recorded
(model, body) in ``fake.requests``. Nagle is off, or every keep-alive reply
would stall ~40 ms.
"""

from __future__ import annotations

import json
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
                    text = (
                        script.answer
                        if isinstance(script.answer, str)
                        else "```json\n" + json.dumps(script.answer, ensure_ascii=False) + "\n```"
                    )
                    payload = json.dumps(
                        {
                            "id": "chatcmpl-test",
                            "model": body["model"] + "-served",
                            "choices": [
                                {"index": 0, "message": {"role": "assistant", "content": text}}
                            ],
                            "usage": {
                                "prompt_tokens": 1000,
                                "completion_tokens": 100,
                                "total_tokens": 1100,
                            },
                        }
                    ).encode()
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

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
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
