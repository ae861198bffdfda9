"""Issue 8: `/metrics` in Prometheus' text format, and one structured log line per request."""

from __future__ import annotations

import io
import json
import logging
import re
import socket
import sys
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from commands.admin import BOOTSTRAP_USER
from infra.config import ConfigError, Settings
from infra.logs import JsonFormatter
from infra.metrics import Metrics
from tests.profiles import Profile
from tests.server import ADMIN_TOKEN, ServerProcess, UserClient, free_port, gbserver

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(text: str) -> Samples:
    """Every sample of a scrape, read with the client library's own parser."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def scrape(client: httpx.Client) -> Samples:
    r = client.get("/metrics")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain; version=")
    return parse(r.text)


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def labelled(samples: Samples, name: str, label: str) -> set[str]:
    return {dict(labels)[label] for sample, labels in samples if sample == name}


# --- /metrics on the API -------------------------------------------------------------------


def test_metrics_are_admin_only(
    server: ServerProcess, make_user: Callable[..., UserClient]
) -> None:
    anonymous = httpx.get(f"{server.url}/metrics")
    assert anonymous.status_code == 401, anonymous.text
    assert anonymous.json()["error"]["code"] == "UNAUTHORIZED"
    forbidden = make_user().get("/metrics")
    assert forbidden.status_code == 403, forbidden.text
    assert forbidden.json()["error"]["code"] == "FORBIDDEN"
    spec = httpx.get(f"{server.url}/schema/openapi.json").json()
    assert "/metrics" not in spec["paths"]


def test_requests_are_counted_by_route_template_and_status(
    admin: httpx.Client, make_user: Callable[..., UserClient]
) -> None:
    user = make_user()
    task = user.post("/api/tasks", json={"title": "measured"}).json()
    before = scrape(admin)
    assert user.get(f"/api/tasks/{task['id']}").status_code == 200
    assert user.get(f"/api/tasks/{uuid.uuid4()}").status_code == 404
    assert user.get(f"/api/nowhere/{uuid.uuid4()}").status_code == 404
    after = scrape(admin)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    route = "/api/tasks/{task_id}"
    requests = "gbserver_http_requests_total"
    assert delta(requests, method="GET", route=route, status="200") == 1
    assert delta(requests, method="GET", route=route, status="404") == 1
    assert delta(requests, method="GET", route="unmatched", status="404") >= 1
    durations = "gbserver_http_request_duration_seconds_count"
    assert delta(durations, method="GET", route=route) == 2
    assert (
        value(
            after,
            "gbserver_http_request_duration_seconds_bucket",
            method="GET",
            route=route,
            le="+Inf",
        )
        >= 2
    )
    # Never a raw path: ids would make a series per resource.
    routes = labelled(after, requests, "route")
    assert "/api/tasks/{task_id}" in routes and "unmatched" in routes
    assert not any(re.search(r"[0-9a-f]{8}-[0-9a-f]{4}-", r) for r in routes), routes


def test_events_appended_are_counted_per_topic(
    admin: httpx.Client, make_user: Callable[..., UserClient]
) -> None:
    user = make_user()
    end = _log_end(admin)
    before = scrape(admin)
    ids = [user.post("/api/tasks", json={"title": f"t{i}"}).json()["id"] for i in range(3)]
    user.put(f"/api/tasks/{ids[0]}", json={"status": "completed"})
    after = scrape(admin)
    appended = admin.get("/api/admin/events", params={"after": end, "limit": 200}).json()["data"]
    topics = Counter(e["topic"] for e in appended)
    assert sum(topics.values()) >= 4
    for topic, count in topics.items():
        name = "gbserver_events_appended_total"
        assert value(after, name, topic=topic) - value(before, name, topic=topic) == count, topic


def _log_end(admin: httpx.Client) -> int:
    after = 0
    while True:
        page = admin.get("/api/admin/events", params={"after": after, "limit": 200}).json()
        if not page["data"]:
            return after
        after = page["next_after"]


def test_writes_answered_202_are_counted(profile: Profile, tmp_path: Path) -> None:
    """No projector runs in this server: every write waits out GB_CONSISTENCY_TIMEOUT."""
    env = {**profile.env(), "GB_CONSISTENCY_TIMEOUT": "0.2"}
    srv = ServerProcess(tmp_path / "data", env, args=("--no-workers",)).start()
    try:
        with srv.client() as c:
            assert value(scrape(c), "gbserver_consistency_timeouts_total") == 0
            for _ in range(2):
                r = c.post("/api/tasks", json={"title": "late"})
                assert r.status_code == 202, r.text
            samples = scrape(c)
            assert value(samples, "gbserver_consistency_timeouts_total") == 2
            requests = "gbserver_http_requests_total"
            assert value(samples, requests, method="POST", route="/api/tasks", status="202") == 2
    finally:
        srv.stop()


def test_metrics_listen_serves_without_auth(
    fresh_server: Callable[..., ServerProcess],
) -> None:
    port = free_port()
    srv = fresh_server(GB_METRICS_LISTEN=f"127.0.0.1:{port}")
    with srv.client() as c:
        assert c.get("/api/tasks").status_code == 200
    r = httpx.get(f"http://127.0.0.1:{port}/metrics")
    assert r.status_code == 200
    samples = parse(r.text)
    requests = "gbserver_http_requests_total"
    assert value(samples, requests, method="GET", route="/api/tasks", status="200") >= 1
    assert httpx.get(f"{srv.url}/metrics").status_code == 401  # the API's stays admin-only


def test_metrics_listen_in_use_is_a_startup_error(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {
            "GB_DATA_DIR": str(tmp_path),
            "GB_ADMIN_TOKEN": ADMIN_TOKEN,
            "GB_METRICS_LISTEN": f"127.0.0.1:{port}",
        }
        refused = gbserver("serve", "--port", str(free_port()), env=env, check=False)
    assert refused.returncode == 2, refused.stderr
    assert f"GB_METRICS_LISTEN 127.0.0.1:{port}" in refused.stderr


# --- the collectors, fed directly --------------------------------------------------------


@dataclass
class _Projection:
    name: str
    state: str
    lag_events: int
    lag_seconds: float | None
    position: int


@dataclass
class _Worker:
    name: str
    restarts: int


class _OldWorker:
    name = "listener"  # a worker that does not count its restarts


def test_projection_and_worker_families() -> None:
    projections = [
        _Projection("tasks", "running", 0, 0.0, 41),
        _Projection("paper", "stalled", 7, None, 12),
    ]
    workers: list[Any] = [_Worker("relay", 2), _Worker("relay", 1), _OldWorker()]
    metrics = Metrics(projections=lambda: projections, workers=lambda: workers)
    metrics.appended(9, Counter({"domain.tasks:Task.Created": 2, "domain.paper:Doc.Edited": 1}))
    metrics.consistency_timed_out()
    body, content_type = metrics.render()
    assert content_type.startswith("text/plain; version=")
    s = parse(body.decode())

    assert value(s, "gbserver_projection_lag_events", projection="paper") == 7
    assert value(s, "gbserver_projection_position", projection="tasks") == 41
    assert value(s, "gbserver_projection_lag_seconds", projection="tasks") == 0.0
    assert ("gbserver_projection_lag_seconds", (("projection", "paper"),)) not in s
    paper_states = {
        state: value(s, "gbserver_projection_state", projection="paper", state=state)
        for state in ("running", "catching_up", "rebuilding", "stalled")
    }
    assert paper_states == {"running": 0, "catching_up": 0, "rebuilding": 0, "stalled": 1}
    assert value(s, "gbserver_projection_state", projection="tasks", state="running") == 1
    assert value(s, "gbserver_worker_restarts_total", worker="relay") == 3
    assert value(s, "gbserver_worker_restarts_total", worker="listener") == 0
    assert value(s, "gbserver_events_appended_total", topic="domain.tasks:Task.Created") == 2
    assert value(s, "gbserver_consistency_timeouts_total") == 1


def test_registries_are_per_instance_and_a_failing_source_keeps_the_scrape() -> None:
    def broken() -> list[Any]:
        raise RuntimeError("read store is down")

    one, two = Metrics(projections=broken), Metrics()
    one.request("GET", "/api/tasks", 200, 0.01)
    s = parse(one.render()[0].decode())
    assert (
        value(s, "gbserver_http_requests_total", method="GET", route="/api/tasks", status="200")
        == 1
    )
    assert not labelled(s, "gbserver_projection_state", "projection")
    other = parse(two.render()[0].decode())
    assert (
        value(other, "gbserver_http_requests_total", method="GET", route="/api/tasks", status="200")
        == 0
    )


# --- logs ----------------------------------------------------------------------------------


def test_one_json_line_per_request_without_body_or_token(
    fresh_server: Callable[..., ServerProcess],
) -> None:
    srv = fresh_server(GB_LOG_LEVEL="info", GB_LOG_FORMAT="json")
    secret_title = f"body-{uuid.uuid4().hex}"
    with srv.client() as c:
        created = c.post(
            "/api/tasks", json={"title": secret_title}, headers={"X-Request-ID": "obs-create"}
        )
        assert created.status_code == 201, created.text
        task_id = created.json()["id"]
        assert (
            c.get(f"/api/tasks/{task_id}", headers={"X-Request-ID": "obs-read"}).status_code == 200
        )
    assert (
        httpx.get(f"{srv.url}/api/tasks", headers={"X-Request-ID": "obs-anon"}).status_code == 401
    )
    srv.stop()  # its log is complete

    text = srv.log_path.read_text()
    lines = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    by_id = {line.get("request_id"): line for line in lines if line["logger"] == "gbserver.http"}
    read = by_id["obs-read"]
    assert {k: read[k] for k in ("method", "route", "status", "user", "level")} == {
        "method": "GET",
        "route": "/api/tasks/{task_id}",
        "status": 200,
        "user": BOOTSTRAP_USER,
        "level": "info",
    }
    assert isinstance(read["duration_ms"], int | float) and read["duration_ms"] >= 0
    assert read["ts"].endswith("Z") and "T" in read["ts"]
    assert by_id["obs-create"]["status"] == 201 and by_id["obs-create"]["route"] == "/api/tasks"
    assert by_id["obs-anon"]["status"] == 401 and by_id["obs-anon"]["user"] is None
    # No bodies, no tokens, no headers; uvicorn's access log is off, its error log is ours.
    assert ADMIN_TOKEN not in text and secret_title not in text and task_id not in read.values()
    assert not any("authorization" in json.dumps(line).lower() for line in lines)
    loggers = {line["logger"] for line in lines}
    assert "uvicorn.access" not in loggers and "uvicorn.error" in loggers
    assert len([line for line in lines if line["logger"] == "gbserver.http"]) == len(by_id)


def test_json_formatter_carries_extras_and_tracebacks() -> None:
    record = logging.LogRecord(
        "gbserver.x", logging.ERROR, __file__, 1, "failed %s", ("once",), None
    )
    record.request_id = "r1"
    try:
        raise ValueError("boom")
    except ValueError:
        record.exc_info = sys.exc_info()
    line = json.loads(JsonFormatter().format(record))
    assert line["message"] == "failed once" and line["level"] == "error"
    assert line["logger"] == "gbserver.x" and line["request_id"] == "r1"
    assert "ValueError: boom" in line["exc"] and "Traceback" in line["exc"]
    assert "args" not in line and "msg" not in line


def test_log_settings_are_validated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    refused = gbserver(
        "serve", env={"GB_DATA_DIR": str(tmp_path), "GB_LOG_FORMAT": "xml"}, check=False
    )
    assert refused.returncode == 2 and "GB_LOG_FORMAT" in refused.stderr, refused.stderr
    for name, bad in (
        ("GB_LOG_FORMAT", "yaml"),
        ("GB_LOG_LEVEL", "loud"),
        ("GB_METRICS_LISTEN", "9100"),
        ("GB_METRICS_LISTEN", "host:http"),
        ("GB_METRICS_LISTEN", "127.0.0.1:70000"),
        ("GB_METRICS_LISTEN", "::1:9100"),
    ):
        with pytest.raises(ConfigError, match=name):
            Settings.from_env({name: bad})
    assert Settings.from_env({"GB_LOG_FORMAT": "JSON"}).log_format == "json"
    assert Settings.from_env({"GB_LOG_LEVEL": "Warning"}).log_level == "warning"
    assert Settings.from_env({"GB_METRICS_LISTEN": ":9100"}).metrics_address() == ("0.0.0.0", 9100)
    assert Settings.from_env({"GB_METRICS_LISTEN": "[::1]:9100"}).metrics_address() == ("::1", 9100)
    assert Settings.from_env({}).metrics_address() is None
    monkeypatch.setattr(sys, "stderr", io.StringIO())  # not a terminal: a log collector
    assert Settings.from_env({}).log_format == "json"
