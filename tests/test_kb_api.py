"""The knowledge base through the API and dialogs, on both profiles: documents uploaded under
`{bot}.gbai/{bot}.gbkb/{collection}/` are indexed in the background, searched (hybrid), listed
with their errors, reindexed, and answer users through `USE KB` and the answer pipeline."""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fakellm import FakeLlm
from tests.profiles import Profile
from tests.server import ServerProcess, UserClient
from tests.test_drive_api import upload, url
from tests.test_sessions_api import deploy, open_session, say

HANDBOOK = b"""# Employee Handbook

## Time off

### Vacation

Full-time employees get 25 days of paid vacation per year. Vacation days accrue monthly
and up to 5 unused days carry over into the next year. Ask your manager two weeks ahead.

### Sick leave

Tell your manager on the first day you are ill. From the fourth day a doctor's note is
needed.

## Expenses

Keep every receipt. Travel is reimbursed within 30 days of the expense report.
"""

LAPTOPS = b"""# Laptops

Every employee gets a laptop on the first day. Lost or stolen laptops are reported to the
IT helpdesk at once, which locks the disk remotely.
"""

WAIT = 120.0  # seconds for ingestion (the first one loads the embedding model)


def new_bot() -> str:
    return f"kb{uuid.uuid4().hex[:10]}"


def kb_path(bot: str, collection: str, name: str) -> str:
    return f"{bot}.gbai/{bot}.gbkb/{collection}/{name}"


def put(client: httpx.Client, path: str, data: bytes, content_type: str = "text/plain") -> None:
    folder, _, name = path.rpartition("/")
    r = upload(client, path, (name, data), content_type=content_type)
    assert r.status_code == 201, r.text


def collections(client: httpx.Client, bot: str) -> dict[str, dict[str, Any]]:
    r = client.get("/api/kb/collections", params={"bot_id": bot})
    assert r.status_code == 200, r.text
    return {c["name"]: c for c in r.json()["data"]}


def settled(client: httpx.Client, bot: str, documents: dict[str, int]) -> dict[str, dict[str, Any]]:
    """The bot's collections once every one named holds that many documents, none pending."""
    deadline = time.monotonic() + WAIT
    while True:
        found = collections(client, bot)
        if all(
            name in found and found[name]["documents"] == n and found[name]["pending"] == 0
            for name, n in documents.items()
        ) and set(found) == set(documents):
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"not indexed within {WAIT} s: {found}")
        time.sleep(0.2)


def search(client: httpx.Client, q: str, **params: Any) -> dict[str, Any]:
    r = client.get("/api/kb/search", params={"q": q, **params})
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


@pytest.fixture
def handbook_bot(admin: httpx.Client) -> str:
    bot = new_bot()
    put(admin, kb_path(bot, "hr", "handbook.md"), HANDBOOK, "text/markdown")
    put(admin, kb_path(bot, "it", "laptops.md"), LAPTOPS, "text/markdown")
    settled(admin, bot, {"hr": 1, "it": 1})
    return bot


def test_a_dialog_that_uses_kb_hr_answers_from_the_uploaded_handbook(
    admin: httpx.Client, make_user: Callable[..., UserClient], handbook_bot: str
) -> None:
    bot = handbook_bot
    deploy(admin, bot, "start", 'USE KB "hr"\nTALK "Ask me anything about HR."\n')
    user = make_user()
    sid = open_session(user, bot)
    assert say(user, sid, "hello")["content"] == "Ask me anything about HR."
    reply = say(user, sid, "how many vacation days do I get?")
    content = str(reply["content"])
    assert "25 days of paid vacation" in content
    assert "Source: Employee Handbook › Time off > Vacation (handbook.md)" in content
    # Scoped to hr: the laptop question finds nothing good enough there.
    assert "laptop" not in str(say(user, sid, "who do I tell when my laptop is stolen?")["content"])


def test_without_use_kb_the_answer_pipeline_searches_all_of_the_bots_collections(
    make_user: Callable[..., UserClient], handbook_bot: str
) -> None:
    user = make_user()
    sid = open_session(user, handbook_bot)
    reply = say(user, sid, "my laptop was stolen, what now?")
    assert "IT helpdesk" in str(reply["content"])
    # Another bot has no knowledge base: the polite fallback.
    other = open_session(user, new_bot())
    assert say(user, other, "my laptop was stolen, what now?")["content"] == (
        "I'm sorry, I don't know the answer to that yet."
    )


def test_think_kb_and_clear_kb_in_a_dialog(admin: httpx.Client, handbook_bot: str) -> None:
    bot = handbook_bot
    deploy(
        admin,
        bot,
        "start",
        'USE KB "it.gbkb"\nfound = THINK KB "sick leave"\nTALK UBOUND(found) + 1\n'
        'CLEAR KB\nfound = THINK KB "sick leave"\nTALK found[0].collection\n'
        "TALK found[0].source\n",
    )
    sid = open_session(admin, bot)
    parts = say(admin, sid, "go")["parts"]
    assert isinstance(parts, list)
    assert parts[1:] == ["hr", "handbook.md"], parts


def test_search_results_scores_highlights_and_filters(
    make_user: Callable[..., UserClient], handbook_bot: str
) -> None:
    user = make_user()  # any user searches every bot's collections
    body = search(user, "how much paid time off do I have?", bot_id=handbook_bot)
    assert body["query"] == "how much paid time off do I have?"
    assert body["total"] == len(body["results"]) > 0
    best = body["results"][0]
    assert "25 days" in best["content"]
    assert 0.0 < best["score"] <= 1.0
    assert best["metadata"] == {
        "source": "handbook.md",
        "title": "Employee Handbook",
        "path": kb_path(handbook_bot, "hr", "handbook.md"),
        "chunk": best["metadata"]["chunk"],
        "collection": "hr",
        "bot": handbook_bot,
        "heading": "Employee Handbook > Time off > Vacation",
    }
    assert best["id"] == f"{best['metadata']['path']}#{best['metadata']['chunk']}"
    assert any("<mark>paid</mark>" in h for h in best["highlights"])
    scores = [r["score"] for r in body["results"]]
    assert scores == sorted(scores, reverse=True)

    only_it = search(user, "vacation", bot_id=handbook_bot, collection="it.gbkb")
    assert {r["metadata"]["collection"] for r in only_it["results"]} <= {"it"}
    strict = search(user, "how much paid time off do I have?", bot_id=handbook_bot, threshold=0.99)
    assert strict["results"] == []
    assert len(search(user, "employee", bot_id=handbook_bot, limit=1)["results"]) == 1
    for mode in ("lexical", "semantic"):
        found = search(user, "reimbursed travel receipts", bot_id=handbook_bot, mode=mode)
        assert "receipt" in found["results"][0]["content"], mode
    # Nothing relevant scores low: a threshold of 0.45 keeps nothing for nonsense.
    assert (
        search(user, "zebra quantum violin", bot_id=handbook_bot, threshold=0.45)["results"] == []
    )


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({}, "q"),
        ({"q": ""}, "q"),
        ({"q": "x" * 1001}, "q"),
        ({"q": "a", "limit": 0}, "limit"),
        ({"q": "a", "limit": 51}, "limit"),
        ({"q": "a", "threshold": 1.5}, "threshold"),
        ({"q": "a", "threshold": -0.1}, "threshold"),
        ({"q": "a", "collection": "a/b"}, "collection"),
        ({"q": "a", "mode": "fuzzy"}, "mode"),
    ],
)
def test_bad_search_parameters_are_400_naming_the_field(
    admin: httpx.Client, params: dict[str, Any], field: str
) -> None:
    r = admin.get("/api/kb/search", params=params)
    assert r.status_code == 400, r.text
    assert field in r.text


def test_hostile_queries_never_fail(admin: httpx.Client, handbook_bot: str) -> None:
    for q in [
        '"',
        "NEAR(a b)",
        "title:x",
        "*",
        "a AND OR NOT",
        "\u00e9\u00e9\u00e9",
        "🙂",
        "' OR 1=1 --",
    ]:
        r = admin.get("/api/kb/search", params={"q": q, "bot_id": handbook_bot})
        assert r.status_code == 200, (q, r.text)


def test_replacing_and_deleting_a_document_updates_the_index(admin: httpx.Client) -> None:
    bot = new_bot()
    path = kb_path(bot, "faq", "parking.txt")
    put(admin, path, b"Parking is free in the north garage for every visitor.")
    settled(admin, bot, {"faq": 1})
    assert "north garage" in search(admin, "where can I park?", bot_id=bot)["results"][0]["content"]
    put(admin, path, b"Parking moved: visitors now use the south lot behind the bakery.")
    deadline = time.monotonic() + WAIT
    while "south lot" not in str(search(admin, "where can I park?", bot_id=bot)["results"]):
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert "north garage" not in str(search(admin, "where can I park?", bot_id=bot)["results"])
    assert admin.delete(url(path)).status_code in (200, 204)
    deadline = time.monotonic() + WAIT
    while collections(admin, bot):
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert search(admin, "where can I park?", bot_id=bot)["results"] == []


def test_a_corrupt_pdf_is_reported_and_blocks_nothing(admin: httpx.Client) -> None:
    bot = new_bot()
    put(admin, kb_path(bot, "docs", "broken.pdf"), b"%PDF-1.7\n1 0 obj\n<<", "application/pdf")
    put(admin, kb_path(bot, "docs", "good.txt"), b"The office opens at seven in the morning.")
    found = settled(admin, bot, {"docs": 2})["docs"]
    assert found["status"] == "ready"
    assert [e["path"] for e in found["errors"]] == [kb_path(bot, "docs", "broken.pdf")]
    assert found["errors"][0]["error"]
    assert found["chunks"] >= 1
    assert (
        "seven" in search(admin, "when does the office open?", bot_id=bot)["results"][0]["content"]
    )


def test_a_300_page_pdf_is_ingested_and_searchable(admin: httpx.Client) -> None:
    fpdf = pytest.importorskip("fpdf")
    pdf = fpdf.FPDF()
    pdf.set_font("helvetica", size=11)
    words = [
        "pump",
        "valve",
        "gauge",
        "seal",
        "filter",
        "bearing",
        "motor",
        "belt",
        "hose",
        "flange",
        "gasket",
        "rotor",
    ]
    for page in range(1, 301):
        pdf.add_page()
        pick = random.Random(page).sample
        text = " ".join(
            f"Check the {a} beside the {b} and record the {c} reading."
            for a, b, c in (pick(words, 3) for _ in range(4))
        )
        if page == 217:
            text = "The emergency generator is tested every Thursday at noon by the night crew."
        pdf.multi_cell(0, 6, text)
    bot = new_bot()
    put(admin, kb_path(bot, "manuals", "manual.pdf"), bytes(pdf.output()), "application/pdf")
    found = settled(admin, bot, {"manuals": 1})["manuals"]
    assert found["errors"] == [] and found["chunks"] >= 30
    best = search(admin, "when is the backup power checked?", bot_id=bot)["results"][0]
    assert "emergency generator" in best["content"]


def test_reindex_is_for_admins_and_reports_progress(
    admin: httpx.Client, make_user: Callable[..., UserClient], handbook_bot: str
) -> None:
    user = make_user()
    assert user.post("/api/kb/reindex", json={}).status_code == 403
    r = admin.post("/api/kb/reindex", json={"bot_id": handbook_bot, "collection": "hr"})
    assert r.status_code == 202, r.text
    job = r.json()
    assert r.headers["location"] == f"/api/kb/reindex/{job['id']}"
    assert job["total"] == 1 and job["bot"] == handbook_bot and job["collection"] == "hr"
    deadline = time.monotonic() + WAIT
    while True:
        status = admin.get(r.headers["location"]).json()
        if status["status"] == "done":
            break
        assert time.monotonic() < deadline, status
        time.sleep(0.2)
    assert status["done"] == 1 and status["failed"] == 0
    assert "25 days" in search(admin, "vacation days", bot_id=handbook_bot)["results"][0]["content"]
    assert admin.get(f"/api/kb/reindex/{uuid.uuid4()}").status_code == 404
    bad = admin.post("/api/kb/reindex", json={"collection": "a/b"})
    assert bad.status_code == 400 and "collection" in bad.text
    assert admin.post("/api/kb/reindex", json={"nope": 1}).status_code == 400


def test_only_admins_change_collections(make_user: Callable[..., UserClient]) -> None:
    user = make_user()
    bot = new_bot()
    r = upload(user, kb_path(bot, "hr", "x.txt"), ("x.txt", b"mine now"))
    assert r.status_code == 403


def test_with_an_llm_the_passages_are_cited_context(
    llm: FakeLlm, fresh_server: Callable[..., ServerProcess]
) -> None:
    srv = fresh_server(GB_LLM_URL=llm.url, GB_LLM_MODEL="fake-model")
    with srv.client() as c:
        bot = new_bot()
        put(c, kb_path(bot, "hr", "handbook.md"), HANDBOOK, "text/markdown")
        settled(c, bot, {"hr": 1})
        reply = say(c, open_session(c, bot), "how many vacation days do I get?")
        content = str(reply["content"])
        assert content.startswith("LLM: Answer the question from the passages below")
        assert "[1] Employee Handbook › Time off > Vacation (handbook.md)" in content
        assert "25 days of paid vacation" in content
        assert content.endswith("Question: how many vacation days do I get?")


def test_an_unreachable_opensearch_is_a_503_on_search_and_an_error_in_health(
    fresh_server: Callable[..., ServerProcess],
) -> None:
    srv = fresh_server(GB_OPENSEARCH_URL="http://127.0.0.1:9")
    with srv.client() as c:
        health = c.get("/api/health")
        assert health.status_code == 200  # optional, like the LLM
        assert health.json()["components"]["knowledge_base"] == "error"
        r = c.get("/api/kb/search", params={"q": "anything"})
        assert r.status_code == 503, r.text
        assert r.headers["retry-after"] == "1"
        assert r.json()["error"]["message"] == "the knowledge base is unavailable; retry later"
        # Conversations go on: the answer pipeline falls back.
        bot = new_bot()
        sid = open_session(c, bot)
        assert say(c, sid, "hello?")["content"] == "I'm sorry, I don't know the answer to that yet."


def test_the_index_is_rebuilt_from_the_log(
    profile: Profile, fresh_server: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    """Rebuilding the kb projection reads every document again; on the embedded profile a
    lost index (data/kb deleted) is noticed at start and rebuilt the same way."""
    data = tmp_path / "kbdata"
    srv = fresh_server(data)
    bot = new_bot()
    question = "where can I park my car?"
    with srv.client() as c:
        put(c, kb_path(bot, "faq", "parking.txt"), b"Visitors park in the north garage.")
        settled(c, bot, {"faq": 1})
        before = search(c, question, bot_id=bot)["results"]
        assert before
        r = c.post("/api/admin/projections/kb/rebuild")
        assert r.status_code == 202, r.text
        deadline = time.monotonic() + WAIT
        while c.get("/api/admin/projections/kb").json()["state"] == "rebuilding":
            assert time.monotonic() < deadline
            time.sleep(0.1)
        settled(c, bot, {"faq": 1})
        assert search(c, question, bot_id=bot)["results"] == before
    if profile.scaled:
        return
    srv.stop()
    index = data / "kb"
    assert index.is_dir()
    for file in index.iterdir():
        file.unlink()
    again = fresh_server(data)
    with again.client() as c:
        deadline = time.monotonic() + WAIT
        while search(c, question, bot_id=bot)["results"] != before:
            assert time.monotonic() < deadline
            time.sleep(0.2)
