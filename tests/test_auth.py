"""Tokens, ownership and admin-only routes."""

from __future__ import annotations

from collections.abc import Callable

import httpx

from tests.server import ServerProcess


def test_no_token_is_401(server: ServerProcess) -> None:
    with server.client(token=None) as anonymous:
        for method, path in [
            ("GET", "/api/tasks"),
            ("POST", "/api/tasks"),
            ("GET", "/api/paper"),
            ("GET", "/api/admin/stats"),
        ]:
            r = anonymous.request(method, path, json={"title": "x"})
            assert r.status_code == 401, path
            assert r.json()["error"]["code"] == "UNAUTHORIZED"
    with server.client(token="gb_not_a_real_token") as wrong:
        assert wrong.get("/api/tasks").status_code == 401
    with httpx.Client(base_url=server.url, headers={"Authorization": "Basic abc"}) as basic:
        assert basic.get("/api/tasks").status_code == 401


def test_health_is_public(server: ServerProcess) -> None:
    with server.client(token=None) as anonymous:
        assert anonymous.get("/api/health").status_code == 200


def test_users_cannot_touch_each_others_tasks(make_user: Callable[..., httpx.Client]) -> None:
    a, b = make_user(), make_user()
    task = a.post("/api/tasks", json={"title": "private"}).json()
    assert b.get(f"/api/tasks/{task['id']}").status_code == 403
    assert b.put(f"/api/tasks/{task['id']}", json={"title": "mine now"}).status_code == 403
    assert b.delete(f"/api/tasks/{task['id']}").status_code == 403
    assert b.get("/api/tasks").json()["data"] == []
    assert a.get(f"/api/tasks/{task['id']}").json() == task


def test_users_cannot_touch_each_others_documents(make_user: Callable[..., httpx.Client]) -> None:
    a, b = make_user(), make_user()
    doc = a.post("/api/paper", json={"title": "diary"}).json()
    for r in (
        b.get(f"/api/paper/{doc['id']}"),
        b.get(f"/api/paper/{doc['id']}/history"),
        b.get(f"/api/paper/{doc['id']}", params={"version": 1}),
        b.put(f"/api/paper/{doc['id']}", json={"title": "x"}),
        b.delete(f"/api/paper/{doc['id']}"),
    ):
        assert r.status_code == 403
        assert r.json()["error"]["code"] == "FORBIDDEN"
    assert b.get("/api/paper").json()["data"] == []
    assert a.get(f"/api/paper/{doc['id']}").json() == doc


def test_admin_sees_everything(make_user: Callable[..., httpx.Client], admin: httpx.Client) -> None:
    a = make_user()
    task = a.post("/api/tasks", json={"title": "visible to admin"}).json()
    assert admin.get(f"/api/tasks/{task['id']}").status_code == 200
    assert (
        task["id"]
        in {t["id"] for t in admin.get("/api/tasks", params={"limit": 200}).json()["data"]}
        or admin.get("/api/tasks").json()["pagination"]["total"] > 200
    )


def test_users_cannot_reach_admin_routes(make_user: Callable[..., httpx.Client]) -> None:
    u = make_user()
    for method, path in [
        ("GET", "/api/admin/stats"),
        ("GET", "/api/admin/events"),
        ("GET", "/api/admin/tokens"),
        ("POST", "/api/admin/tokens"),
    ]:
        r = u.request(method, path, json={"user": "x@y.zz"})
        assert r.status_code == 403, path
        assert r.json()["error"]["code"] == "FORBIDDEN"


def test_issued_token_works_at_once_and_revocation_ends_it(
    server: ServerProcess, admin: httpx.Client
) -> None:
    r = admin.post("/api/admin/tokens", json={"user": "Carol@Example.com", "role": "user"})
    assert r.status_code == 201
    issued = r.json()
    assert set(issued) == {"id", "user", "role", "token", "issued_at"}
    assert issued["user"] == "carol@example.com" and issued["token"].startswith("gb_")
    with server.client(issued["token"]) as carol:
        assert carol.get("/api/tasks").status_code == 200
        assert admin.delete(f"/api/admin/tokens/{issued['id']}").status_code == 204
        assert carol.get("/api/tasks").status_code == 401
    assert admin.get(f"/api/admin/tokens/{issued['id']}").json()["revoked_at"] is not None
    assert admin.delete(f"/api/admin/tokens/{issued['id']}").status_code == 404


def test_token_secrets_are_never_listed(admin: httpx.Client) -> None:
    issued = admin.post("/api/admin/tokens", json={"user": "dave@example.com"}).json()
    listing = admin.get("/api/admin/tokens", params={"limit": 200}).text
    assert issued["token"] not in listing
    events = admin.get("/api/admin/events", params={"limit": 200}).text
    assert issued["token"] not in events


def test_admin_tokens_validate_input(admin: httpx.Client) -> None:
    assert admin.post("/api/admin/tokens", json={"user": "nope"}).status_code == 400
    assert (
        admin.post("/api/admin/tokens", json={"user": "a@b.co", "role": "root"}).status_code == 400
    )
