from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.server import ServerProcess


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One server for the API tests; each test works as users of its own."""
    proc = ServerProcess(tmp_path_factory.mktemp("gb") / "data").start()
    yield proc
    proc.stop()


@pytest.fixture
def admin(server: ServerProcess) -> Iterator[httpx.Client]:
    with server.client() as client:
        yield client


@pytest.fixture
def make_user(server: ServerProcess, admin: httpx.Client) -> Iterator[Callable[..., httpx.Client]]:
    """Issues a token for a fresh user and returns a client acting as them."""
    clients: list[httpx.Client] = []

    def make(email: str | None = None, role: str = "user") -> httpx.Client:
        email = email or f"user-{uuid.uuid4().hex[:10]}@example.com"
        r = admin.post("/api/admin/tokens", json={"user": email, "role": role})
        assert r.status_code == 201, r.text
        client = server.client(r.json()["token"])
        client.email = email  # type: ignore[attr-defined]
        clients.append(client)
        return client

    yield make
    for c in clients:
        c.close()


@pytest.fixture
def fresh_server(tmp_path: Path) -> Iterator[Callable[..., ServerProcess]]:
    """Servers of a test's own, on their own data dirs, stopped at the end."""
    started: list[ServerProcess] = []

    def start(data_dir: Path | None = None, **env: str) -> ServerProcess:
        proc = ServerProcess(data_dir or tmp_path / f"data{len(started)}", env).start()
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.stop()
