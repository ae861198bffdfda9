"""A real `gbserver serve` process for tests: started, stopped, killed, restarted on its data."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

ADMIN_TOKEN = "gb_test_admin_token_0123456789abcdefghijklmnop"
ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def gbserver(
    *args: str, env: dict[str, str], check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Runs the gbserver CLI as a user would, with the given environment."""
    return subprocess.run(
        [sys.executable, "-m", "infra.cli", *args],
        env={**os.environ, **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=check,
        timeout=300,
    )


class ServerProcess:
    def __init__(
        self, data_dir: Path, extra_env: dict[str, str] | None = None, args: tuple[str, ...] = ()
    ) -> None:
        self.data_dir = data_dir
        self.args = args
        self.env = {
            "GB_DATA_DIR": str(data_dir),
            "GB_ADMIN_TOKEN": ADMIN_TOKEN,
            "GB_LOG_LEVEL": "warning",
            **(extra_env or {}),
        }
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = data_dir.parent / f"{data_dir.name}-server.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> ServerProcess:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:  # the child keeps its own descriptor
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "infra.cli", "serve", "--port", str(self.port), *self.args],
                env={**os.environ, **self.env},
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited early:\n{self.log_path.read_text()[-3000:]}")
            try:
                if httpx.get(f"{self.url}/api/health", timeout=1.0).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"server did not become healthy:\n{self.log_path.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def client(self, token: str | None = ADMIN_TOKEN, email: str = "") -> UserClient:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return UserClient(base_url=self.url, headers=headers, timeout=30.0, email=email)


class UserClient(httpx.Client):
    """A client acting as one user, who it is (`email`) at hand for assertions."""

    def __init__(self, *, email: str = "", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.email = email
