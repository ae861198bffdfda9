"""The data directory's lock: one embedded server at a time on a data directory.

`gbserver serve` on the embedded profile (SQLite under GB_DATA_DIR) holds an exclusive flock
on `<data dir>/gbserver.lock` for as long as it runs, its pid written inside: a second server
on the same directory stops at once and names the holder. The OS releases an flock when its
process ends, however it ends: a killed server leaves no stale lock (the pid left in the file
means nothing then; the next holder overwrites it).

The commands that are safe beside a running server (the online `gbserver rebuild`, `events`,
`token create`) do not take it. The projection workers of the embedded profile take a second
lock, `gbserver-workers.lock`: `serve` (unless `--no-workers`) or `gbserver project`, one of
them, keeps the read models (two would apply every event twice, one of them for nothing).
"""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path

LOCK_FILE = "gbserver.lock"
WORKERS_LOCK_FILE = "gbserver-workers.lock"
SERVER_ADVICE = "stop it or set GB_DATA_DIR to another directory"
WORKERS_ADVICE = "it keeps the read models already; stop it, or serve with --no-workers"
READ_ATTEMPTS = 20  # the holder writes its pid just after taking the lock: wait for it
READ_PAUSE = 0.05


class DataDirBusy(Exception):
    """Another process holds the data directory."""

    def __init__(
        self, data_dir: Path, holder: str, pid: int | None, advice: str = SERVER_ADVICE
    ) -> None:
        self.data_dir = data_dir
        self.holder = holder
        self.pid = pid
        who = f"{holder} (pid {pid})" if pid is not None else "another gbserver process"
        super().__init__(f"{shown(data_dir)} is in use by {who}; {advice}")


def shown(path: Path) -> str:
    """A data directory as the user wrote it: `./data` rather than `data`."""
    text = str(path)
    if path.is_absolute() or text.startswith("."):
        return text
    return f"./{text}"


class DataDirLock:
    def __init__(
        self,
        data_dir: Path,
        holder: str = "gbserver serve",
        file: str = LOCK_FILE,
        advice: str = SERVER_ADVICE,
    ) -> None:
        self.data_dir = data_dir
        self.path = data_dir / file
        self.holder = holder
        self.advice = advice
        self._fd: int | None = None

    def acquire(self) -> None:
        """Takes the lock (never waits) or raises DataDirBusy naming the holder."""
        if self._fd is not None:
            return
        self.data_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                holder, pid = _holder(fd)
            finally:
                os.close(fd)
            raise DataDirBusy(self.data_dir, holder or self.holder, pid, self.advice) from None
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n{self.holder}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.ftruncate(fd, 0)  # a pid left behind would name a process that let go
            os.close(fd)

    def __enter__(self) -> DataDirLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _holder(fd: int) -> tuple[str, int | None]:
    """The holder's description and pid, as it wrote them (None: not written yet)."""
    for attempt in range(READ_ATTEMPTS):
        lines = os.pread(fd, 4096, 0).decode("utf-8", "replace").splitlines()
        if lines and lines[0].strip().isascii() and lines[0].strip().isdigit():
            return (lines[1].strip() if len(lines) > 1 else ""), int(lines[0])
        if attempt + 1 < READ_ATTEMPTS:
            time.sleep(READ_PAUSE)
    return "", None


def workers_lock(data_dir: Path, holder: str) -> DataDirLock:
    """The lock of the embedded profile's projection workers (see the module's docstring)."""
    return DataDirLock(data_dir, holder, WORKERS_LOCK_FILE, WORKERS_ADVICE)
