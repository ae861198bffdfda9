"""The `gbserver` command as a newcomer meets it: help, errors, one server per data directory,
a busy port, GB_HOST/GB_PORT, and a quiet first install (embedded profile)."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import httpx
import pytest

from infra.bootstrap import PROJECTIONS
from infra.config import DOCUMENTED, Settings
from infra.datadir import LOCK_FILE, DataDirBusy, DataDirLock, shown
from tests.server import ADMIN_TOKEN, ROOT, ServerProcess, free_port, gbserver

COMMANDS = ("serve", "rebuild", "events", "token", "relay", "project")
# The embedded profile whatever the caller's environment says.
EMBEDDED = {"GB_DATABASE_URL": "", "GB_KAFKA_BOOTSTRAP": "", "GB_HOST": "", "GB_PORT": ""}


def embedded(data_dir: Path, **env: str) -> dict[str, str]:
    return {**EMBEDDED, "GB_DATA_DIR": str(data_dir), "GB_LOG_LEVEL": "info", **env}


@pytest.fixture
def srv(tmp_path: Path) -> Iterator[ServerProcess]:
    server = ServerProcess(tmp_path / "data", EMBEDDED).start()
    yield server
    server.stop()


# --- help ---------------------------------------------------------------------------------


def test_gbserver_alone_prints_a_short_help() -> None:
    out = gbserver(env={}, check=False)
    assert out.returncode == 0 and out.stderr == ""
    assert out.stdout.startswith("usage: gbserver <command>")
    for name in COMMANDS:  # one line each
        assert re.search(rf"^    {name} +\S", out.stdout, re.M), name
    assert "`gbserver <command> --help`" in out.stdout
    assert len(out.stdout.splitlines()) < 30
    assert gbserver("--help", env={}).stdout == out.stdout


def test_token_alone_prints_its_commands() -> None:
    out = gbserver("token", env={}, check=False)
    assert out.returncode == 0 and out.stderr == ""
    assert out.stdout.startswith("usage: gbserver token") and "create" in out.stdout


def test_serve_help_shows_every_option_with_its_default_and_variable() -> None:
    out = gbserver("serve", "--help", env={})
    assert out.stderr == ""
    text = out.stdout
    assert re.search(r"--host HOST +address to listen on \[GB_HOST; default: 127\.0\.0\.1\]", text)
    assert re.search(r"--port PORT +port to listen on \[GB_PORT; default: 8080\]", text)
    assert re.search(r"--no-workers +.*\n? *.*\[default: run them in the server\]", text)
    settings = text.split("settings (environment variables", 1)[1]
    flat = re.sub(r"\s+", " ", settings)
    for d in DOCUMENTED:  # every variable, its meaning and default
        assert f"{d.name} {d.meaning} [default: {d.default or 'empty'}]" in flat, d.name
    assert "GB_DATA_DIR the embedded stores" in flat and "[default: ./data]" in flat


def test_the_documented_settings_are_the_ones_read_with_their_defaults() -> None:
    source = Path(sys.modules[Settings.__module__].__file__ or "").read_text()
    read = set(re.findall(r'env(?:\.get\(|, )"(GB_[A-Z0-9_]+)"', source))
    assert read == {d.name for d in DOCUMENTED}
    defaults = Settings.from_env({})
    derived = {
        "GB_LOG_FORMAT": "text on a terminal, else json",
        "GB_KAFKA_GROUP": "<topic>.projectors",
    }
    for d in DOCUMENTED:
        if d.name in derived:
            assert d.default == derived[d.name]
            continue
        value = getattr(defaults, d.name.removeprefix("GB_").lower())
        if isinstance(value, Path):
            assert Path(d.default) == value, d.name
        elif isinstance(value, int | float):
            assert float(d.default) == value, d.name
        else:
            assert d.default == value, d.name


def test_rebuild_help_lists_the_projections() -> None:
    out = gbserver("rebuild", "--help", env={})
    assert out.stderr == ""
    names = [p.name for p in PROJECTIONS]
    assert len(names) >= 6
    assert f"projections: {', '.join(names)}" in out.stdout
    assert "safe beside a running server" in out.stdout


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("nope",), "invalid choice: 'nope'"),
        (("serve", "--port", "x"), "must be a port number (1-65535), got 'x'"),
        (("serve", "--port", "70000"), "must be a port number (1-65535), got '70000'"),
        (("serve", "--bogus"), "unrecognized arguments: --bogus"),
        (("token", "create"), "the following arguments are required: --user"),
        (("token", "create", "--user", "a@b.c", "--role", "king"), "invalid choice: 'king'"),
        (("events", "--after", "x"), "invalid int value: 'x'"),
        (("rebuild", "nope"), "unknown projection nope (known: tasks"),
    ],
)
def test_bad_arguments_are_one_line_on_stderr_and_exit_2(
    tmp_path: Path, args: tuple[str, ...], says: str
) -> None:
    out = gbserver(*args, env=embedded(tmp_path / "data"), check=False)
    assert out.returncode == 2
    assert out.stdout == ""
    assert len(out.stderr.splitlines()) == 1, out.stderr
    assert out.stderr.startswith("gbserver") and says in out.stderr
    assert "usage:" not in out.stderr and "Traceback" not in out.stderr
    assert not (tmp_path / "data").exists()  # refused before opening anything


@pytest.mark.parametrize(
    ("name", "value"), [("GB_PORT", "x"), ("GB_PORT", "0"), ("GB_PORT", "65536")]
)
def test_bad_settings_are_one_line_on_stderr_and_exit_2(
    tmp_path: Path, name: str, value: str
) -> None:
    out = gbserver("serve", env=embedded(tmp_path / "data", **{name: value}), check=False)
    assert out.returncode == 2 and out.stdout == ""
    assert len(out.stderr.splitlines()) == 1 and out.stderr.startswith(f"gbserver: {name} ")
    assert not (tmp_path / "data").exists()


def test_token_create_says_what_is_wrong_as_the_api_does(tmp_path: Path) -> None:
    out = gbserver("token", "create", "--user", "bob", env=embedded(tmp_path / "data"), check=False)
    assert (out.returncode, out.stdout) == (2, "")
    assert out.stderr == (
        "gbserver token create: `user`: expected an email address such as ana@example.com,"
        " got 'bob'\n"
    )
    assert not (tmp_path / "data").exists()


# --- one server per data directory --------------------------------------------------------


def test_the_data_dir_lock_names_its_holder(tmp_path: Path) -> None:
    first = DataDirLock(tmp_path / "data")
    first.acquire()
    try:
        with pytest.raises(DataDirBusy) as busy:
            DataDirLock(tmp_path / "data").acquire()
        assert busy.value.pid == os.getpid() and busy.value.holder == "gbserver serve"
    finally:
        first.release()
    with DataDirLock(tmp_path / "data"):  # free once released
        pass
    assert str(DataDirBusy(Path("data"), "gbserver serve", 1234)) == (
        "./data is in use by gbserver serve (pid 1234);"
        " stop it or set GB_DATA_DIR to another directory"
    )
    assert shown(Path("./data")) == "./data" and shown(Path("/srv/gb")) == "/srv/gb"


def test_a_second_server_on_the_same_data_dir_stops_naming_the_first(
    srv: ServerProcess,
) -> None:
    assert srv.proc is not None
    env = {**srv.env, "GB_ADMIN_TOKEN": ""}  # would print a token, had it opened the stores
    started = time.monotonic()
    second = gbserver("serve", "--port", str(free_port()), env=env, check=False)
    assert time.monotonic() - started < 10
    assert second.returncode == 1 and second.stdout == ""
    assert second.stderr == (
        f"gbserver: {srv.data_dir} is in use by gbserver serve (pid {srv.proc.pid});"
        " stop it or set GB_DATA_DIR to another directory\n"
    )
    with srv.client() as c:  # the first keeps serving
        r = c.post("/api/tasks", json={"title": "still here"})
        assert r.status_code == 201, r.text
        assert c.get(f"/api/tasks/{r.json()['id']}").status_code == 200


def test_a_killed_server_leaves_no_stale_lock(srv: ServerProcess) -> None:
    with srv.client() as c:
        task = c.post("/api/tasks", json={"title": "before the kill"}).json()
    srv.kill()  # SIGKILL: no shutdown hook runs
    assert (srv.data_dir / LOCK_FILE).exists()
    srv.start()
    assert srv.proc is not None
    assert (srv.data_dir / LOCK_FILE).read_text().split("\n")[0] == str(srv.proc.pid)
    with srv.client() as c:
        assert c.get(f"/api/tasks/{task['id']}").json()["title"] == "before the kill"


def test_commands_that_are_safe_beside_a_live_server_still_run(srv: ServerProcess) -> None:
    assert srv.proc is not None
    with srv.client() as c:
        ids = [c.post("/api/tasks", json={"title": f"t{i}"}).json()["id"] for i in range(20)]
        before = c.get("/api/tasks", params={"limit": 100}).json()["data"]
    rebuilt = gbserver("rebuild", env=srv.env)  # online: a shadow store, then a swap
    for p in PROJECTIONS:
        assert f"{p.name}:" in rebuilt.stdout
    rebuilt_one = gbserver("rebuild", "tasks", env=srv.env)
    assert "tasks: " in rebuilt_one.stdout
    events = gbserver("events", "--limit", "5", env=srv.env)
    assert len(events.stdout.splitlines()) == 5
    token = gbserver("token", "create", "--user", "beside@example.com", env=srv.env)
    with srv.client(token.stdout.strip()) as user:
        assert user.get("/api/tasks").status_code == 200
    with srv.client() as c:
        assert c.get("/api/tasks", params={"limit": 100}).json()["data"] == before
        assert {t["id"] for t in before} == set(ids)
        assert c.post("/api/tasks", json={"title": "after"}).status_code == 201
    # The server still holds the data directory.
    refused = gbserver("serve", "--port", str(free_port()), env=srv.env, check=False)
    assert refused.returncode == 1 and f"(pid {srv.proc.pid})" in refused.stderr


def test_one_process_keeps_the_embedded_read_models(srv: ServerProcess, tmp_path: Path) -> None:
    """`gbserver project` beside a server that runs its own workers would apply every event
    twice; beside `serve --no-workers` it is the server's projection worker."""
    assert srv.proc is not None
    refused = gbserver("project", env=srv.env, check=False)
    assert refused.returncode == 1 and refused.stdout == ""
    assert refused.stderr == (
        f"gbserver: {srv.data_dir} is in use by gbserver serve (pid {srv.proc.pid});"
        " it keeps the read models already; stop it, or serve with --no-workers\n"
    )
    api = ServerProcess(tmp_path / "apart", EMBEDDED, args=("--no-workers",))
    api.data_dir.mkdir(parents=True)
    log = tmp_path / "projector.log"
    with log.open("wb") as out:
        projector = subprocess.Popen(
            [sys.executable, "-m", "infra.cli", "project"],
            env={**os.environ, **api.env, "GB_LOG_LEVEL": "info"},
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=out,
        )
    try:
        api.start()
        deadline = time.monotonic() + 120
        while b"running projection-" not in log.read_bytes():  # its workers have started
            assert projector.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        with api.client() as c:  # answered once the projector has applied it
            r = c.post("/api/tasks", json={"title": "projected apart"})
            assert r.status_code == 201, r.text
        second = gbserver("project", env=api.env, check=False)
        assert second.returncode == 1 and f"gbserver project (pid {projector.pid})" in second.stderr
    finally:
        api.stop()
        projector.terminate()
        projector.wait(timeout=20)


# --- the address to listen on -------------------------------------------------------------


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        yield int(taken.getsockname()[1])


@pytest.mark.parametrize("via", ["--port", "GB_PORT"])
def test_a_busy_port_is_one_line_before_anything_starts(
    tmp_path: Path, taken_port: int, via: str
) -> None:
    env = embedded(tmp_path / "data", GB_ADMIN_TOKEN="")  # a first start would print a token
    args = ("serve", "--port", str(taken_port)) if via == "--port" else ("serve",)
    if via == "GB_PORT":
        env["GB_PORT"] = str(taken_port)
    out = gbserver(*args, env=env, check=False)
    assert out.returncode == 1
    assert out.stdout == ""  # no admin token
    assert out.stderr == (
        f"gbserver: cannot listen on 127.0.0.1:{taken_port}: address already in use"
        " (set --port or GB_PORT)\n"
    )
    assert not list((tmp_path / "data").glob("*.sqlite*"))  # no store was opened
    # Nothing held on: the same data directory serves on a free port.
    srv = ServerProcess(tmp_path / "data", EMBEDDED).start()
    srv.stop()


def test_an_address_not_of_this_host_is_one_line(tmp_path: Path) -> None:
    out = gbserver(
        "serve", "--host", "192.0.2.1", env=embedded(tmp_path / "data"), check=False
    )  # TEST-NET-1: never a local address
    assert out.returncode == 1 and out.stdout == ""
    assert re.fullmatch(
        r"gbserver: cannot listen on 192\.0\.2\.1:8080: .+ \(set --host or GB_HOST\)\n",
        out.stderr,
    ), out.stderr


def test_gb_host_and_gb_port_are_the_defaults_of_serve(tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "serve.log"
    env = {**os.environ, **embedded(tmp_path / "data", GB_PORT=str(port), GB_HOST="127.0.0.1")}
    env["GB_ADMIN_TOKEN"] = ADMIN_TOKEN
    env["GB_LOG_FORMAT"] = "text"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "infra.cli", "serve"],
            env=env,
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, log.read_text()
            try:
                if httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
    finally:
        proc.terminate()
        proc.wait(timeout=15)
    text = log.read_text()
    said = re.search(r"serving on (http://\S+)", text)
    assert said is not None, text
    assert urlparse(said.group(1)).port == port
    # Said once uvicorn serves on the socket taken before the stores opened.
    assert text.index("Application startup complete") < text.index("serving on")


# --- the first install --------------------------------------------------------------------


def _index_reachable() -> bool:
    url = os.environ.get("PIP_INDEX_URL") or "https://pypi.org/simple"
    host = urlparse(url).hostname or "pypi.org"
    try:
        socket.create_connection((host, 443), timeout=3).close()
    except OSError:
        return False
    return True


def test_the_first_install_prints_nothing(tmp_path: Path) -> None:
    """scripts/_venv.sh on a copy of the project, into a fresh venv of its own."""
    if not _index_reachable():
        pytest.skip("the package index is not reachable")
    copy = tmp_path / "project"
    copy.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, copy / name)
    for package in ("domain", "commands", "projections", "api", "infra", "scripts"):
        shutil.copytree(
            ROOT / package, copy / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "PYTHON"))}
    done = subprocess.run(
        ["bash", "-c", 'source scripts/_venv.sh ""'],
        cwd=copy,
        env={**env, "PYTHON": sys.executable},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "" and done.stderr == ""
    assert (copy / ".venv" / "bin" / "gbserver").exists()
