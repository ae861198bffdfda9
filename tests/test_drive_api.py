"""The drive over HTTP, on both profiles: uploads streamed to the blob store, listings, versions,
downloads with validators and ranges, deletes, who may do what, paths that try to leave the
drive, size limits, memory while 200 MB stream through, uploads cut off half way, the blob
collector (`gbserver drive gc`) and a rebuild of the listings from the log."""

from __future__ import annotations

import contextlib
import hashlib
import os
import socket
import threading
import time
import unicodedata
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from commands.ports import BlobStore
from infra.blobs import FileBlobStore, open_blob_store
from infra.config import Settings
from tests.profiles import drop_read_models
from tests.server import ADMIN_TOKEN, ServerProcess, UserClient, gbserver

MiB = 1024 * 1024


def url(path: str) -> str:
    return f"/api/drive/{quote(path, safe='/')}"


def upload(
    client: httpx.Client, path: str, *files: tuple[str, bytes], content_type: str = "text/plain"
) -> httpx.Response:
    return client.post(
        url(path), files=[("file", (name, data, content_type)) for name, data in files]
    )


def put_file(client: httpx.Client, path: str, data: bytes, name: str = "x") -> dict[str, Any]:
    r = upload(client, path, (name, data))
    assert r.status_code == 201, r.text
    entry: dict[str, Any] = r.json()[0]
    return entry


def listing(client: httpx.Client, path: str = "", **params: Any) -> dict[str, Any]:
    r = client.get(url(path) if path else "/api/drive", params=params)
    assert r.status_code == 200, r.text
    found: dict[str, Any] = r.json()
    return found


def names(page: dict[str, Any]) -> list[str]:
    return [e["path"] for e in page["data"]]


def own(page: dict[str, Any]) -> list[dict[str, Any]]:
    """The entries of a listing of the top that are the user's own: the bot packages other
    tests made are shared, listed at the top of every drive."""
    return [e for e in page["data"] if not e["path"].split("/")[0].endswith(".gbai")]


def top(client: httpx.Client, **params: Any) -> list[str]:
    return [e["path"] for e in own(listing(client, **params))]


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def folder() -> str:
    return f"t{uuid.uuid4().hex[:8]}"


# --- upload, list, download, versions, delete ----------------------------------------------


def test_a_file_round_trip(make_user: Callable[..., UserClient]) -> None:
    ana = make_user()
    r = upload(ana, "reports/q1.txt", ("ignored.bin", b"first"))
    assert r.status_code == 201, r.text
    assert r.headers["location"] == "/api/drive/reports/q1.txt"
    [entry] = r.json()
    assert entry == {
        "name": "q1.txt",
        "path": "reports/q1.txt",
        "type": "file",
        "size": 5,
        "content_type": "text/plain",
        "sha256": sha(b"first"),
        "version": 1,
        "modified_at": entry["modified_at"],
        "modified_by": ana.email,
    }
    assert ana.get(url("reports/q1.txt")).json() == entry  # a file's path: its entry
    assert own(listing(ana)) == [
        {
            "name": "reports",
            "path": "reports",
            "type": "folder",
            "size": 5,
            "content_type": None,
            "sha256": None,
            "version": None,
            "modified_at": None,
            "modified_by": None,
        }
    ]
    page = listing(ana, "reports")
    assert page["pagination"] == {"total": 1, "limit": 50, "offset": 0, "has_more": False}

    second = put_file(ana, "reports/q1.txt", b"second version")
    assert second["version"] == 2 and second["sha256"] == sha(b"second version")
    assert own(listing(ana))[0]["size"] == len(b"second version")  # a folder's total
    got = ana.get(url("reports/q1.txt/download"))
    assert got.status_code == 200 and got.content == b"second version"
    assert got.headers["content-type"].startswith("text/plain")
    assert got.headers["etag"] == f'"{sha(b"second version")}"'
    assert got.headers["x-drive-version"] == "2"
    assert got.headers["accept-ranges"] == "bytes"
    assert got.headers["content-length"] == str(len(b"second version"))
    assert got.headers["x-content-type-options"] == "nosniff"
    assert got.headers["last-modified"].endswith(" GMT")
    old = ana.get(url("reports/q1.txt/download"), params={"version": 1})
    assert old.status_code == 200 and old.content == b"first"
    assert old.headers["x-drive-version"] == "1"
    assert ana.get(url("reports/q1.txt/download"), params={"version": 3}).status_code == 404

    versions = listing(ana, "reports/q1.txt", versions="true")
    assert [(v["version"], v["sha256"], v["size"]) for v in versions["data"]] == [
        (2, sha(b"second version"), 14),
        (1, sha(b"first"), 5),
    ]
    assert {v["path"] for v in versions["data"]} == {"reports/q1.txt"}
    at_first = ana.get(url("reports/q1.txt"), params={"version": 1}).json()
    assert (at_first["version"], at_first["sha256"]) == (1, sha(b"first"))
    assert ana.get(url("reports/q1.txt"), params={"version": 9}).status_code == 404
    assert ana.get(url("reports"), params={"version": 1}).status_code == 404

    head = ana.head(url("reports/q1.txt/download"))
    assert head.status_code == 200 and head.content == b""
    assert head.headers["etag"] == got.headers["etag"]

    assert ana.delete(url("reports/q1.txt")).status_code == 204
    assert ana.get(url("reports/q1.txt")).status_code == 404
    assert ana.get(url("reports/q1.txt/download")).status_code == 404
    assert own(listing(ana)) == []  # the implied folder went with its last file
    assert ana.delete(url("reports/q1.txt")).status_code == 404
    # Re-created, the file starts again at version 1.
    assert put_file(ana, "reports/q1.txt", b"again")["version"] == 1
    assert listing(ana, "reports/q1.txt", versions="true")["pagination"]["total"] == 1


def test_folder_uploads_use_sanitised_names(make_user: Callable[..., UserClient]) -> None:
    ana = make_user()
    composed = "café.txt"
    r = upload(
        ana,
        "inbox/",
        ("../../etc/passwd", b"p"),
        ("C:\\Users\\ana\\notes.txt", b"n"),
        (unicodedata.normalize("NFD", composed), b"c"),
    )
    assert r.status_code == 201, r.text
    assert [e["path"] for e in r.json()] == ["inbox/passwd", "inbox/notes.txt", f"inbox/{composed}"]
    assert r.headers["location"] == "/api/drive/inbox/passwd"
    # An existing folder's path without the trailing `/` is the folder too.
    r = upload(ana, "inbox", ("more.txt", b"m"))
    assert r.status_code == 201 and r.json()[0]["path"] == "inbox/more.txt", r.text
    assert ana.get(url(f"inbox/{composed}/download")).content == b"c"
    # Several files to a file's path: refused, nothing stored.
    r = upload(ana, "single.txt", ("a", b"a"), ("b", b"b"))
    assert r.status_code == 400 and "end the path with /" in r.text
    assert ana.get(url("single.txt")).status_code == 404
    # The top folder takes files too.
    r = ana.post("/api/drive", files=[("file", ("top.txt", b"t", "text/plain"))])
    assert r.status_code == 201 and r.json()[0]["path"] == "top.txt", r.text


def test_conflicts_between_files_and_folders(make_user: Callable[..., UserClient]) -> None:
    ana = make_user()
    put_file(ana, "a/b.txt", b"b")
    r = upload(ana, "a/b.txt/c.txt", ("c", b"c"))  # below a file
    assert r.status_code == 409 and "a/b.txt is a file" in r.text
    r = upload(ana, "x/", ("a", b"a"))
    assert r.status_code == 201
    put_file(ana, "x/sub/deep.txt", b"d")
    r = upload(ana, "x/", ("sub", b"s"))  # into the folder, onto its subfolder
    assert r.status_code == 409 and "x/sub is a folder" in r.text
    assert listing(ana, "x")["pagination"]["total"] == 2


def test_recursive_listing_type_filter_and_pages(make_user: Callable[..., UserClient]) -> None:
    ana = make_user()
    for path in ("p/a.txt", "p/B.txt", "p/q/c.txt", "p/q/r/d.txt", "p/z/e.txt", "other.txt"):
        put_file(ana, path, path.encode())
    assert names(listing(ana, "p")) == ["p/q", "p/z", "p/B.txt", "p/a.txt"]
    assert names(listing(ana, "p/")) == names(listing(ana, "p"))
    assert names(listing(ana, "p", recursive="true")) == [
        "p/q",
        "p/q/r",
        "p/z",
        "p/B.txt",
        "p/a.txt",
        "p/q/c.txt",
        "p/q/r/d.txt",
        "p/z/e.txt",
    ]
    assert names(listing(ana, "p", recursive="true", type="folder")) == ["p/q", "p/q/r", "p/z"]
    assert names(listing(ana, "p", type="file")) == ["p/B.txt", "p/a.txt"]
    sizes = {e["path"]: e["size"] for e in listing(ana, "p", recursive="true")["data"]}
    assert sizes["p/q"] == len(b"p/q/c.txt") + len(b"p/q/r/d.txt")
    assert top(ana) == ["p", "other.txt"]
    seen: list[str] = []
    offset = 0
    while True:
        page = listing(ana, "p", recursive="true", limit=3, offset=offset)
        assert page["pagination"]["total"] == 8 and page["pagination"]["limit"] == 3
        seen += names(page)
        if not page["pagination"]["has_more"]:
            break
        offset += 3
    assert seen == names(listing(ana, "p", recursive="true"))
    assert ana.get(url("p/missing/")).status_code == 404
    assert ana.get("/api/drive", params={"type": "files"}).status_code == 400
    assert ana.get("/api/drive", params={"limit": 0}).status_code == 400


def test_delete_a_folder_and_all_below_it(make_user: Callable[..., UserClient]) -> None:
    ana = make_user()
    for path in ("gone/a.txt", "gone/b/c.txt", "gone/b/d/e.txt", "kept/f.txt", "gone.txt"):
        put_file(ana, path, path.encode())
    assert ana.delete(url("gone")).status_code == 204
    assert top(ana, recursive="true") == ["kept", "gone.txt", "kept/f.txt"]
    assert ana.get(url("gone/b/c.txt/download")).status_code == 404
    assert ana.delete(url("gone/")).status_code == 404


# --- download: ranges, validators, names ---------------------------------------------------

BODY = bytes(range(256)) * 40  # 10,240 bytes


def test_ranges(make_user: Callable[..., UserClient]) -> None:
    ana = make_user()
    put_file(ana, "r.bin", BODY)
    at = url("r.bin/download")
    size = len(BODY)
    for header, first, last in (
        ("bytes=0-0", 0, 0),
        ("bytes=0-99", 0, 99),
        ("bytes=5000-5099", 5000, 5099),
        ("bytes=10000-", 10000, size - 1),
        ("bytes=-100", size - 100, size - 1),
        ("bytes=10200-99999", 10200, size - 1),
    ):
        r = ana.get(at, headers={"Range": header})
        assert r.status_code == 206, (header, r.status_code)
        assert r.content == BODY[first : last + 1], header
        assert r.headers["content-range"] == f"bytes {first}-{last}/{size}"
        assert r.headers["content-length"] == str(last - first + 1)
    for header in ("bytes=10240-", "bytes=20000-30000", "bytes=-0"):
        r = ana.get(at, headers={"Range": header})
        assert r.status_code == 416, header
        assert r.headers["content-range"] == f"bytes */{size}"
        assert r.json()["error"]["message"]
    # Several ranges, a malformed one, another unit: the whole file.
    for header in ("bytes=0-1,5-6", "bytes=9-3", "pages=1-2", "bytes=a-b"):
        r = ana.get(at, headers={"Range": header})
        assert r.status_code == 200 and r.content == BODY, header
    # If-Range: honoured when it names the current content, else the whole file.
    etag = ana.get(at).headers["etag"]
    r = ana.get(at, headers={"Range": "bytes=0-9", "If-Range": etag})
    assert r.status_code == 206 and r.content == BODY[:10]
    r = ana.get(at, headers={"Range": "bytes=0-9", "If-Range": '"stale"'})
    assert r.status_code == 200 and r.content == BODY
    stamp = ana.get(at).headers["last-modified"]
    r = ana.get(at, headers={"Range": "bytes=0-9", "If-Range": stamp})
    assert r.status_code == 206 and r.content == BODY[:10]


def test_validators(make_user: Callable[..., UserClient]) -> None:
    ana = make_user()
    put_file(ana, "v.txt", b"one")
    at = url("v.txt/download")
    first = ana.get(at)
    etag, stamp = first.headers["etag"], first.headers["last-modified"]
    assert etag == f'"{sha(b"one")}"'
    for value in (etag, f"W/{etag}", f'"other", {etag}', "*"):
        r = ana.get(at, headers={"If-None-Match": value})
        assert r.status_code == 304 and r.content == b"", value
        assert r.headers["etag"] == etag
    assert ana.get(at, headers={"If-None-Match": '"other"'}).status_code == 200
    assert ana.get(at, headers={"If-Modified-Since": stamp}).status_code == 304
    old = "Mon, 01 Jan 2001 00:00:00 GMT"
    assert ana.get(at, headers={"If-Modified-Since": old}).status_code == 200
    # If-None-Match wins over If-Modified-Since.
    r = ana.get(at, headers={"If-None-Match": '"other"', "If-Modified-Since": stamp})
    assert r.status_code == 200
    put_file(ana, "v.txt", b"two")
    r = ana.get(at, headers={"If-None-Match": etag})
    assert r.status_code == 200 and r.content == b"two"
    assert r.headers["etag"] != etag
    # Identical content is one blob, one ETag, whatever its path or version.
    put_file(ana, "copy.txt", b"two")
    assert ana.get(url("copy.txt/download")).headers["etag"] == r.headers["etag"]


def test_content_disposition_names_the_file_in_utf8(make_user: Callable[..., UserClient]) -> None:
    ana = make_user()
    r = upload(
        ana, "docs/Relatório final €.pdf", ("x", b"%PDF"), content_type="application/octet-stream"
    )
    assert r.status_code == 201, r.text
    r = ana.get(url("docs/Relatório final €.pdf/download"))
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/pdf"
    assert r.headers["content-disposition"] == (
        'attachment; filename="Relatorio final .pdf";'
        " filename*=UTF-8''Relat%C3%B3rio%20final%20%E2%82%AC.pdf"
    )


def test_download_is_the_last_segment_a_folder_named_download_ends_with_a_slash(
    make_user: Callable[..., UserClient],
) -> None:
    ana = make_user()
    put_file(ana, "reports/download/inside.txt", b"inside")
    put_file(ana, "reports/download.txt", b"file")
    put_file(ana, "download", b"top")
    assert names(listing(ana, "reports/download/")) == ["reports/download/inside.txt"]
    # Without the slash, `reports/download` is a download of `reports`: a folder, not a file.
    assert ana.get(url("reports/download")).status_code == 404
    assert ana.get(url("reports/download/inside.txt/download")).content == b"inside"
    assert ana.get(url("download/download")).content == b"top"
    assert ana.get(url("download")).json()["path"] == "download"


# --- who may do what -----------------------------------------------------------------------


def test_users_never_reach_each_others_files(make_user: Callable[..., UserClient]) -> None:
    ana, bea = make_user(), make_user()
    secret = put_file(ana, "private/secret.txt", b"ana's secret")
    assert own(listing(bea, recursive="true")) == []
    assert bea.get(url("private/secret.txt")).status_code == 404
    assert bea.get(url("private/secret.txt/download")).status_code == 404
    assert bea.get(url("private/secret.txt"), params={"versions": "true"}).status_code == 404
    assert bea.delete(url("private/secret.txt")).status_code == 404
    assert bea.delete(url("private")).status_code == 404
    # Bea's upload to the same path is a file of her own drive.
    mine = put_file(bea, "private/secret.txt", b"bea's own")
    assert mine["version"] == 1
    r = ana.get(url("private/secret.txt/download"))
    assert r.content == b"ana's secret"
    assert ana.get(url("private/secret.txt")).json() == secret


def test_bot_packages_are_read_by_all_and_written_by_admins(
    admin: httpx.Client, make_user: Callable[..., UserClient]
) -> None:
    bot = folder()
    package = f"{bot}.gbai"
    start = f"{package}/{bot}.gbdialog/start.bas"
    r = upload(admin, start, ("start.bas", b'TALK "hi"'))
    assert r.status_code == 201, r.text
    put_file(admin, f"{package}/{bot}.gbot/config.csv", b"name,value\n")
    ana = make_user()
    assert package in names(listing(ana))  # shared packages show at the top of every drive
    assert names(listing(ana, package, recursive="true", type="file")) == [
        f"{package}/{bot}.gbdialog/start.bas",
        f"{package}/{bot}.gbot/config.csv",
    ]
    assert ana.get(url(f"{start}/download")).content == b'TALK "hi"'
    r = upload(ana, start, ("start.bas", b"TALK 'mine'"))
    assert r.status_code == 403 and "only admins" in r.text
    r = upload(ana, f"{bot}.GBAI/x.txt", ("x", b"x"))
    assert r.status_code == 403
    assert ana.delete(url(start)).status_code == 403
    assert ana.delete(url(package)).status_code == 403
    assert ana.get(url(f"{start}/download")).content == b'TALK "hi"'
    assert admin.delete(url(package)).status_code == 204
    assert ana.get(url(package)).status_code == 404


def test_a_package_is_always_a_folder(
    admin: httpx.Client, make_user: Callable[..., UserClient]
) -> None:
    package = f"{folder()}.gbai"
    r = upload(admin, package, ("config.csv", b"name,value\n"))
    assert r.status_code == 201 and r.json()[0]["path"] == f"{package}/config.csv", r.text
    ana = make_user()
    r = ana.post("/api/drive", files=[("file", ("mine.gbai", b"x", "text/plain"))])
    assert r.status_code == 400 and "bot package" in r.text  # it would be out of her reach
    assert own(listing(ana)) == []


def test_an_empty_file(make_user: Callable[..., UserClient]) -> None:
    ana = make_user()
    entry = put_file(ana, "empty.txt", b"")
    assert entry["size"] == 0 and entry["sha256"] == sha(b"")
    got = ana.get(url("empty.txt/download"))
    assert got.status_code == 200 and got.content == b""
    assert got.headers["content-length"] == "0"
    r = ana.get(url("empty.txt/download"), headers={"Range": "bytes=0-"})
    assert r.status_code == 416 and r.headers["content-range"] == "bytes */0"


def test_requests_without_a_token_are_refused(server: ServerProcess) -> None:
    with server.client(None) as anonymous:
        assert anonymous.get("/api/drive").status_code == 401
        assert upload(anonymous, "x.txt", ("x", b"x")).status_code == 401
        assert anonymous.delete(url("x.txt")).status_code == 401


# --- paths that try to leave the drive -----------------------------------------------------


def raw_request(server: ServerProcess, request: bytes) -> tuple[int, bytes]:
    """Sends the bytes as they are (httpx would normalise `..`); the status and the body."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as s:
        s.sendall(request)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


def raw(server: ServerProcess, method: str, target: str, body: bytes = b"", **headers: str) -> int:
    lines = [
        f"{method} {target} HTTP/1.1",
        "Host: 127.0.0.1",
        f"Authorization: Bearer {ADMIN_TOKEN}",
    ]
    lines += [f"{k.replace('_', '-')}: {v}" for k, v in headers.items()]
    lines += [f"Content-Length: {len(body)}", "Connection: close", "", ""]
    status, _ = raw_request(server, "\r\n".join(lines).encode() + body)
    return status


def outside_blobs(root: Path) -> set[str]:
    """Every file and folder under `root`, but the blob store's content."""
    return {
        str(p.relative_to(root))
        for p in root.rglob("*")
        if "blobs" not in p.relative_to(root).parts
    }


TRAVERSALS = [
    "../x.txt",
    "../../../../etc/passwd",
    "a/../../x.txt",
    "..%2f..%2fx.txt",
    "%2e%2e/x.txt",
    "%2E%2E%2Fx.txt",
    "a/%2e%2e/%2e%2e/x.txt",
    "..%5c..%5cx.txt",
    "a%5cb.txt",
    "a%00b.txt",
    "x%0d%0aSet-Cookie:%20a=b",
    "%2fetc%2fpasswd",
    "/etc/passwd",
    "%E2%88%95etc%E2%88%95passwd",  # U+2215 DIVISION SLASH
    "%EF%BC%8F..%EF%BC%8Fx",  # U+FF0F FULLWIDTH SOLIDUS
    "%E2%80%A4%E2%80%A4/x.txt",  # U+2024 ONE DOT LEADER
    "%EF%B9%92%EF%B9%92/x.txt",  # U+FE52 SMALL FULL STOP
    "%EF%BC%8E%EF%BC%8E/x.txt",  # U+FF0E FULLWIDTH FULL STOP
    "a/./b.txt",
    "a//b.txt",
    "%C0%AE%C0%AE/x.txt",  # overlong UTF-8 for `..`
]


def test_traversal_attempts_never_leave_the_drive(
    server: ServerProcess, admin: httpx.Client
) -> None:
    root = server.data_dir.parent
    before = outside_blobs(root)
    multipart = (
        b'--B\r\nContent-Disposition: form-data; name="file"; filename="x.txt"\r\n\r\n'
        b"pwned\r\n--B--\r\n"
    )
    for target in TRAVERSALS:
        for method in ("GET", "DELETE"):
            status = raw(server, method, f"/api/drive/{target}")
            assert status in (400, 404), (method, target, status)
        status = raw(
            server,
            "POST",
            f"/api/drive/{target}",
            multipart,
            Content_Type="multipart/form-data; boundary=B",
        )
        assert status in (400, 404), ("POST", target, status)
        status = raw(server, "GET", f"/api/drive/{target}/download")
        assert status in (400, 404), ("download", target, status)
    # Above the API prefix: no route at all.
    assert raw(server, "GET", "/api/drive/../../etc/passwd") == 400
    assert raw(server, "GET", "/api/../../etc/passwd") == 404
    # A double-encoded `..` is the literal name `%2e%2e`, inside the drive.
    status = raw(
        server,
        "POST",
        "/api/drive/%252e%252e/x.txt",
        multipart,
        Content_Type="multipart/form-data; boundary=B",
    )
    assert status == 201
    assert admin.get(url("%2e%2e/x.txt/download")).content == b"pwned"
    # A hostile file name lands inside the folder, reduced to its last segment.
    r = upload(admin, "uploads/", ("../../../../../../../tmp/evil.txt", b"evil"))
    assert r.status_code == 201 and r.json()[0]["path"] == "uploads/evil.txt"
    assert outside_blobs(root) == before
    assert not Path("/tmp/evil.txt").exists() or Path("/tmp/evil.txt").read_bytes() != b"evil"


# --- limits and malformed uploads ----------------------------------------------------------


def test_uploads_that_are_not_files_are_refused(make_user: Callable[..., UserClient]) -> None:
    ana = make_user()
    r = ana.post(url("a.txt"), content=b"just bytes", headers={"Content-Type": "text/plain"})
    assert r.status_code == 415 and r.json()["error"]["code"] == "UNSUPPORTED_MEDIA_TYPE"
    r = ana.post(url("a.txt"), json={"file": "x"})
    assert r.status_code == 415
    r = ana.post(url("a.txt"), data={"title": "no file"}, files=[])
    assert r.status_code in (400, 415)
    r = ana.post(url("a.txt"), data={"title": "x"}, files=[("file", ("a.txt", b"a"))])
    assert r.status_code == 400 and "`title` is not a file" in r.text
    r = ana.post(
        url("a.txt"),
        content=b'--B\r\nContent-Disposition: form-data; name="file"; filename="a"\r\n\r\nab',
        headers={"Content-Type": "multipart/form-data; boundary=B"},
    )
    assert r.status_code == 400 and "malformed" in r.text
    r = ana.post(
        url("a.txt"),
        content=b"--B--\r\n",
        headers={"Content-Type": "multipart/form-data; boundary=B"},
    )
    assert r.status_code == 400 and "no file" in r.text
    r = ana.post(url("a.txt"), content=b"x", headers={"Content-Type": "multipart/form-data"})
    assert r.status_code == 400 and "boundary" in r.text
    many = [("file", (f"f{i}.txt", b"x")) for i in range(101)]
    r = ana.post(url("many/"), files=many)
    assert r.status_code == 400 and "at most 100 files" in r.text
    assert own(listing(ana, recursive="true")) == []


def test_uploads_past_the_limit_are_413_and_keep_nothing(
    fresh_server: Callable[..., ServerProcess],
) -> None:
    srv = fresh_server(GB_MAX_UPLOAD_MB="1")
    with srv.client() as admin:
        r = upload(admin, "fits.bin", ("f", b"x" * MiB))
        assert r.status_code == 201, r.text
        # Announced by Content-Length: refused before the body is read.
        with socket.create_connection(("127.0.0.1", srv.port), timeout=30) as s:
            s.sendall(
                b"POST /api/drive/big.bin HTTP/1.1\r\nHost: x\r\n"
                + f"Authorization: Bearer {ADMIN_TOKEN}\r\n".encode()
                + b"Content-Type: multipart/form-data; boundary=B\r\n"
                + f"Content-Length: {50 * MiB}\r\n\r\n".encode()
            )
            answer = s.recv(65536)
            length = int(answer.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
            while len(answer.partition(b"\r\n\r\n")[2]) < length:
                answer += s.recv(65536)
        assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
        assert b"GB_MAX_UPLOAD_MB" in answer
        # Larger than the limit but within the body's allowance: refused as it streams.
        r = upload(admin, "stream.bin", ("s", b"x" * (MiB + MiB // 2)))
        assert r.status_code == 413, r.text
        # No Content-Length at all (chunked).

        def chunks() -> Iterator[bytes]:
            yield b'--B\r\nContent-Disposition: form-data; name="file"; filename="c"\r\n\r\n'
            for _ in range(3 * 16):
                yield b"y" * (64 * 1024)
            yield b"\r\n--B--\r\n"

        r = admin.post(
            url("chunked.bin"),
            content=chunks(),
            headers={"Content-Type": "multipart/form-data; boundary=B"},
        )
        assert r.status_code == 413, r.text
        assert names(listing(admin)) == ["fits.bin"]
    assert leftovers(srv) == []


# --- memory, disconnects, the collector ----------------------------------------------------


def vm(pid: int, field: str) -> int:
    """A /proc/<pid>/status field in bytes (VmRSS, VmHWM)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise AssertionError(field)


class Sampler:
    """The server's largest resident set while something runs (sampled every 10 ms)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        while not self.stop.is_set():
            self.peak = max(self.peak, vm(self.pid, "VmRSS"))
            time.sleep(0.01)

    def __enter__(self) -> Sampler:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        self.thread.join()


def test_a_200_mb_upload_and_download_stream(
    fresh_server: Callable[..., ServerProcess],
) -> None:
    srv = fresh_server()
    assert srv.proc is not None
    pid = srv.proc.pid
    size = 200 * MiB
    block = os.urandom(MiB)
    with srv.client() as admin:
        put_file(admin, "warm/up.txt", b"warm")  # every code path loaded once
        admin.get(url("warm/up.txt/download"))
        idle, peak_before = vm(pid, "VmRSS"), vm(pid, "VmHWM")
        digest = hashlib.sha256()

        def body() -> Iterator[bytes]:
            yield b'--B\r\nContent-Disposition: form-data; name="file"; filename="big.bin"\r\n'
            yield b"Content-Type: application/octet-stream\r\n\r\n"
            for i in range(size // MiB):
                chunk = i.to_bytes(4, "big") + block[4:]
                digest.update(chunk)
                yield chunk
            yield b"\r\n--B--\r\n"

        with Sampler(pid) as sampler:
            r = admin.post(
                url("big/big.bin"),
                content=body(),
                headers={"Content-Type": "multipart/form-data; boundary=B"},
                timeout=300,
            )
        assert r.status_code == 201, r.text
        assert r.json()[0]["size"] == size and r.json()[0]["sha256"] == digest.hexdigest()
        peak = max(sampler.peak, vm(pid, "VmHWM") if vm(pid, "VmHWM") > peak_before else 0)
        assert peak - idle < 100 * MiB, f"upload: {peak - idle:,} bytes above idle {idle:,}"

        received = hashlib.sha256()
        count = 0
        with Sampler(pid) as sampler, admin.stream("GET", url("big/big.bin/download")) as got:
            assert got.status_code == 200
            assert got.headers["content-length"] == str(size)
            for chunk in got.iter_bytes():
                received.update(chunk)
                count += len(chunk)
        assert count == size and received.hexdigest() == digest.hexdigest()
        assert sampler.peak - idle < 100 * MiB, f"download: {sampler.peak - idle:,} above idle"
        tail = admin.get(url("big/big.bin/download"), headers={"Range": f"bytes=-{MiB}"})
        assert tail.status_code == 206
        assert tail.content == (size // MiB - 1).to_bytes(4, "big") + block[4:]


def drive_gc(srv: ServerProcess, grace: str = "0") -> str:
    out = gbserver("drive", "gc", "--grace", grace, env=srv.env)
    return out.stdout


def blob_store(srv: ServerProcess) -> BlobStore:
    """The server's blob store (files under its data dir, or its S3 bucket)."""
    return open_blob_store(Settings.from_env(srv.env))


def stored_blobs(srv: ServerProcess) -> list[str]:
    return sorted(sha for sha, _ in blob_store(srv).stored())


def leftovers(srv: ServerProcess) -> list[str]:
    """Uploads the store holds unfinished: files in `.partial/`, or on S3 `partial/` objects
    and multipart uploads (infra.s3blobs' layout)."""
    store = blob_store(srv)
    if isinstance(store, FileBlobStore):
        return [p.name for p in store.partial.glob("*")] if store.partial.exists() else []
    from infra.s3blobs import PARTIAL, S3BlobStore

    assert isinstance(store, S3BlobStore)
    store.ensure_bucket()
    objects = store.client.list_objects_v2(Bucket=store.bucket, Prefix=PARTIAL)
    uploads = store.client.list_multipart_uploads(Bucket=store.bucket, Prefix=PARTIAL)
    return [o["Key"] for o in objects.get("Contents", [])] + [
        u["Key"] for u in uploads.get("Uploads", [])
    ]


PART_B = b'--B\r\nContent-Disposition: form-data; name="file"; filename="b"\r\n\r\n'


def test_an_upload_cut_off_half_way_leaves_nothing(
    fresh_server: Callable[..., ServerProcess],
) -> None:
    srv = fresh_server()
    with srv.client() as admin:
        kept = put_file(admin, "kept.txt", b"kept")
        for first_complete in (False, True):
            with socket.create_connection(("127.0.0.1", srv.port), timeout=30) as s:
                s.sendall(
                    b"POST /api/drive/cut/ HTTP/1.1\r\nHost: x\r\n"
                    + f"Authorization: Bearer {ADMIN_TOKEN}\r\n".encode()
                    + b"Content-Type: multipart/form-data; boundary=B\r\n"
                    + f"Content-Length: {100 * MiB}\r\n\r\n".encode()
                )
                if first_complete:  # one whole file, then part of the next
                    s.sendall(
                        b'--B\r\nContent-Disposition: form-data; name="file"; filename="a"\r\n\r\n'
                        + b"complete part"
                        + b"\r\n"
                    )
                s.sendall(PART_B)
                for _ in range(12):  # past a part of an S3 multipart upload (8 MiB)
                    s.sendall(os.urandom(MiB))
                time.sleep(0.5)
            deadline = time.monotonic() + 15
            while leftovers(srv):  # the server aborts the cut-off upload itself
                assert time.monotonic() < deadline, f"not aborted: {leftovers(srv)}"
                time.sleep(0.1)
            assert admin.get(url("cut")).status_code == 404  # no metadata
        # The one complete part of the second attempt is a blob nothing names: collected.
        assert len(stored_blobs(srv)) == 2
        report = drive_gc(srv)
        assert "removed 1 unreferenced blobs and 0 abandoned" in report, report
        assert "kept 1 blobs" in report, report
        assert stored_blobs(srv) == [kept["sha256"]]
        assert admin.get(url("kept.txt/download")).content == b"kept"
        assert leftovers(srv) == []


def test_gc_keeps_what_files_name_and_recent_blobs(
    fresh_server: Callable[..., ServerProcess],
) -> None:
    srv = fresh_server()
    store = blob_store(srv)
    with srv.client() as admin:
        put_file(admin, "a.txt", b"v1")
        put_file(admin, "a.txt", b"v2")  # both versions are named
        put_file(admin, "gone.txt", b"gone")
        assert admin.delete(url("gone.txt")).status_code == 204
        store.put(b"orphan")  # stored, then never recorded (a crash before the save)
        abandoned = store.writer()  # an upload cut off by a crash: never committed
        abandoned.write(os.urandom(9 * MiB))
        try:
            assert len(leftovers(srv)) == 1
            report = drive_gc(srv, "3600")  # everything is recent: nothing goes
            assert "removed 0 unreferenced blobs and 0 abandoned uploads; kept 4 blobs" in report
            report = drive_gc(srv)
            assert "removed 2 unreferenced blobs and 1 abandoned uploads; kept 2 blobs" in report
        finally:
            with contextlib.suppress(Exception):  # collected already
                abandoned.abort()
        assert leftovers(srv) == []
        assert stored_blobs(srv) == sorted([sha(b"v1"), sha(b"v2")])
        r = admin.get(url("a.txt/download"), params={"version": 1})
        assert r.content == b"v1"
        bad = gbserver("drive", "gc", "--grace", "-1", env=srv.env, check=False)
        assert bad.returncode == 2 and "number of seconds" in bad.stderr


# --- the listings come back from the log ---------------------------------------------------


def test_rebuild_restores_the_listings_exactly(
    fresh_server: Callable[..., ServerProcess],
) -> None:
    srv = fresh_server()
    with srv.client() as admin:
        bot = folder()
        for i in range(12):
            put_file(admin, f"docs/{i % 3}/f{i}.txt", f"content {i}".encode())
        put_file(admin, "docs/0/f0.txt", b"second")
        put_file(admin, "docs/0/f0.txt", b"third")
        put_file(admin, f"{bot}.gbai/{bot}.gbdialog/start.bas", b'TALK "hi"')
        assert admin.delete(url("docs/1")).status_code == 204
        put_file(admin, "docs/1/back.txt", b"back")
        assert admin.delete(url("docs/2/f2.txt")).status_code == 204
        urls = [
            "/api/drive?recursive=true&limit=200",
            "/api/drive",
            url("docs"),
            url("docs/0/f0.txt") + "?versions=true",
            url("docs/0/f0.txt"),
            url(f"{bot}.gbai") + "?recursive=true",
        ]
        before = [admin.get(u).content for u in urls]
        content = admin.get(url("docs/0/f0.txt/download"), params={"version": 2}).content
    srv.stop()
    drop_read_models(srv.env, srv.data_dir)
    result = gbserver("rebuild", "drive", env=srv.env)
    assert "drive:" in result.stdout
    srv.start()
    with srv.client() as admin:
        assert [admin.get(u).content for u in urls] == before
        r = admin.get(url("docs/0/f0.txt/download"), params={"version": 2})
        assert r.content == content == b"second"


@pytest.mark.parametrize("path", ["a%20b/c.txt", "%E6%97%A5%E6%9C%AC/x.txt"])
def test_encoded_paths_are_decoded_once(make_user: Callable[..., UserClient], path: str) -> None:
    ana = make_user()
    r = ana.post(f"/api/drive/{path}", files=[("file", ("x", b"x", "text/plain"))])
    assert r.status_code == 201, r.text
    decoded = r.json()[0]["path"]
    assert "%" not in decoded
    assert ana.get(f"/api/drive/{path}/download").content == b"x"
