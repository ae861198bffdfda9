"""kill -9 of the server during a burst of concurrent writes: every acknowledged write
survives, and nothing half-written shows."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable

import httpx

from tests.server import ServerProcess, gbserver
from tests.workers import eventually


def test_acknowledged_writes_survive_kill_9(fresh_server: Callable[..., ServerProcess]) -> None:
    srv = fresh_server()
    acknowledged: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()

    def writer(n: int) -> None:
        with srv.client() as c:
            i = 0
            while not stop.is_set():
                try:
                    r = c.post("/api/tasks", json={"title": f"w{n}-{i}"})
                except httpx.TransportError:
                    return  # the server is gone
                if r.status_code in (201, 202):
                    with lock:
                        acknowledged.append(r.headers["location"].rsplit("/", 1)[-1])
                i += 1

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    time.sleep(2.0)
    srv.kill()
    stop.set()
    for t in threads:
        t.join()
    assert len(acknowledged) > 20

    logged = [json.loads(line) for line in gbserver("events", env=srv.env).stdout.splitlines()]
    created = {e["aggregate_id"] for e in logged if e["topic"] == "gbserver.tasks.TaskCreated"}
    assert set(acknowledged) <= created

    srv.start()
    with srv.client() as c:

        def all_visible() -> bool:
            total = c.get("/api/tasks", params={"limit": 1}).json()["pagination"]["total"]
            return bool(total == len(created))

        eventually(all_visible, 60, "the read model to show every logged task")
        for task_id in acknowledged:
            r = c.get(f"/api/tasks/{task_id}")
            assert r.status_code == 200 and r.json()["version"] == 1
