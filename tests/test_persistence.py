"""Durability, replay and the CLI: restart, rebuild, event log, tokens."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import httpx

from tests.profiles import Profile, drop_read_models
from tests.server import ADMIN_TOKEN, ServerProcess, gbserver


def populate(c: httpx.Client) -> dict[str, list[str]]:
    ids: dict[str, list[str]] = {"tasks": [], "paper": []}
    for i in range(30):
        t = c.post(
            "/api/tasks",
            json={
                "title": f"task {i}",
                "priority": ("low", "medium", "high")[i % 3],
                "due_date": None if i % 4 == 0 else f"2030-01-{1 + i % 28:02d}T10:00:00Z",
                "assignee": f"helper{i % 2}@example.com",
            },
        ).json()
        ids["tasks"].append(t["id"])
        if i % 5 == 0:
            c.put(f"/api/tasks/{t['id']}", json={"status": "completed", "title": f"done {i}"})
        if i % 7 == 0:
            c.delete(f"/api/tasks/{t['id']}")
    for i in range(8):
        d = c.post("/api/paper", json={"title": f"doc {i}", "content": f"v1 {i}"}).json()
        ids["paper"].append(d["id"])
        c.put(f"/api/paper/{d['id']}", json={"content": f"v2 {i}"})
        if i == 3:
            c.delete(f"/api/paper/{d['id']}")
    return ids


def observe(c: httpx.Client, ids: dict[str, list[str]]) -> list[bytes]:
    urls = [
        "/api/tasks?limit=200",
        "/api/tasks?status=completed",
        "/api/tasks?priority=high",
        "/api/tasks?due_before=2030-01-10T00:00:00Z",
        "/api/tasks?assignee=helper1@example.com",
        "/api/tasks?limit=7&offset=3",
        "/api/paper?limit=200",
        "/api/admin/tokens",
    ]
    urls += [f"/api/tasks/{i}" for i in ids["tasks"]]
    urls += [f"/api/paper/{i}" for i in ids["paper"]]
    urls += [f"/api/paper/{i}/history" for i in ids["paper"]]
    return [c.get(u).content for u in urls]


def test_restart_keeps_everything(fresh_server: Callable[..., ServerProcess]) -> None:
    srv = fresh_server()
    with srv.client() as c:
        ids = populate(c)
        before = observe(c, ids)
    srv.stop()
    srv.start()
    with srv.client() as c:
        assert observe(c, ids) == before


def test_rebuild_after_deleting_read_models_is_byte_identical(
    fresh_server: Callable[..., ServerProcess],
) -> None:
    srv = fresh_server()
    with srv.client() as c:
        ids = populate(c)
        before = observe(c, ids)
    srv.stop()
    drop_read_models(srv.env, srv.data_dir)
    result = gbserver("rebuild", env=srv.env)
    assert "tasks:" in result.stdout and "paper:" in result.stdout and "tokens:" in result.stdout
    srv.start()
    with srv.client() as c:
        assert observe(c, ids) == before


def test_rebuild_of_one_projection(fresh_server: Callable[..., ServerProcess]) -> None:
    srv = fresh_server()
    with srv.client() as c:
        ids = populate(c)
        before = observe(c, ids)
    srv.stop()
    result = gbserver("rebuild", "tasks", env=srv.env)
    assert "tasks:" in result.stdout and "paper:" not in result.stdout
    unknown = gbserver("rebuild", "nope", env=srv.env, check=False)
    assert unknown.returncode == 2 and "unknown projection nope" in unknown.stderr
    srv.start()
    with srv.client() as c:
        assert observe(c, ids) == before


def test_events_cli_prints_the_log(fresh_server: Callable[..., ServerProcess]) -> None:
    srv = fresh_server()
    with srv.client() as c:
        task = c.post("/api/tasks", json={"title": "a"}).json()
        c.put(f"/api/tasks/{task['id']}", json={"title": "b"})
        c.post("/api/paper", json={"title": "p"})
    lines = [json.loads(x) for x in gbserver("events", env=srv.env).stdout.splitlines()]
    assert [e["id"] for e in lines] == sorted(e["id"] for e in lines)
    topics = [e["topic"] for e in lines]
    assert topics[-3:] == [
        "gbserver.tasks.TaskCreated",
        "gbserver.tasks.TaskUpdated",
        "gbserver.paper.PaperCreated",
    ]
    after = gbserver("events", "--after", str(lines[0]["id"]), "--limit", "2", env=srv.env)
    assert [json.loads(x)["id"] for x in after.stdout.splitlines()] == [e["id"] for e in lines[1:3]]
    mine = gbserver("events", "--aggregate", task["id"], env=srv.env)
    assert [json.loads(x)["data"].get("changes") for x in mine.stdout.splitlines()] == [
        None,
        {"title": "b"},
    ]


def test_token_created_by_cli_works_on_a_running_server(
    fresh_server: Callable[..., ServerProcess],
) -> None:
    srv = fresh_server()
    out = gbserver("token", "create", "--user", "Erin@Example.com", env=srv.env)
    token = out.stdout.strip()
    assert token.startswith("gb_")
    with srv.client(token) as erin:
        r = erin.post("/api/tasks", json={"title": "from a cli token"})
        assert r.status_code == 201 and r.json()["owner"] == "erin@example.com"
        assert erin.get("/api/admin/stats").status_code == 403
    admin = gbserver(
        "token", "create", "--user", "boss@example.com", "--role", "admin", env=srv.env
    ).stdout.strip()
    with srv.client(admin) as boss:
        assert boss.get("/api/admin/stats").status_code == 200
    bad = gbserver("token", "create", "--user", "not-an-email", env=srv.env, check=False)
    assert bad.returncode == 2


def test_first_start_prints_an_admin_token_once(profile: Profile, tmp_path: Path) -> None:
    srv = ServerProcess(tmp_path / "data", profile.env())
    srv.env.pop("GB_ADMIN_TOKEN")
    srv.start()
    try:
        srv.stop()  # flushes the log
        tokens = re.findall(
            r"Admin token \(shown once, keep it\): (gb_\S+)", srv.log_path.read_text()
        )
        assert len(tokens) == 1
        srv.start()
        with srv.client(tokens[0]) as c:
            assert c.get("/api/admin/stats").status_code == 200
        with srv.client(ADMIN_TOKEN) as c:
            assert c.get("/api/tasks").status_code == 401
        srv.stop()
        assert len(re.findall(r"Admin token", srv.log_path.read_text())) == 1
    finally:
        srv.stop()


def test_cli_reports_bad_configuration_without_a_traceback(tmp_path: Path) -> None:
    bad_url = gbserver("events", env={"GB_DATABASE_URL": "mysql://x/y"}, check=False)
    assert bad_url.returncode == 2 and "GB_DATABASE_URL" in bad_url.stderr
    assert "Traceback" not in bad_url.stderr
    unreachable = gbserver(
        "events", env={"GB_DATABASE_URL": "postgresql://u:p@127.0.0.1:1/none"}, check=False
    )
    assert unreachable.returncode == 1 and "storage is unavailable" in unreachable.stderr
    assert "Traceback" not in unreachable.stderr
