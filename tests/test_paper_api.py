"""Paper over HTTP, including history and past versions from the event stream."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import pytest

from tests.server import UserClient

DOC_FIELDS = {
    "id",
    "title",
    "content",
    "type",
    "owner",
    "version",
    "created_at",
    "updated_at",
    "updated_by",
}


def test_crud(make_user: Callable[..., UserClient]) -> None:
    c = make_user()
    r = c.post(
        "/api/paper",
        json={"title": "Meeting Notes", "content": "# Meeting Notes\n\n...", "type": "note"},
    )
    assert r.status_code == 201, r.text
    doc = r.json()
    assert set(doc) == DOC_FIELDS
    assert (doc["title"], doc["type"], doc["version"], doc["owner"]) == (
        "Meeting Notes",
        "note",
        1,
        c.email,
    )
    assert c.get(f"/api/paper/{doc['id']}").json() == doc
    listed = c.get("/api/paper").json()
    assert [d["id"] for d in listed["data"]] == [doc["id"]]
    assert listed["pagination"]["total"] == 1

    updated = c.put(f"/api/paper/{doc['id']}", json={"content": "v2"}).json()
    assert (updated["title"], updated["content"], updated["version"]) == ("Meeting Notes", "v2", 2)

    assert c.delete(f"/api/paper/{doc['id']}").status_code == 204
    assert c.get(f"/api/paper/{doc['id']}").status_code == 404
    assert c.get("/api/paper").json()["data"] == []


def test_type_defaults_and_filter(make_user: Callable[..., UserClient]) -> None:
    c = make_user()
    note = c.post("/api/paper", json={"title": "a"}).json()
    spec = c.post("/api/paper", json={"title": "b", "type": "spec"}).json()
    assert note["type"] == "note" and note["content"] == ""
    assert [d["id"] for d in c.get("/api/paper", params={"type": "spec"}).json()["data"]] == [
        spec["id"]
    ]


def test_history_and_versions(make_user: Callable[..., UserClient]) -> None:
    author, admin_email = make_user(), None
    doc = author.post("/api/paper", json={"title": "Plan", "content": "one"}).json()
    author.put(f"/api/paper/{doc['id']}", json={"content": "two"})
    author.put(f"/api/paper/{doc['id']}", json={"title": "Plan B", "content": "three"})

    history = author.get(f"/api/paper/{doc['id']}/history").json()
    revisions = history["data"]
    assert [r["version"] for r in revisions] == [1, 2, 3]
    assert [r["event"] for r in revisions] == ["created", "revised", "revised"]
    assert all(r["author"] == author.email for r in revisions)
    assert revisions[1]["changed"] == ["content"]
    assert revisions[2]["changed"] == ["content", "title"]
    assert all(r["timestamp"].endswith("Z") for r in revisions)
    assert revisions[0]["timestamp"] <= revisions[1]["timestamp"] <= revisions[2]["timestamp"]

    v1 = author.get(f"/api/paper/{doc['id']}", params={"version": 1}).json()
    assert (v1["title"], v1["content"], v1["version"]) == ("Plan", "one", 1)
    v2 = author.get(f"/api/paper/{doc['id']}", params={"version": 2}).json()
    assert (v2["title"], v2["content"], v2["version"]) == ("Plan", "two", 2)
    assert (
        author.get(f"/api/paper/{doc['id']}", params={"version": 3}).json()
        == author.get(f"/api/paper/{doc['id']}").json()
    )
    assert author.get(f"/api/paper/{doc['id']}", params={"version": 4}).status_code == 404
    assert author.get(f"/api/paper/{doc['id']}", params={"version": 0}).status_code == 400
    assert author.get(f"/api/paper/{doc['id']}", params={"version": "x"}).status_code == 400
    assert admin_email is None


def test_history_records_deletion(make_user: Callable[..., UserClient]) -> None:
    c = make_user()
    doc = c.post("/api/paper", json={"title": "t"}).json()
    c.delete(f"/api/paper/{doc['id']}")
    events = [r["event"] for r in c.get(f"/api/paper/{doc['id']}/history").json()["data"]]
    assert events == ["created", "deleted"]
    assert c.get(f"/api/paper/{doc['id']}", params={"version": 1}).json()["title"] == "t"
    assert c.get(f"/api/paper/{doc['id']}", params={"version": 2}).status_code == 404


@pytest.mark.parametrize(
    "body",
    [
        {"title": ""},
        {"title": 3},
        {"content": "no title"},
        {"title": "t", "type": "Not A Type"},
        {"title": "t", "content": None},
        {"title": "t", "extra": 1},
    ],
)
def test_invalid_documents_are_400(make_user: Callable[..., UserClient], body: object) -> None:
    c = make_user()
    r = c.post("/api/paper", json=body)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["code"] == "BAD_REQUEST"
    assert c.get("/api/paper").json()["data"] == []


def test_unknown_documents_are_404(make_user: Callable[..., UserClient]) -> None:
    c = make_user()
    unknown = uuid.uuid4()
    for r in (
        c.get(f"/api/paper/{unknown}"),
        c.get(f"/api/paper/{unknown}/history"),
        c.get(f"/api/paper/{unknown}", params={"version": 1}),
        c.put(f"/api/paper/{unknown}", json={"title": "x"}),
        c.delete(f"/api/paper/{unknown}"),
    ):
        assert r.status_code == 404
        assert r.json()["error"]["code"] == "NOT_FOUND"


def test_unicode_content_round_trips(make_user: Callable[..., UserClient]) -> None:
    c = make_user()
    content = "# Café ☕\n\nÇa marche — 日本語 🎉\n"
    doc = c.post("/api/paper", json={"title": "Ünïcode", "content": content}).json()
    assert c.get(f"/api/paper/{doc['id']}").json()["content"] == content


@pytest.mark.parametrize("blank", ["\u3000", " \u2003\u00a0 ", "\u205f\u1680", "\x1c\x1f\x85"])
def test_titles_of_only_white_space_are_refused(
    make_user: Callable[..., UserClient], blank: str
) -> None:
    """Issue 7, reproduction 12: a title of Unicode spaces was stored empty."""
    c = make_user()
    doc = c.post("/api/paper", json={"title": "notes"}).json()
    for r in (
        c.post("/api/paper", json={"title": blank}),
        c.put(f"/api/paper/{doc['id']}", json={"title": blank}),
    ):
        assert r.status_code == 400, r.text
        assert r.json()["error"]["code"] == "BAD_REQUEST" and "title" in r.text
    assert [d["id"] for d in c.get("/api/paper").json()["data"]] == [doc["id"]]
    assert c.get(f"/api/paper/{doc['id']}").json() == doc
    padded = c.post("/api/paper", json={"title": f"{blank}kept{blank}"})
    assert padded.status_code == 201 and padded.json()["title"] == "kept"
