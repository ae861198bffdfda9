"""The LLM port against a small local server that speaks OpenAI's chat-completions protocol."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from tests.server import ServerProcess, free_port
from tests.test_sessions_api import bot, deploy, open_session, say


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


@pytest.fixture
def llm() -> Iterator[FakeLlm]:
    fake = FakeLlm()
    yield fake
    fake.close()


def test_answer_pipeline_and_llm_keyword_use_the_llm(
    llm: FakeLlm, fresh_server: Callable[..., ServerProcess]
) -> None:
    srv = fresh_server(GB_LLM_URL=llm.url, GB_LLM_MODEL="fake-model", GB_LLM_KEY="sk-test")
    with srv.client() as c:
        assert c.get("/api/health").json()["components"]["llm"] == "ok"
        sid = open_session(c, bot())
        assert say(c, sid, "What is CQRS?")["content"] == "LLM: What is CQRS?"
        assert llm.requests[-1]["body"]["model"] == "fake-model"
        assert llm.requests[-1]["auth"] == "Bearer sk-test"

        b = bot()
        deploy(c, b, "start", 'answer = LLM "Say hi"\nTALK answer\n')
        assert say(c, open_session(c, b), "go")["parts"] == ["LLM: Say hi"]

        llm.failing = True
        assert c.get("/api/health").json()["components"]["llm"] == "error"
        assert c.get("/api/health").status_code == 200  # the LLM is optional
        fallback = say(c, sid, "and now?")
        assert fallback["content"] == "I'm sorry, I don't know the answer to that yet."
        failed = say(c, open_session(c, b), "go")
        assert "Sorry" in str(failed["content"])


def test_without_an_llm_health_says_not_configured(server: ServerProcess) -> None:
    assert httpx.get(f"{server.url}/api/health").json()["components"]["llm"] == "not_configured"
