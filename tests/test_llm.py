"""The LLM port against a small local server that speaks OpenAI's chat-completions protocol."""

from __future__ import annotations

from collections.abc import Callable

import httpx

from tests.fakellm import FakeLlm
from tests.server import ServerProcess
from tests.test_sessions_api import bot, deploy, open_session, say


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
