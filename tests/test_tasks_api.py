"""Tasks over HTTP: shapes, filters, ordering, errors that change nothing, concurrency."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable

import httpx
import pytest

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


def snapshot(client: httpx.Client) -> str:
    r = client.get("/api/tasks", params={"limit": 200})
    assert r.status_code == 200
    return r.text


def test_create_returns_the_documented_shape(make_user: Callable[..., httpx.Client]) -> None:
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


def test_defaults(make_user: Callable[..., httpx.Client]) -> None:
    body = make_user().post("/api/tasks", json={"title": "t"}).json()
    assert (body["priority"], body["status"], body["due_date"], body["assignee"]) == (
        "medium",
        "pending",
        None,
        None,
    )


def test_due_date_offsets_are_normalised_to_utc(make_user: Callable[..., httpx.Client]) -> None:
    body = (
        make_user()
        .post("/api/tasks", json={"title": "t", "due_date": "2024-01-15T17:00:00-03:00"})
        .json()
    )
    assert body["due_date"] == "2024-01-15T20:00:00.000000Z"


def test_list_filters_and_order(make_user: Callable[..., httpx.Client]) -> None:
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


def test_assignee_filter_and_assignee_sees_task(make_user: Callable[..., httpx.Client]) -> None:
    owner, helper = make_user(), make_user()
    task = owner.post("/api/tasks", json={"title": "shared", "assignee": helper.email}).json()
    owner.post("/api/tasks", json={"title": "mine"})
    assert [
        t["id"] for t in owner.get("/api/tasks", params={"assignee": helper.email}).json()["data"]
    ] == [task["id"]]
    assert [t["id"] for t in helper.get("/api/tasks").json()["data"]] == [task["id"]]
    r = helper.put(f"/api/tasks/{task['id']}", json={"status": "completed"})
    assert r.status_code == 200 and r.json()["status"] == "completed"


def test_update_changes_only_given_fields(make_user: Callable[..., httpx.Client]) -> None:
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


def test_delete_then_404(make_user: Callable[..., httpx.Client]) -> None:
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
    make_user: Callable[..., httpx.Client], body: object, field: str | None
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
def test_malformed_json_is_400(make_user: Callable[..., httpx.Client], raw: bytes) -> None:
    c = make_user()
    before = snapshot(c)
    r = c.post("/api/tasks", content=raw, headers={"content-type": "application/json"})
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "BAD_REQUEST"
    assert snapshot(c) == before


def test_ten_megabyte_body_is_refused(make_user: Callable[..., httpx.Client]) -> None:
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
    make_user: Callable[..., httpx.Client], params: dict[str, str]
) -> None:
    r = make_user().get("/api/tasks", params=params)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["code"] == "BAD_REQUEST"
    assert next(iter(params)) in r.text


def test_limit_200_is_the_maximum(make_user: Callable[..., httpx.Client]) -> None:
    r = make_user().get("/api/tasks", params={"limit": 200})
    assert r.status_code == 200 and r.json()["pagination"]["limit"] == 200


def test_unknown_ids_are_404(make_user: Callable[..., httpx.Client]) -> None:
    c = make_user()
    unknown = uuid.uuid4()
    assert c.get(f"/api/tasks/{unknown}").status_code == 404
    assert c.put(f"/api/tasks/{unknown}", json={"title": "x"}).status_code == 404
    assert c.delete(f"/api/tasks/{unknown}").status_code == 404
    assert c.get("/api/tasks/not-a-uuid").status_code == 404


def test_invalid_update_changes_nothing(make_user: Callable[..., httpx.Client]) -> None:
    c = make_user()
    task = c.post("/api/tasks", json={"title": "t"}).json()
    for body in ({"title": ""}, {"priority": "urgent"}, {"due_date": "nope"}, {"id": "x"}):
        r = c.put(f"/api/tasks/{task['id']}", json=body)
        assert r.status_code == 400, body
    assert c.get(f"/api/tasks/{task['id']}").json() == task


def test_post_then_list_sees_it_1000_times(make_user: Callable[..., httpx.Client]) -> None:
    c = make_user()
    for i in range(1000):
        created = c.post("/api/tasks", json={"title": f"t{i}"})
        assert created.status_code == 201
        listed = c.get("/api/tasks", params={"limit": 1, "offset": i})
        assert listed.json()["pagination"]["total"] == i + 1, i
        assert created.json()["id"] in {t["id"] for t in listed.json()["data"]} or i > 0
        assert c.get(f"/api/tasks/{created.json()['id']}").status_code == 200


def test_stale_if_match_is_409(make_user: Callable[..., httpx.Client]) -> None:
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
    server: object, make_user: Callable[..., httpx.Client]
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


def test_idempotency_key_creates_once(make_user: Callable[..., httpx.Client]) -> None:
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


def test_idempotency_keys_are_per_user(make_user: Callable[..., httpx.Client]) -> None:
    a, b = make_user(), make_user()
    key = {"Idempotency-Key": "same-key"}
    ta = a.post("/api/tasks", json={"title": "x"}, headers=key).json()
    tb = b.post("/api/tasks", json={"title": "x"}, headers=key).json()
    assert ta["id"] != tb["id"]


def test_concurrent_retries_with_one_key_create_one(make_user: Callable[..., httpx.Client]) -> None:
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


def test_nul_characters_are_refused(make_user: Callable[..., httpx.Client]) -> None:
    """PostgreSQL cannot store U+0000: accepting it would stall the read models behind it."""
    c = make_user()
    r = c.post("/api/tasks", json={"title": "bad\u0000title"})
    assert r.status_code == 400 and "NUL" in r.json()["error"]["message"]
    assert c.get("/api/tasks").json()["data"] == []
