from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests import profiles
from tests.fakellm import FakeLlm
from tests.profiles import Profile
from tests.server import ServerProcess, UserClient


@pytest.fixture(scope="session", params=profiles.selected())
def profile(request: pytest.FixtureRequest) -> Iterator[Profile]:
    """Every test that runs a server runs once per selected profile."""
    chosen = Profile(request.param)
    yield chosen
    chosen.cleanup()


@pytest.fixture(scope="session")
def server(profile: Profile, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One server per profile for the API tests; each test works as users of its own."""
    proc = ServerProcess(tmp_path_factory.mktemp("gb") / "data", profile.env()).start()
    yield proc
    proc.stop()


@pytest.fixture
def admin(server: ServerProcess) -> Iterator[httpx.Client]:
    with server.client() as client:
        yield client


@pytest.fixture
def make_user(server: ServerProcess, admin: httpx.Client) -> Iterator[Callable[..., UserClient]]:
    """Issues a token for a fresh user and returns a client acting as them."""
    clients: list[UserClient] = []

    def make(email: str | None = None, role: str = "user") -> UserClient:
        email = email or f"user-{uuid.uuid4().hex[:10]}@example.com"
        r = admin.post("/api/admin/tokens", json={"user": email, "role": role})
        assert r.status_code == 201, r.text
        client = server.client(r.json()["token"], email)
        clients.append(client)
        return client

    yield make
    for c in clients:
        c.close()


@pytest.fixture
def fresh_server(profile: Profile, tmp_path: Path) -> Iterator[Callable[..., ServerProcess]]:
    """Servers of a test's own (own data dir, database, topic), stopped at the end."""
    started: list[ServerProcess] = []

    def start(data_dir: Path | None = None, **env: str) -> ServerProcess:
        settings = {**profile.env(), **env}
        proc = ServerProcess(data_dir or tmp_path / f"data{len(started)}", settings).start()
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.stop()


@pytest.fixture
def llm() -> Iterator[FakeLlm]:
    fake = FakeLlm()
    yield fake
    fake.close()
