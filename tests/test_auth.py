"""Tokens, ownership and admin-only routes."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from uuid import UUID

import httpx
import msgspec
import pytest

from commands.admin import BOOTSTRAP_USER, AdminCommands, IssueToken, hash_token
from domain.admin import ApiToken
from domain.common import Actor
from infra.bootstrap import Services
from infra.config import Settings
from tests.profiles import Profile
from tests.server import ServerProcess, UserClient, gbserver


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


def test_users_cannot_touch_each_others_tasks(make_user: Callable[..., UserClient]) -> None:
    a, b = make_user(), make_user()
    task = a.post("/api/tasks", json={"title": "private"}).json()
    assert b.get(f"/api/tasks/{task['id']}").status_code == 403
    assert b.put(f"/api/tasks/{task['id']}", json={"title": "mine now"}).status_code == 403
    assert b.delete(f"/api/tasks/{task['id']}").status_code == 403
    assert b.get("/api/tasks").json()["data"] == []
    assert a.get(f"/api/tasks/{task['id']}").json() == task


def test_users_cannot_touch_each_others_documents(make_user: Callable[..., UserClient]) -> None:
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


def test_admin_sees_everything(make_user: Callable[..., UserClient], admin: httpx.Client) -> None:
    a = make_user()
    task = a.post("/api/tasks", json={"title": "visible to admin"}).json()
    assert admin.get(f"/api/tasks/{task['id']}").status_code == 200
    assert (
        task["id"]
        in {t["id"] for t in admin.get("/api/tasks", params={"limit": 200}).json()["data"]}
        or admin.get("/api/tasks").json()["pagination"]["total"] > 200
    )


def test_users_cannot_reach_admin_routes(make_user: Callable[..., UserClient]) -> None:
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


# --- token checks never wait for the tokens projection (issue 7, reproduction 7) -------------


def _never_wait(*_: object, **__: object) -> bool:
    raise AssertionError("a token check waited for a projection")


def test_token_checks_read_the_token_and_never_wait(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Through the real composition root, with no projection running (the tokens read model
    never moves) and every projection wait replaced by a failure: a token issued a moment
    ago authenticates, and unknown and revoked tokens are refused, all without waiting."""
    services = Services.open(Settings(data_dir=tmp_path, admin_token=""))
    try:
        monkeypatch.setattr(services.positions, "wait_for", _never_wait)
        monkeypatch.setattr(services.positions, "wait_for_change", _never_wait)
        monkeypatch.setattr(services.signal, "wait_beyond", _never_wait)
        wiring = services.wiring()
        auth = wiring.authenticator
        admin = wiring.dependencies["admin"]
        assert isinstance(admin, AdminCommands)
        root = Actor("root@example.com", is_admin=True)

        bootstrap = AdminCommands(services.events).bootstrap_admin()
        assert bootstrap is not None
        assert auth.lookup(bootstrap) == Actor(BOOTSTRAP_USER, is_admin=True)

        issued_id, secret, _ = admin.issue(
            root, msgspec.convert({"user": "Fresh@Example.com"}, IssueToken)
        )
        assert auth.lookup(secret) == Actor("fresh@example.com")
        assert auth.lookup("gb_" + "x" * 43) is None  # unknown
        admin.revoke(root, UUID(issued_id))
        assert auth.lookup(secret) is None  # revoked: the log says so, no read model needed

        # A token issued before ids derived from hashes (a random id) is found in the read
        # model, without waiting for it either.
        legacy_secret = "gb_legacy_" + uuid.uuid4().hex
        legacy = ApiToken("old@example.com", "admin", hash_token(legacy_secret), "gbserver")
        services.events.save(legacy)
        assert auth.lookup(legacy_secret) is None  # not projected yet, and nothing waits
        services.operations().rebuild("tokens", lambda *_: None)
        assert auth.lookup(legacy_secret) == Actor("old@example.com", is_admin=True)
        assert auth.lookup(secret) is None  # the read model does not revive a revoked token
        admin.revoke(root, legacy.id)
        services.operations().rebuild("tokens", lambda *_: None)
        assert auth.lookup(legacy_secret) is None
    finally:
        services.close()


def test_tokens_work_at_once_while_the_read_models_stand_still(
    profile: Profile, tmp_path: Path
) -> None:
    """A server with no projection running (`serve --no-workers`, nothing else feeding the
    read models): a token from `gbserver token create` and one from the API authenticate on
    their first use, and a revoked token is refused although the read model still lists it
    as active."""
    env = {**profile.env(), "GB_CONSISTENCY_TIMEOUT": "0.2"}
    srv = ServerProcess(tmp_path / "data", env, args=("--no-workers",)).start()
    try:
        created = gbserver("token", "create", "--user", "cli@example.com", env=srv.env)
        with srv.client(created.stdout.strip()) as cli_user:
            assert cli_user.get("/api/tasks").status_code == 200

        with srv.client() as admin:
            r = admin.post("/api/admin/tokens", json={"user": "api@example.com"})
            assert r.status_code == 201, r.text
            issued = r.json()
            with srv.client(issued["token"]) as api_user:
                assert api_user.get("/api/tasks").status_code == 200
                assert admin.delete(f"/api/admin/tokens/{issued['id']}").status_code in (202, 204)
                refused = api_user.get("/api/tasks")
                assert refused.status_code == 401
                assert refused.json()["error"]["code"] == "UNAUTHORIZED"

        # Many bad tokens at once are all answered, and a good token still is.
        def attempt(token: str) -> int:
            with srv.client(token) as c:
                return c.get("/api/tasks").status_code

        bad = [f"gb_unknown_{i}" for i in range(60)]
        with ThreadPoolExecutor(max_workers=30) as pool:
            answers = list(pool.map(attempt, [*bad, created.stdout.strip()]))
        assert answers == [401] * len(bad) + [200]
    finally:
        srv.stop()
