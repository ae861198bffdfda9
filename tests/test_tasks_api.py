"""Tasks over HTTP: shapes, filters, ordering, errors that change nothing, concurrency."""

from __future__ import annotations

import dataclasses
import threading
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import msgspec
import pytest
from litestar.testing import TestClient

from api.app import create_app
from api.http import Writes
from commands.admin import AdminCommands, IssueToken
from commands.ports import Saved
from commands.tasks import CreateTask, TaskCommands, UpdateTask
from domain.common import Actor
from infra.bootstrap import Services
from infra.config import Settings
from tests.server import UserClient

TASK_FIELDS = {
    "id",
    "title",
    "description",
    "status",
    "priority",
    "due_date",
    "assignee",
    "owner",
    "created_at",
    "updated_at",
    "completed_at",
    "version",
}


def new_email() -> str:
    return f"user-{uuid.uuid4().hex[:10]}@example.com"


def snapshot(client: httpx.Client) -> str:
    r = client.get("/api/tasks", params={"limit": 200})
    assert r.status_code == 200
    return r.text


def test_create_returns_the_documented_shape(make_user: Callable[..., UserClient]) -> None:
    alice = make_user()
    r = alice.post(
        "/api/tasks",
        json={
            "title": "Follow up with client",
            "description": "Send proposal document",
            "due_date": "2024-01-15T17:00:00Z",
            "priority": "high",
            "assignee": "User@Example.com",
        },
    )
    assert r.status_code == 201, r.text
    body = r.json()
    assert set(body) == TASK_FIELDS
    assert body["title"] == "Follow up with client"
    assert body["priority"] == "high" and body["status"] == "pending"
    assert body["due_date"].startswith("2024-01-15T17:00:00") and body["due_date"].endswith("Z")
    assert body["assignee"] == "user@example.com"
    assert body["owner"] == alice.email
    assert body["created_at"].endswith("Z") and body["version"] == 1
    assert r.headers["location"] == f"/api/tasks/{body['id']}"
    assert r.headers["etag"] == '"1"'
    assert alice.get(f"/api/tasks/{body['id']}").json() == body


def test_defaults(make_user: Callable[..., UserClient]) -> None:
    body = make_user().post("/api/tasks", json={"title": "t"}).json()
    assert (body["priority"], body["status"], body["due_date"], body["assignee"]) == (
        "medium",
        "pending",
        None,
        None,
    )


def test_due_date_offsets_are_normalised_to_utc(make_user: Callable[..., UserClient]) -> None:
    body = (
        make_user()
        .post("/api/tasks", json={"title": "t", "due_date": "2024-01-15T17:00:00-03:00"})
        .json()
    )
    assert body["due_date"] == "2024-01-15T20:00:00.000000Z"


def test_list_filters_and_order(make_user: Callable[..., UserClient]) -> None:
    bob = make_user()
    made = {}
    for title, due, priority in [
        ("no due", None, "low"),
        ("late", "2030-05-01T00:00:00Z", "high"),
        ("early", "2030-01-01T00:00:00Z", "low"),
        ("middle", "2030-03-01T00:00:00Z", "medium"),
    ]:
        made[title] = bob.post(
            "/api/tasks", json={"title": title, "due_date": due, "priority": priority}
        ).json()
    bob.put(f"/api/tasks/{made['middle']['id']}", json={"status": "completed"})

    listed = bob.get("/api/tasks").json()
    assert [t["title"] for t in listed["data"]] == ["early", "middle", "late", "no due"]
    assert listed["pagination"] == {"total": 4, "limit": 50, "offset": 0, "has_more": False}

    def titles(**params: str) -> list[str]:
        r = bob.get("/api/tasks", params=params)
        assert r.status_code == 200, r.text
        return [t["title"] for t in r.json()["data"]]

    assert titles(status="completed") == ["middle"]
    assert titles(status="pending") == ["early", "late", "no due"]
    assert titles(priority="low") == ["early", "no due"]
    assert titles(due_before="2030-03-01T00:00:00Z") == ["early"]
    assert titles(due_before="2030-03-01T00:00:01Z", priority="medium") == ["middle"]

    page = bob.get("/api/tasks", params={"limit": 2, "offset": 1}).json()
    assert [t["title"] for t in page["data"]] == ["middle", "late"]
    assert page["pagination"] == {"total": 4, "limit": 2, "offset": 1, "has_more": True}


def test_assignee_filter_and_assignee_sees_task(make_user: Callable[..., UserClient]) -> None:
    owner, helper = make_user(), make_user()
    task = owner.post("/api/tasks", json={"title": "shared", "assignee": helper.email}).json()
    owner.post("/api/tasks", json={"title": "mine"})
    assert [
        t["id"] for t in owner.get("/api/tasks", params={"assignee": helper.email}).json()["data"]
    ] == [task["id"]]
    assert [t["id"] for t in helper.get("/api/tasks").json()["data"]] == [task["id"]]
    r = helper.put(f"/api/tasks/{task['id']}", json={"status": "completed"})
    assert r.status_code == 200 and r.json()["status"] == "completed"


def test_update_changes_only_given_fields(make_user: Callable[..., UserClient]) -> None:
    c = make_user()
    task = c.post(
        "/api/tasks", json={"title": "a", "description": "d", "due_date": "2031-01-01T00:00:00Z"}
    ).json()
    r = c.put(f"/api/tasks/{task['id']}", json={"title": "b", "description": None})
    assert r.status_code == 200, r.text
    after = r.json()
    assert (after["title"], after["description"], after["due_date"]) == (
        "b",
        None,
        task["due_date"],
    )
    assert after["version"] == 2 and after["updated_at"] >= task["updated_at"]
    done = c.put(f"/api/tasks/{task['id']}", json={"status": "completed"}).json()
    assert done["status"] == "completed" and done["completed_at"] is not None
    reopened = c.put(f"/api/tasks/{task['id']}", json={"status": "pending"}).json()
    assert reopened["status"] == "pending" and reopened["completed_at"] is None
    cancelled = c.put(f"/api/tasks/{task['id']}", json={"status": "cancelled"}).json()
    assert cancelled["status"] == "cancelled"


def test_delete_then_404(make_user: Callable[..., UserClient]) -> None:
    c = make_user()
    task = c.post("/api/tasks", json={"title": "bye"}).json()
    r = c.delete(f"/api/tasks/{task['id']}")
    assert r.status_code == 204 and r.content == b""
    for response in (
        c.get(f"/api/tasks/{task['id']}"),
        c.put(f"/api/tasks/{task['id']}", json={"title": "x"}),
        c.delete(f"/api/tasks/{task['id']}"),
    ):
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "NOT_FOUND"
    assert c.get("/api/tasks").json()["data"] == []


BAD_CREATES = [
    ({"title": 5}, "title"),
    ({"title": ""}, "title"),
    ({"title": "   "}, "title"),
    ({"title": "x" * 501}, "title"),
    ({}, "title"),
    ({"title": "t", "priority": "urgent"}, "priority"),
    ({"title": "t", "status": "done"}, "status"),
    ({"title": "t", "due_date": "tomorrow"}, "due_date"),
    ({"title": "t", "due_date": "2024-13-45T00:00:00Z"}, "due_date"),
    ({"title": "t", "due_date": "2024-01-15T17:00:00"}, "due_date"),
    ({"title": "t", "assignee": "not-an-email"}, "assignee"),
    ({"title": "t", "priority": None}, "priority"),
    ({"title": "t", "colour": "red"}, "colour"),
    (["title"], None),
]


@pytest.mark.parametrize(("body", "field"), BAD_CREATES)
def test_invalid_create_is_400_and_changes_nothing(
    make_user: Callable[..., UserClient], body: object, field: str | None
) -> None:
    c = make_user()
    c.post("/api/tasks", json={"title": "keep"})
    before = snapshot(c)
    r = c.post("/api/tasks", json=body)
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["code"] == "BAD_REQUEST" and error["message"]
    if field:
        assert field in r.text
    assert snapshot(c) == before


@pytest.mark.parametrize("raw", [b"{", b"not json", b'{"title": "t",}', b"\xff\xfe"])
def test_malformed_json_is_400(make_user: Callable[..., UserClient], raw: bytes) -> None:
    c = make_user()
    before = snapshot(c)
    r = c.post("/api/tasks", content=raw, headers={"content-type": "application/json"})
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "BAD_REQUEST"
    assert snapshot(c) == before


def test_ten_megabyte_body_is_refused(make_user: Callable[..., UserClient]) -> None:
    c = make_user()
    before = snapshot(c)
    body = b'{"title": "' + b"x" * 10_000_000 + b'"}'
    r = c.post("/api/tasks", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 413
    assert r.json()["error"]["code"] == "PAYLOAD_TOO_LARGE"
    assert snapshot(c) == before


@pytest.mark.parametrize(
    "params",
    [
        {"limit": "100000"},
        {"limit": "0"},
        {"limit": "-1"},
        {"limit": "ten"},
        {"offset": "-5"},
        {"status": "done"},
        {"priority": "urgent"},
        {"due_before": "yesterday"},
    ],
)
def test_bad_list_parameters_are_400(
    make_user: Callable[..., UserClient], params: dict[str, str]
) -> None:
    r = make_user().get("/api/tasks", params=params)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["code"] == "BAD_REQUEST"
    assert next(iter(params)) in r.text


def test_limit_200_is_the_maximum(make_user: Callable[..., UserClient]) -> None:
    r = make_user().get("/api/tasks", params={"limit": 200})
    assert r.status_code == 200 and r.json()["pagination"]["limit"] == 200


def test_unknown_ids_are_404(make_user: Callable[..., UserClient]) -> None:
    c = make_user()
    unknown = uuid.uuid4()
    assert c.get(f"/api/tasks/{unknown}").status_code == 404
    assert c.put(f"/api/tasks/{unknown}", json={"title": "x"}).status_code == 404
    assert c.delete(f"/api/tasks/{unknown}").status_code == 404
    assert c.get("/api/tasks/not-a-uuid").status_code == 404


def test_invalid_update_changes_nothing(make_user: Callable[..., UserClient]) -> None:
    c = make_user()
    task = c.post("/api/tasks", json={"title": "t"}).json()
    for body in ({"title": ""}, {"priority": "urgent"}, {"due_date": "nope"}, {"id": "x"}):
        r = c.put(f"/api/tasks/{task['id']}", json=body)
        assert r.status_code == 400, body
    assert c.get(f"/api/tasks/{task['id']}").json() == task


def test_post_then_list_sees_it_1000_times(make_user: Callable[..., UserClient]) -> None:
    c = make_user()
    for i in range(1000):
        created = c.post("/api/tasks", json={"title": f"t{i}"})
        assert created.status_code == 201
        listed = c.get("/api/tasks", params={"limit": 1, "offset": i})
        assert listed.json()["pagination"]["total"] == i + 1, i
        assert created.json()["id"] in {t["id"] for t in listed.json()["data"]} or i > 0
        assert c.get(f"/api/tasks/{created.json()['id']}").status_code == 200


def test_stale_if_match_is_409(make_user: Callable[..., UserClient]) -> None:
    c = make_user()
    task = c.post("/api/tasks", json={"title": "t"}).json()
    assert (
        c.put(
            f"/api/tasks/{task['id']}", json={"title": "u"}, headers={"If-Match": '"1"'}
        ).status_code
        == 200
    )
    r = c.put(f"/api/tasks/{task['id']}", json={"title": "v"}, headers={"If-Match": '"1"'})
    assert r.status_code == 409
    assert r.json()["error"]["code"] == "CONFLICT"
    assert c.get(f"/api/tasks/{task['id']}").json()["title"] == "u"
    bad = c.put(f"/api/tasks/{task['id']}", json={"title": "w"}, headers={"If-Match": "abc"})
    assert bad.status_code == 400


def test_concurrent_puts_at_one_version_one_wins(
    server: object, make_user: Callable[..., UserClient]
) -> None:
    owner = make_user()
    for _ in range(10):
        task = owner.post("/api/tasks", json={"title": "race"}).json()
        barrier = threading.Barrier(2)
        results: list[int] = []

        def put(
            title: str,
            barrier: threading.Barrier = barrier,
            results: list[int] = results,
            task: dict[str, object] = task,
        ) -> None:
            with httpx.Client(base_url=str(owner.base_url), headers=owner.headers) as c:
                barrier.wait()
                results.append(
                    c.put(
                        f"/api/tasks/{task['id']}",
                        json={"title": title},
                        headers={"If-Match": '"1"'},
                    ).status_code
                )

        threads = [threading.Thread(target=put, args=(t,)) for t in ("left", "right")]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(results) == [200, 409]
        final = owner.get(f"/api/tasks/{task['id']}").json()
        assert final["version"] == 2 and final["title"] in ("left", "right")


def test_idempotency_key_creates_once(make_user: Callable[..., UserClient]) -> None:
    c = make_user()
    key = {"Idempotency-Key": f"k-{uuid.uuid4()}"}
    first = c.post("/api/tasks", json={"title": "once"}, headers=key)
    again = c.post("/api/tasks", json={"title": "once"}, headers=key)
    assert first.status_code == again.status_code == 201
    assert first.json() == again.json()
    assert again.headers["idempotent-replayed"] == "true"
    assert c.get("/api/tasks").json()["pagination"]["total"] == 1
    other = c.post("/api/tasks", json={"title": "different"}, headers=key)
    assert other.status_code == 409
    assert c.get("/api/tasks").json()["pagination"]["total"] == 1


def test_idempotency_keys_are_per_user(make_user: Callable[..., UserClient]) -> None:
    a, b = make_user(), make_user()
    key = {"Idempotency-Key": "same-key"}
    ta = a.post("/api/tasks", json={"title": "x"}, headers=key).json()
    tb = b.post("/api/tasks", json={"title": "x"}, headers=key).json()
    assert ta["id"] != tb["id"]


def test_concurrent_retries_with_one_key_create_one(make_user: Callable[..., UserClient]) -> None:
    c = make_user()
    key = {"Idempotency-Key": f"k-{uuid.uuid4()}"}
    barrier = threading.Barrier(4)
    ids: list[str] = []

    def post() -> None:
        with httpx.Client(base_url=str(c.base_url), headers=c.headers) as client:
            barrier.wait()
            r = client.post("/api/tasks", json={"title": "once"}, headers=key)
            assert r.status_code == 201, r.text
            ids.append(r.json()["id"])

    threads = [threading.Thread(target=post) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(ids) == 4 and len(set(ids)) == 1
    assert c.get("/api/tasks").json()["pagination"]["total"] == 1


def test_nul_characters_are_refused(make_user: Callable[..., UserClient]) -> None:
    """PostgreSQL cannot store U+0000: accepting it would stall the read models behind it."""
    c = make_user()
    r = c.post("/api/tasks", json={"title": "bad\u0000title"})
    assert r.status_code == 400 and "NUL" in r.json()["error"]["message"]
    assert c.get("/api/tasks").json()["data"] == []


def test_an_assignee_changes_status_and_description_only(
    make_user: Callable[..., UserClient],
) -> None:
    """Issue 7, reproduction 9: an assignee who reassigned got 403 although the change was
    saved, and could delete the owner's task. Now what they may not do is refused unsaved."""
    assignee_email, other_email = new_email(), new_email()
    owner, assignee, other = make_user(), make_user(assignee_email), make_user(other_email)
    task = owner.post(
        "/api/tasks", json={"title": "shared", "assignee": assignee_email, "priority": "low"}
    ).json()
    url = f"/api/tasks/{task['id']}"
    for change, field in [
        ({"assignee": other_email}, "assignee"),
        ({"assignee": None}, "assignee"),
        ({"title": "taken over"}, "title"),
        ({"priority": "high"}, "priority"),
        ({"due_date": "2031-01-01T00:00:00Z"}, "due_date"),
        ({"status": "completed", "title": "taken over"}, "title"),
    ]:
        r = assignee.put(url, json=change)
        assert r.status_code == 403, (change, r.text)
        error = r.json()["error"]
        assert error["code"] == "FORBIDDEN"
        assert field in error["message"] and "owner" in error["message"], error
    deleted = assignee.delete(url)
    assert deleted.status_code == 403 and "owner" in deleted.json()["error"]["message"]
    assert owner.get(url).json() == task  # nothing of it was saved
    assert other.get(url).status_code == 403

    # What the assignee may change answers 200 with the task, never an error; values sent
    # back unchanged are no change (a client may PUT the whole task with a new status).
    done = assignee.put(
        url,
        json={"status": "completed", "description": "done", "title": "shared", "priority": "low"},
    )
    assert done.status_code == 200, done.text
    body = done.json()
    assert (body["status"], body["description"], body["title"]) == ("completed", "done", "shared")
    assert done.headers["ETag"] == f'"{body["version"]}"'
    assert assignee.get(url).json() == body

    # The owner reassigns (and sees the task after); the former assignee no longer does.
    moved = owner.put(url, json={"assignee": other_email})
    assert moved.status_code == 200 and moved.json()["assignee"] == other_email
    assert assignee.get(url).status_code == 403
    assert other.delete(url).status_code == 403
    assert owner.delete(url).status_code == 204


def test_an_admin_may_change_and_delete_any_task(
    make_user: Callable[..., UserClient], admin: httpx.Client
) -> None:
    owner = make_user()
    task = owner.post("/api/tasks", json={"title": "t", "assignee": new_email()}).json()
    url = f"/api/tasks/{task['id']}"
    r = admin.put(url, json={"title": "renamed", "assignee": None})
    assert r.status_code == 200 and r.json()["assignee"] is None, r.text
    assert admin.delete(url).status_code == 204
    assert owner.get(url).status_code == 404


@pytest.mark.parametrize("blank", ["\u3000", " \u2003\u00a0 ", "\u2028\u2029", "\t\n\r\x0b\x0c"])
def test_titles_of_only_white_space_are_refused(
    make_user: Callable[..., UserClient], blank: str
) -> None:
    """Issue 7, reproduction 12: "\\u3000" was stored as an empty title."""
    c = make_user()
    task = c.post("/api/tasks", json={"title": "real"}).json()
    before = snapshot(c)
    for r in (
        c.post("/api/tasks", json={"title": blank}),
        c.put(f"/api/tasks/{task['id']}", json={"title": blank}),
    ):
        assert r.status_code == 400, r.text
        assert r.json()["error"]["code"] == "BAD_REQUEST" and "title" in r.text
    assert snapshot(c) == before
    padded = c.post("/api/tasks", json={"title": f"{blank}kept{blank}"})
    assert padded.status_code == 201 and padded.json()["title"] == "kept"


class _MovesTheTaskFirst:
    """Read-your-writes that, once, lets another request in between a write and its answer."""

    def __init__(self, inner: Any, meanwhile: Callable[[], None]) -> None:
        self.inner = inner
        self.meanwhile: Callable[[], None] | None = meanwhile

    def wait(self, saved: Saved, timeout: float) -> bool:
        step, self.meanwhile = self.meanwhile, None
        if step is not None:
            step()
        return bool(self.inner.wait(saved, timeout))

    def find(self, names: Any, probe: Callable[[], Any], timeout: float) -> Any:
        return self.inner.find(names, probe, timeout)


def test_a_write_the_caller_may_make_never_answers_an_error(tmp_path: Path) -> None:
    """The assignee's status change is saved; before it is answered, the owner gives the task
    to someone else. The saved write answers 204 (nothing the caller may see), not 403."""
    services = Services.open(Settings(data_dir=tmp_path))
    try:
        services.start_workers()
        wiring = services.wiring()
        tasks, admin, writes = (wiring.dependencies[n] for n in ("tasks", "admin", "writes"))
        assert isinstance(tasks, TaskCommands) and isinstance(admin, AdminCommands)
        assert isinstance(writes, Writes)
        owner, assignee = Actor("owner@example.com"), Actor("a@example.com")
        task_id, saved = tasks.create(
            owner, msgspec.convert({"title": "relay", "assignee": assignee.email}, CreateTask)
        )
        assert writes.consistency.wait(saved, 5.0)

        def reassign() -> None:
            moved = tasks.update(
                owner,
                UUID(task_id),
                msgspec.convert({"assignee": "b@example.com"}, UpdateTask),
                None,
            )
            assert writes.consistency.wait(moved, 5.0)

        _, secret, _ = admin.issue(
            Actor("root@example.com", is_admin=True),
            msgspec.convert({"user": assignee.email}, IssueToken),
        )
        moves_first = _MovesTheTaskFirst(writes.consistency, reassign)
        hooked = dataclasses.replace(
            wiring,
            dependencies={
                **wiring.dependencies,
                "writes": dataclasses.replace(writes, consistency=moves_first),
            },
        )
        with TestClient(create_app(hooked)) as client:
            r = client.put(
                f"/api/tasks/{task_id}",
                json={"status": "completed"},
                headers={"Authorization": f"Bearer {secret}"},
            )
            assert r.status_code == 204, r.text
            # Saved, although the caller no longer sees the task:
            again = client.get(
                f"/api/tasks/{task_id}", headers={"Authorization": f"Bearer {secret}"}
            )
            assert again.status_code == 403
        task = services.events.get(UUID(task_id))
        assert (task.status, task.assignee) == ("completed", "b@example.com")
    finally:
        services.close()
