"""A local OpenAI-compatible chat-completions server for the tests of the LLM port."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.server import free_port


class FakeLlm:
    """Answers "LLM: <last user message>"; can be told to fail."""

    def __init__(self) -> None:
        self.port = free_port()
        self.failing = False
        self.requests: list[dict[str, Any]] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _reply(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                if fake.failing:
                    self._reply(503, {"error": "down"})
                else:
                    self._reply(200, {"object": "list", "data": [{"id": "fake-model"}]})

            def do_POST(self) -> None:  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                fake.requests.append({"body": body, "auth": self.headers.get("Authorization")})
                if fake.failing or self.path != "/v1/chat/completions":
                    self._reply(500, {"error": "boom"})
                    return
                prompt = body["messages"][-1]["content"]
                self._reply(
                    200,
                    {"choices": [{"message": {"role": "assistant", "content": f"LLM: {prompt}"}}]},
                )

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
