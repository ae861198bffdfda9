"""The README runs as written: every ```sh block, in order, as a newcomer would paste it.

A block that starts a server (`./scripts/serve`) runs in a fresh shell of its own, in the
background, until `/api/health` answers 200; the first such server's printed admin token is
captured. Every other block runs, in order, in one fresh session shell (bash with
`set -euo pipefail`: an unset variable or a failing command fails the test), once the one line
the reader edits (`export GB=... TOKEN=...`) holds that server's address and token. A `#=>`
comment after a command is the command's output, compared exactly; `…` stands for anything
(ids, times). Only `./scripts/test` is not run here: it is this suite (CI runs it through
`.ci/run`). Shells get no `GB_*` variable but a data directory and a port of their own, so the
README's `./data` and port 8080 stay untouched.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from infra.config import DOCUMENTED
from tests import profiles
from tests.server import ROOT, free_port

README = ROOT / "README.md"
NOT_RUN = {"./scripts/test": "the test suite itself: CI runs it through .ci/run"}
SCALED = "scripts/services up"  # a block that needs the scaled profile's services
EDITED_LINE = "export GB="
MARK = "\x1e"


@dataclass
class Command:
    text: str  # one logical line (continuations joined)
    expected: list[str] = field(default_factory=list)


@dataclass
class Block:
    number: int
    source: str

    @property
    def starts_server(self) -> bool:
        return "./scripts/serve" in self.source

    def commands(self) -> list[Command]:
        commands: list[Command] = []
        pending = ""
        for line in self.source.splitlines():
            if line.startswith("#=>"):
                assert commands and not pending, f"block {self.number}: output without command"
                commands[-1].expected.append(line[3:].strip())
                continue
            pending += line
            if line.endswith("\\"):
                pending += "\n"
                continue
            if pending.strip() and not pending.lstrip().startswith("#"):
                commands.append(Command(pending))
            pending = ""
        assert not pending, f"block {self.number} ends inside a continued line"
        return commands


def sh_blocks() -> list[Block]:
    found = re.findall(r"^```(\w*)\n(.*?)^```", README.read_text(), re.M | re.S)
    return [Block(n, body) for n, (lang, body) in enumerate(found) if lang == "sh"]


def clean_env(**extra: str) -> dict[str, str]:
    """A newcomer's environment: none of our settings, none of the suite's."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GB_", "PYTEST"))}
    return {**env, **extra}


def matches(expected: list[str], actual: str) -> bool:
    pattern = ".*?".join(re.escape(part) for part in "\n".join(expected).split("…"))
    return re.fullmatch(pattern, actual.strip("\n"), re.S) is not None


class Server:
    def __init__(self, block: Block, data_dir: Path, log: Path) -> None:
        self.port = free_port()
        self.data_dir = data_dir
        self.log = log
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(
                ["bash", "-c", block.source],
                cwd=ROOT,
                env=clean_env(GB_DATA_DIR=str(data_dir), GB_PORT=str(self.port)),
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"server exited:\n{self.log.read_text()[-3000:]}"
            try:
                if httpx.get(f"{self.url}/api/health", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"not healthy in {timeout}s:\n{self.log.read_text()[-3000:]}")

    def admin_token(self) -> str:
        found = re.search(r"Admin token \(shown once, keep it\): (gb_\S+)", self.log.read_text())
        assert found, f"no admin token printed:\n{self.log.read_text()[-2000:]}"
        return found.group(1)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


@pytest.fixture
def servers() -> Iterator[list[Server]]:
    started: list[Server] = []
    yield started
    for server in started:
        server.stop()


def test_the_readme_blocks_are_all_accounted_for() -> None:
    blocks = sh_blocks()
    assert blocks[0].source.strip() == "./scripts/serve", "the first command serves"
    assert blocks[1].source.strip() == "./scripts/test", "the second runs the tests"
    edited = [c for b in blocks for c in b.commands() if c.text.startswith(EDITED_LINE)]
    assert len(edited) == 1, "one line, and only one, is the reader's to edit"
    outputs = [c for b in blocks for c in b.commands() if c.expected]
    assert len(outputs) >= 10, "the walk-through shows what each step answers"
    assert "../shared" not in README.read_text(), "the README links only inside the repository"


def test_the_readme_runs_as_written(tmp_path: Path, servers: list[Server]) -> None:
    session: list[Block] = []
    for block in sh_blocks():
        if block.source.strip() in NOT_RUN:
            continue
        if SCALED in block.source and "scaled" not in profiles.selected():
            continue  # needs PostgreSQL and Kafka: run with the scaled profile
        if block.starts_server:
            server = Server(block, tmp_path / f"data{block.number}", tmp_path / f"s{block.number}")
            servers.append(server)
            server.wait_healthy(timeout=180 if SCALED in block.source else 60)
            if len(servers) > 1:
                server.stop()  # it served: the session talks to the first one
            continue
        session.append(block)
    first = servers[0]
    token = first.admin_token()
    script, expectations = ["set -euo pipefail"], {}
    for block in session:
        for command in block.commands():
            text = command.text
            if text.startswith(EDITED_LINE):
                text = f"export GB={first.url} TOKEN={token}"
            script.append(f"printf '\\n{MARK}%s\\n' {len(script)}")
            expectations[len(script) - 1] = command
            script.append(text)
    result = subprocess.run(
        ["bash", "-c", "\n".join(script)],
        cwd=ROOT,
        env=clean_env(GB_DATA_DIR=str(first.data_dir)),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    sections = re.findall(rf"\n{MARK}(\d+)\n(.*?)(?=\n{MARK}|\Z)", result.stdout, re.S)
    outputs = {int(mark): out for mark, out in sections}
    for mark, command in expectations.items():
        assert mark in outputs, (
            f"the session stopped before:\n{command.text}\nexit {result.returncode}\n"
            f"stderr:\n{result.stderr[-3000:]}"
        )
        if command.expected:
            assert matches(command.expected, outputs[mark]), (
                f"{command.text}\nanswered:\n{outputs[mark]}\nthe README shows:\n"
                + "\n".join(command.expected)
            )
    assert result.returncode == 0, result.stderr[-3000:]


@pytest.mark.parametrize(
    ("expected", "actual", "ok"),
    [
        (['{"id":"…","v":1}'], '{"id":"abc","v":1}\n', True),
        (['{"id":"…","v":1}'], '{"id":"abc","v":2}', False),
        (["a", "b"], "a\nb\n", True),
        (["a"], "a\nb", False),
        (["x.y"], "xzy", False),  # no regex leaks from the README's text
    ],
)
def test_outputs_compare_exactly_but_for_ellipses(
    expected: list[str], actual: str, ok: bool
) -> None:
    assert matches(expected, actual) is ok


def test_the_settings_table_lists_every_setting_with_its_default() -> None:
    rows = {
        m.group(1): m.group(2)
        for m in re.finditer(r"^\| `(GB_\w+)` \| (.*?) \|", README.read_text(), re.M)
    }
    for setting in DOCUMENTED:
        assert setting.name in rows, f"{setting.name} is missing from the README's settings"
        shown = rows[setting.name]
        if not setting.default:
            assert "empty" in shown, (setting.name, shown)
        elif " " not in setting.default:
            assert f"`{setting.default}`" in shown, (setting.name, shown)
    assert set(rows) == {s.name for s in DOCUMENTED}, "the README documents settings that are not"
