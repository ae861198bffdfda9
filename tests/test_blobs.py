"""The blob stores (commands.ports.BlobStore): one suite for the file store (infra.blobs) and
the S3 store (infra.s3blobs), the latter against a real S3 server named by
GB_TEST_S3_ENDPOINT (`scripts/services up s3`); without it the S3 cases skip."""

from __future__ import annotations

import contextlib
import hashlib
import os
import socket
import threading
import time
import tracemalloc
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from commands.ports import (
    Blob,
    BlobMissing,
    BlobStore,
    BlobTooLarge,
    StoreUnavailable,
    StoreUnreachable,
)
from infra.blobs import FileBlobStore
from infra.s3blobs import PART, S3BlobStore, S3Writer
from tests.server import ServerProcess, free_port

MiB = 1024 * 1024
S3_ENDPOINT = os.environ.get("GB_TEST_S3_ENDPOINT", "").strip()
S3_ACCESS_KEY = os.environ.get("GB_TEST_S3_ACCESS_KEY", "gbserver")
S3_SECRET_KEY = os.environ.get("GB_TEST_S3_SECRET_KEY", "gbserver-secret")
NO_S3 = "GB_TEST_S3_ENDPOINT is not set (`scripts/services up s3` starts an S3 server)"


def new_bucket() -> str:
    return f"gbtest-{uuid.uuid4().hex[:16]}"


def s3_store(endpoint: str = S3_ENDPOINT, bucket: str | None = None) -> S3BlobStore:
    return S3BlobStore(
        endpoint,
        bucket or new_bucket(),
        access_key=S3_ACCESS_KEY,
        secret_key=S3_SECRET_KEY,
        attempts=1,
    )


def drop_bucket(bucket: str) -> None:
    """Removes a test's bucket and all in it (tens of MiB, in the S3 server's data dir)."""
    client = s3_store(bucket=bucket).client
    with contextlib.suppress(Exception):
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            for item in page.get("Contents", []):
                client.delete_object(Bucket=bucket, Key=item["Key"])
        for upload in client.list_multipart_uploads(Bucket=bucket).get("Uploads", []):
            client.abort_multipart_upload(
                Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"]
            )
        client.delete_bucket(Bucket=bucket)


@pytest.fixture
def buckets() -> Iterator[list[str]]:
    """The S3 buckets a test names, dropped at its end."""
    names: list[str] = []
    yield names
    for name in names:
        drop_bucket(name)


@pytest.fixture(params=["file", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path, buckets: list[str]) -> BlobStore:
    if request.param == "file":
        return FileBlobStore(tmp_path / "blobs")
    if not S3_ENDPOINT:
        pytest.skip(NO_S3)
    s3 = s3_store()
    buckets.append(s3.bucket)
    return s3


def leftovers(store: BlobStore) -> list[str]:
    """What unfinished uploads left: temporary files, or temporary objects and multipart
    uploads in progress."""
    if isinstance(store, FileBlobStore):
        return sorted(p.name for p in store.partial.iterdir()) if store.partial.is_dir() else []
    assert isinstance(store, S3BlobStore)
    store.ensure_bucket()
    objects = store.client.list_objects_v2(Bucket=store.bucket, Prefix="partial/")
    uploads = store.client.list_multipart_uploads(Bucket=store.bucket, Prefix="partial/")
    return [o["Key"] for o in objects.get("Contents", [])] + [
        f"upload {u['Key']}" for u in uploads.get("Uploads", [])
    ]


def content(size: int, seed: int = 0) -> bytes:
    """Incompressible, reproducible bytes."""
    out = bytearray()
    block = seed
    while len(out) < size:
        out += hashlib.sha512(f"{seed}:{block}".encode()).digest()
        block += 1
    return bytes(out[:size])


def read_all(store: BlobStore, sha256: str, start: int = 0, end: int | None = None) -> bytes:
    return b"".join(store.read(sha256, start, end))


def test_round_trip(store: BlobStore) -> None:
    data = content(100_000)
    blob = store.put(data)
    assert blob.sha256 == hashlib.sha256(data).hexdigest()
    assert blob.size == len(data)
    assert store.exists(blob.sha256)
    assert read_all(store, blob.sha256) == data

    writer = store.writer()
    for i in range(0, 300_000, 7_000):  # uneven chunks
        writer.write(content(300_000, seed=1)[i : i + 7_000])
    streamed = writer.commit()
    assert streamed.sha256 == hashlib.sha256(content(300_000, seed=1)).hexdigest()
    assert read_all(store, streamed.sha256) == content(300_000, seed=1)

    empty = store.put(b"")
    assert (empty.sha256, empty.size) == (hashlib.sha256(b"").hexdigest(), 0)
    assert read_all(store, empty.sha256) == b""
    assert leftovers(store) == []


def test_identical_content_is_stored_once(store: BlobStore) -> None:
    small = content(5_000)
    assert store.put(small) == store.put(small)
    big = content(PART + MiB, seed=2)  # past a part: the multipart path on S3
    blobs = []
    for _ in range(2):
        writer = store.writer()
        for i in range(0, len(big), MiB):
            writer.write(big[i : i + MiB])
        blobs.append(writer.commit())
    assert blobs[0] == blobs[1]
    names = [sha for sha, _ in store.stored()]
    assert sorted(names) == sorted({blobs[0].sha256, hashlib.sha256(small).hexdigest()})
    assert read_all(store, blobs[0].sha256) == big
    assert leftovers(store) == []


def test_storing_content_again_makes_its_time_new(store: BlobStore) -> None:
    """The collector spares blobs younger than its grace period: an old orphan that a new
    upload names again must look new, or it could be collected before its event is saved."""
    data = content(3_000, seed=7)
    first = store.put(data)
    before = dict(store.stored())[first.sha256]
    time.sleep(1.1)  # S3 keeps times to the second
    store.put(data)
    assert dict(store.stored())[first.sha256] > before


def test_ranges(store: BlobStore) -> None:
    data = content(1000)
    sha = store.put(data).sha256
    assert read_all(store, sha, 0, 0) == data[:1]  # the first byte
    assert read_all(store, sha, 999, 999) == data[-1:]  # the last byte
    assert read_all(store, sha, 100, 199) == data[100:200]  # the middle
    assert read_all(store, sha, 990) == data[990:]  # to the end
    assert read_all(store, sha, 990, 5000) == data[990:]  # an end past the end
    assert read_all(store, sha, 1000) == b""  # nothing past the end
    assert read_all(store, sha, 10, 9) == b""  # an empty range
    big = content(PART + 1000, seed=3)
    big_sha = store.put(big).sha256
    assert read_all(store, big_sha, PART - 10, PART + 9) == big[PART - 10 : PART + 10]
    assert read_all(store, big_sha, len(big) - 1) == big[-1:]


def test_large_upload_streams_in_bounded_memory(store: BlobStore) -> None:
    size, chunk = 20 * MiB, 64 * 1024
    expected = hashlib.sha256()
    tracemalloc.start()
    try:
        writer = store.writer()
        for i in range(size // chunk):
            piece = hashlib.sha512(str(i).encode()).digest() * (chunk // 64)
            expected.update(piece)
            writer.write(piece)
        if isinstance(writer, S3Writer):  # two full parts sent, the rest held for commit
            assert writer.upload_id is not None and len(writer.parts) == 2
        blob = writer.commit()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert blob == Blob(expected.hexdigest(), size)
    assert peak < PART + 4 * MiB, f"peak {peak / MiB:.1f} MiB while writing 20 MiB"
    got = hashlib.sha256()
    for part in store.read(blob.sha256):
        assert len(part) <= MiB
        got.update(part)
    assert got.hexdigest() == blob.sha256
    assert leftovers(store) == []


@pytest.mark.parametrize("limit", [1000, PART + 2 * MiB])
def test_too_large_leaves_nothing(store: BlobStore, limit: int) -> None:
    writer = store.writer(limit=limit)
    data = content(limit + 1, seed=4)
    with pytest.raises(BlobTooLarge) as raised:
        for i in range(0, len(data), 64 * 1024):
            writer.write(data[i : i + 64 * 1024])
    assert raised.value.limit == limit
    assert list(store.stored()) == []
    assert leftovers(store) == []
    with pytest.raises(ValueError, match="finished"):
        writer.write(b"more")
    writer.abort()  # a second abort is harmless
    exact = store.writer(limit=1000)
    exact.write(content(1000))  # up to the limit is fine
    assert exact.commit().size == 1000


@pytest.mark.parametrize("size", [1000, PART + MiB])
def test_abort_leaves_nothing(store: BlobStore, size: int) -> None:
    writer = store.writer()
    writer.write(content(size, seed=5))
    writer.abort()
    assert list(store.stored()) == []
    assert leftovers(store) == []
    assert not store.exists(hashlib.sha256(content(size, seed=5)).hexdigest())


def test_clean_partial_removes_abandoned_uploads(store: BlobStore) -> None:
    crashed = store.writer()  # an upload cut off by a crash: neither committed nor aborted
    crashed.write(content(PART + MiB, seed=6))
    if isinstance(store, S3BlobStore):  # a crash between the upload and its copy into place
        store.client.put_object(Bucket=store.bucket, Key="partial/crashed", Body=b"half")
    kept = store.put(b"a finished blob")
    before = leftovers(store)
    assert before
    assert store.clean_partial(older_than=3600) == 0  # too recent: maybe still uploading
    assert leftovers(store) == before
    time.sleep(1.1)  # S3 stamps objects to the second
    assert store.clean_partial(older_than=0) == len(before)
    assert leftovers(store) == []
    assert [sha for sha, _ in store.stored()] == [kept.sha256]
    assert read_all(store, kept.sha256) == b"a finished blob"
    crashed.abort()  # what is left of it is gone already: no error


def test_stored_and_delete(store: BlobStore) -> None:
    assert list(store.stored()) == []
    started = time.time()
    blobs = [store.put(f"blob {i}".encode()) for i in range(3)]
    listed = dict(store.stored())
    assert set(listed) == {b.sha256 for b in blobs}
    for stamp in listed.values():  # S3 stamps to the second, by the server's clock
        assert started - 2 <= stamp <= time.time() + 2
    store.delete(blobs[0].sha256)
    store.delete(blobs[0].sha256)  # a missing blob is no error
    assert not store.exists(blobs[0].sha256)
    assert set(dict(store.stored())) == {blobs[1].sha256, blobs[2].sha256}
    with pytest.raises(BlobMissing):
        store.read(blobs[0].sha256)


def test_missing_blobs(store: BlobStore) -> None:
    absent = hashlib.sha256(b"never stored").hexdigest()
    assert not store.exists(absent)
    with pytest.raises(BlobMissing):
        store.read(absent)
    with pytest.raises(BlobMissing):
        store.read(absent, 5, 10)
    with pytest.raises(BlobMissing):
        store.read(absent, 10, 5)
    for bad in ("../../etc/passwd", absent.upper(), absent[:-1], ""):
        with pytest.raises(BlobMissing):
            store.read(bad)


# --- S3 only ------------------------------------------------------------------------------

needs_s3 = pytest.mark.skipif(not S3_ENDPOINT, reason=NO_S3)


@needs_s3
def test_s3_refuses_a_wrong_secret(buckets: list[str]) -> None:
    good = s3_store()
    buckets.append(good.bucket)
    sha = good.put(b"kept safe").sha256
    wrong = S3BlobStore(
        S3_ENDPOINT, good.bucket, access_key=S3_ACCESS_KEY, secret_key="not-the-secret"
    )
    for attempt in (
        lambda: wrong.put(b"sneaked in"),
        lambda: wrong.read(sha),
        lambda: wrong.exists(sha),
        lambda: list(wrong.stored()),
        wrong.check,
    ):
        with pytest.raises(StoreUnavailable, match="refused access") as raised:
            attempt()
        assert not isinstance(raised.value, StoreUnreachable)  # an answer: not an outage
    assert [s for s, _ in good.stored()] == [sha]
    good.check()


@needs_s3
def test_s3_out_of_reach_is_store_unreachable() -> None:
    dead = s3_store(endpoint=f"http://127.0.0.1:{free_port()}")
    with pytest.raises(StoreUnreachable, match="out of reach"):
        dead.put(b"nowhere")
    with pytest.raises(StoreUnreachable):
        dead.read(hashlib.sha256(b"nowhere").hexdigest())
    with pytest.raises(StoreUnreachable):
        dead.check()


@needs_s3
def test_s3_bucket_is_created_once_by_racing_stores(buckets: list[str]) -> None:
    bucket = new_bucket()
    buckets.append(bucket)
    stores = [
        S3BlobStore(S3_ENDPOINT, bucket, access_key=S3_ACCESS_KEY, secret_key=S3_SECRET_KEY)
        for _ in range(4)
    ]
    errors: list[BaseException] = []

    def put(s: S3BlobStore) -> None:
        try:
            s.put(b"racing")
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=put, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert [sha for sha, _ in stores[0].stored()] == [hashlib.sha256(b"racing").hexdigest()]


class Gate:
    """A TCP forwarder to the S3 server that a test closes (an outage: connections cut and
    refused) and opens again."""

    def __init__(self, endpoint: str) -> None:
        url = httpx.URL(endpoint)
        self.target = (url.host, url.port or 80)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.sockets: list[socket.socket] = []
        self.lock = threading.Lock()
        self.listener: socket.socket | None = None

    def open(self) -> None:
        listener = socket.create_server(("127.0.0.1", self.port))
        listener.settimeout(0.1)
        self.listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        while self.listener is listener:
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            client.settimeout(None)
            upstream = socket.create_connection(self.target)
            with self.lock:
                self.sockets += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        listener, self.listener = self.listener, None
        if listener is not None:
            listener.close()
        with self.lock:
            sockets, self.sockets = self.sockets, []
        for s in sockets:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()


@pytest.fixture
def gate() -> Iterator[Gate]:
    if not S3_ENDPOINT:
        pytest.skip(NO_S3)
    g = Gate(S3_ENDPOINT)
    g.open()
    yield g
    g.close()


def health_until(srv: ServerProcess, done: Callable[[httpx.Response], bool]) -> httpx.Response:
    deadline = time.monotonic() + 20
    while True:
        r = httpx.get(f"{srv.url}/api/health", timeout=10)
        if done(r) or time.monotonic() > deadline:
            return r
        time.sleep(0.2)


def test_health_reports_the_s3_bucket(
    buckets: list[str], gate: Gate, fresh_server: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    """Health probes the configured store: with S3, the bucket (not the data dir)."""
    buckets.append(new_bucket())
    srv = fresh_server(
        tmp_path / "data",
        GB_S3_ENDPOINT=gate.url,
        GB_S3_BUCKET=buckets[-1],
        GB_S3_ACCESS_KEY=S3_ACCESS_KEY,
        GB_S3_SECRET_KEY=S3_SECRET_KEY,
    )
    assert httpx.get(f"{srv.url}/api/health").json()["components"]["storage"] == "ok"
    gate.close()  # S3 goes away
    r = health_until(srv, lambda r: r.status_code == 503)
    assert r.status_code == 503, r.text
    assert r.json()["status"] == "unhealthy"
    assert r.json()["components"]["storage"] == "error"
    assert r.json()["components"]["event_store"] == "ok"
    gate.open()  # and comes back
    r = health_until(srv, lambda r: r.status_code == 200)
    assert r.status_code == 200, r.text
    assert r.json()["components"]["storage"] == "ok"
