"""A hostile authenticated user sends every write route payloads built to hurt, then the spine
is checked from the inside: every event in the log decodes, and every projection has applied
every event of its topics (nothing stalled behind a poisoned event).

The write routes come from the served OpenAPI document, so a new route is covered as soon as
it exists; one whose path parameter this test cannot fill fails the test instead of being
skipped. Payloads: reserved transcoder shapes in every free-form object, U+0000 and lone
surrogates in every string, every string at its maximum length in multi-byte characters,
strings of Unicode spaces, and dialogs that build such values at run time.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.server import ServerProcess

WRITE_METHODS = ("post", "put", "patch", "delete")

# Shapes the event store's JSON transcoder gives meaning to, nested and escaped-looking.
RESERVED: dict[str, Any] = {
    "tag": {"_type_": "nope", "_data_": 1},
    "uuid": {"_type_": "uuid_hex", "_data_": "not-a-uuid"},
    "datetime": {"_type_": "datetime_iso", "_data_": "yesterday"},
    "decimal": {"_type_": "decimal_str", "_data_": "1.5"},
    "half": {"_type_": "uuid_hex"},
    "escaped": {"__type_": "x", "_data_": [1, {"_type_": "nope", "_data_": None}]},
    "list": [{"_type_": "nope", "_data_": {"_type_": "nope", "_data_": 2}}],
}

# Text in the byte-heaviest forms: 2-, 3- and 4-byte UTF-8 characters.
WIDE = "é€😀"

# Values for constrained strings, the first one matching a field's pattern is used.
SAMPLES = (
    "hostile@example.com",
    "2030-01-15T17:00:00Z",
    "hostile_bot",
    "note",
    "x",
)

# Dialogs that build unstorable or enormous values at run time.
DIALOGS = {
    "nul": 'x = JSON("\\"" + "\\\\" + "u0000\\"")\n'
    'TALK "a" + x + "b"\n'
    'SET BOT MEMORY "nul" + x, x\n'
    'CREATE TASK "t" + x, "", "", "high"\n'
    'ADD SUGGESTION "s" + x\n'
    "HEAR y\n"
    'TALK "after " + y + x\n',
    "tags": 'o = JSON("{\\"_type_\\": \\"nope\\", \\"_data_\\": 1}")\n'
    'SET BOT MEMORY "tag", o\n'
    'SET USER MEMORY "tag", o\n'
    'SET "session.tag", o\n'
    "HEAR y\n"
    'TALK "memory " + TOJSON(GET BOT MEMORY "tag")\n',
    "huge": 's = "' + "x" * 81_920 + '"\n'
    "items = NEW ARRAY\n"
    "FOR i = 1 TO 3000\n  items.PUSH(s)\nNEXT i\n"
    'SET BOT MEMORY "big", items\n'
    "HEAR y\n"
    'TALK "never"\n',
    "wide": 's = "' + WIDE * 300 + '"\n'
    "FOR i = 1 TO 6\n  s = s + s\nNEXT i\n"
    "TALK s\n"
    'SET USER MEMORY "wide", s\n'
    "HEAR y\n"
    "TALK s + y\n",
}


class Schemas:
    """Resolves the OpenAPI document's references."""

    def __init__(self, doc: dict[str, Any]) -> None:
        self.doc = doc

    def resolve(self, schema: dict[str, Any]) -> dict[str, Any]:
        while "$ref" in schema:
            name = schema["$ref"].rsplit("/", 1)[-1]
            schema = self.doc["components"]["schemas"][name]
        return schema

    def kind(self, schema: dict[str, Any]) -> str:
        """'object', 'freeform', 'array', 'string', 'enum', or 'other'."""
        schema = self.resolve(schema)
        if "enum" in schema or "const" in schema:
            return "enum"
        types = {schema.get("type")} | {
            self.resolve(s).get("type") for s in schema.get("oneOf", ())
        }
        if "object" in types:
            return "object" if schema.get("properties") else "freeform"
        if "array" in types:
            return "array"
        if "string" in types:
            return "string"
        return "other"


def _sample(schema: dict[str, Any], text: str | None) -> str:
    """A string the field accepts (or `text`, when the field has no pattern of its own)."""
    pattern = schema.get("pattern")
    if text is not None and pattern is None and schema.get("format") is None:
        return text[: schema.get("maxLength", len(text))]
    for candidate in SAMPLES:
        if pattern is None or re.search(pattern, candidate):
            return candidate
    raise AssertionError(f"no sample string matches {pattern!r}: add one to SAMPLES")


def body_for(schemas: Schemas, schema: dict[str, Any], variant: str) -> Any:
    """A request body for one variant: 'reserved', 'maximal', 'spaces', 'nul', 'surrogate'."""
    schema = schemas.resolve(schema)
    kind = schemas.kind(schema)
    if kind == "object":
        return {name: body_for(schemas, sub, variant) for name, sub in schema["properties"].items()}
    if kind == "freeform":
        if variant == "maximal":  # as many keys as a body may hold, under the size limit
            return {f"k{i}": WIDE * 100 for i in range(700)}
        return dict(RESERVED)
    if kind == "array":
        return [body_for(schemas, schema.get("items", {}), variant)]
    if kind == "enum":
        options = schema.get("enum") or [schema.get("const")]
        return next((o for o in options if o is not None), None)
    if kind == "string":
        if variant == "maximal":
            limit = min(int(schema.get("maxLength", 20_000)), 200_000)
            return _sample(schema, (WIDE * limit)[:limit])
        text = {
            "reserved": "x",
            "spaces": "\u3000\u2003 \t",
            "nul": "a\u0000b",
            "surrogate": "SURROGATE",
        }[variant]
        return _sample(schema, text) if variant != "spaces" else text
    return schema.get("default")


def encode(body: Any) -> bytes:
    """JSON bytes; the 'SURROGATE' marker becomes a lone surrogate escape, as a client could."""
    return json.dumps(body, ensure_ascii=False).replace('"SURROGATE"', '"\\ud800x"').encode()


def write_routes(doc: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, operations in doc["paths"].items():
        for method, operation in operations.items():
            if method in WRITE_METHODS:
                yield method.upper(), path, operation


def order(item: tuple[str, str, dict[str, Any]]) -> int:
    """Creates first, then changes and actions, then closes and deletes."""
    method, path, _ = item
    if method == "DELETE" or path.endswith("/close"):
        return 3
    if method == "POST" and "{" not in path:
        return 0
    return 1 if method in ("PUT", "PATCH") else 2


@pytest.fixture
def hostile_server(fresh_server: Callable[..., ServerProcess]) -> ServerProcess:
    return fresh_server()


def test_hostile_payloads_leave_every_projection_at_the_head(
    hostile_server: ServerProcess,
) -> None:
    server = hostile_server
    with server.client() as admin:
        issued = admin.post("/api/admin/tokens", json={"user": "mallory@example.com"})
        assert issued.status_code == 201, issued.text
        victim_token = admin.post("/api/admin/tokens", json={"user": "victim@example.com"})
        assert victim_token.status_code == 201, victim_token.text
        with server.client(issued.json()["token"]) as mallory:
            _attack(server, admin, mallory)
        # The victim, whose token was issued before the attack, is served normally after it.
        with server.client(victim_token.json()["token"]) as victim:
            r = victim.post("/api/tasks", json={"title": "still here"})
            assert r.status_code == 201, r.text
        _assert_spine_intact(server, admin)


def _attack(server: ServerProcess, admin: httpx.Client, mallory: httpx.Client) -> None:
    doc = admin.get("/schema/openapi.json").json()
    schemas = Schemas(doc)
    bot = f"evil{uuid.uuid4().hex[:8]}"
    ids = _resources(admin, mallory, bot)
    failures: list[str] = []
    for method, path, operation in sorted(write_routes(doc), key=order):
        client = admin if path.startswith("/api/admin") else mallory
        params = re.findall(r"{(\w+)}", path)
        unknown = [p for p in params if p not in ids]
        assert not unknown, f"{method} {path}: add a resource for {unknown} to _resources"
        url = path.format(**{p: ids[p] for p in params})
        content = operation.get("requestBody", {}).get("content", {})
        schema = content.get("application/json", {}).get("schema")
        variants = ("reserved", "maximal", "spaces", "nul", "surrogate") if schema else ("",)
        for variant in variants:
            body = encode(body_for(schemas, schema, variant)) if schema else None
            headers = {"Content-Type": "application/json"} if body is not None else {}
            r = client.request(method, url, content=body, headers=headers)
            if r.status_code >= 500:
                failures.append(f"{method} {path} [{variant}] -> {r.status_code}: {r.text[:300]}")
            unstorable = body is not None and (b"\\u0000" in body or b"\\ud800" in body)
            if unstorable and r.status_code < 300:
                failures.append(f"{method} {path} [{variant}] accepted unstorable text")
    r = admin.put("/api/admin/projections/tasks/policy", json={"policy": "stop"})
    assert r.status_code == 200, r.text  # the default again, for the tests that follow
    # The owners route may have handed the bot to someone else: an admin gives it back.
    r = admin.put(f"/api/bots/{bot}/owners", json={"owners": ["mallory@example.com"]})
    assert r.status_code == 200, r.text
    failures += _chat(mallory, bot)
    assert not failures, "\n".join(failures)


def _resources(admin: httpx.Client, mallory: httpx.Client, bot: str) -> dict[str, str]:
    """One resource of each kind the write routes name, owned by the hostile user."""
    ids: dict[str, str] = {"bot_id": bot}
    r = mallory.post("/api/tasks", json={"title": "mine"})
    assert r.status_code == 201, r.text
    ids["task_id"] = r.json()["id"]
    r = mallory.post("/api/paper", json={"title": "mine", "content": "c"})
    assert r.status_code == 201, r.text
    ids["doc_id"] = r.json()["id"]
    r = mallory.post("/api/designer/dialogs", json={"name": "probe", "bot_id": bot})
    assert r.status_code == 201, r.text
    ids["dialog_id"] = r.json()["id"]
    r = mallory.post("/api/sessions", json={"bot_id": bot})
    assert r.status_code == 201, r.text
    ids["session_id"] = r.json()["id"]
    r = admin.post("/api/admin/tokens", json={"user": "spare@example.com"})
    assert r.status_code == 201, r.text
    ids["token_id"] = r.json()["id"]
    r = mallory.post("/api/email/drafts", json={"subject": "mine"})
    assert r.status_code == 201, r.text
    ids["mail_id"] = r.json()["id"]
    # No such IMAP account (404): a real one would record its failing syncs in the log.
    ids["account_id"] = str(uuid.uuid4())
    ids["path"] = "hostile/probe.txt"  # a drive path: uploads and deletes of the user's own
    ids["name"] = "tasks"  # a projection: its policy, an online rebuild
    ids["letter_id"] = str(uuid.uuid4())  # no such dead letter: 404
    return ids


def _chat(mallory: httpx.Client, bot: str) -> list[str]:
    """Deploys each hostile dialog as the bot's `start` and talks to it for two turns."""
    failures = []
    for name, source in DIALOGS.items():
        created = mallory.post(
            "/api/designer/dialogs", json={"name": f"h_{name}", "bot_id": bot, "content": source}
        )
        assert created.status_code == 201, created.text
        dialog_id = created.json()["id"]
        deployed = mallory.post(f"/api/designer/dialogs/{dialog_id}/deploy")
        assert deployed.status_code in (200, 201), f"{name}: {deployed.text}"
        start = mallory.post(
            "/api/designer/dialogs",
            json={"name": "start", "bot_id": bot, "content": f'CALL "h_{name}"'},
        )
        if start.status_code == 409:  # replace the previous start
            listed = mallory.get("/api/designer/dialogs", params={"bot_id": bot, "limit": 200})
            old = next(d for d in listed.json()["data"] if d["name"] == "start")
            start = mallory.put(
                f"/api/designer/dialogs/{old['id']}", json={"content": f'CALL "h_{name}"'}
            )
            start_id = old["id"]
        else:
            start_id = start.json()["id"]
        assert start.status_code in (200, 201), start.text
        assert mallory.post(f"/api/designer/dialogs/{start_id}/deploy").status_code in (200, 201)
        session = mallory.post("/api/sessions", json={"bot_id": bot})
        assert session.status_code == 201, session.text
        for text in ("hi", "again"):
            r = mallory.post(
                f"/api/sessions/{session.json()['id']}/messages", json={"content": text}
            )
            if r.status_code != 200:
                failures.append(f"dialog {name} turn {text!r} -> {r.status_code}: {r.text[:300]}")
    return failures


def _assert_spine_intact(server: ServerProcess, admin: httpx.Client) -> None:
    """Every event decodes, through the API and the store; every projection reaches the head."""
    after = 0
    while True:
        r = admin.get("/api/admin/events", params={"after": after, "limit": 200})
        assert r.status_code == 200, r.text
        items = r.json()["data"]
        if not items:
            break
        after = items[-1]["id"]
    # A projection that cannot apply an event stops there: give each a bounded time to arrive.
    deadline = time.monotonic() + 30
    behind = _projections_behind(server)
    while behind and time.monotonic() < deadline:
        time.sleep(0.2)
        behind = _projections_behind(server)
    assert not behind, f"projections behind the log: {behind}"
    health = admin.get("/api/health")
    assert health.status_code == 200 and health.json()["status"] == "healthy", health.text


def _projections_behind(server: ServerProcess) -> dict[str, tuple[int, int]]:
    """{position key: (newest event of its topics, recorded position)} for those behind."""
    from infra.bootstrap import PROJECTIONS
    from infra.config import Settings
    from infra.eventstore import EventStoreAdapter, GBApplication
    from infra.kafka import Partitioned
    from infra.readstore import open_read_store
    from infra.runner import SingleLog

    settings = Settings.from_env(server.env)
    app = GBApplication(settings)
    read = open_read_store(settings)
    try:
        events = EventStoreAdapter(app)
        layout = Partitioned(settings.kafka_partitions) if settings.uses_kafka else SingleLog()
        newest: dict[str, int] = {}
        after = 0
        while batch := events.notifications(after, 1000, ()):
            for n in batch:
                events.decode(n)  # raises if any event cannot be decoded
                for projection in PROJECTIONS:
                    if n.topic in projection.topics:
                        key = layout.key(projection.name, str(n.originator_id))
                        newest[key] = n.id
            after = batch[-1].id
        behind = {}
        for key, nid in newest.items():
            stored = max(read.max_tracking_id(k) or 0 for k in {key, key.split(":", 1)[0]})
            if stored < nid:
                behind[key] = (nid, stored)
        return behind
    finally:
        app.close()
        read.datastore.close()


# --- random text through every command ---------------------------------------------------

# Any code point, surrogates and controls included: what a client can put in a JSON string.
ANY_TEXT = st.text(st.characters(codec=None, exclude_categories=()), min_size=1, max_size=40)
ECHO = 'HEAR text\nSET BOT MEMORY "last", text\nSET USER MEMORY text, text\nTALK text\n'


def _storable(text: str) -> bool:
    return not any(c == "\x00" or "\ud800" <= c <= "\udfff" for c in text)


def _send(client: httpx.Client, method: str, url: str, body: Any) -> httpx.Response:
    """JSON with \\u escapes, as any client may write a lone surrogate."""
    content = json.dumps(body, ensure_ascii=True).encode()
    r = client.request(method, url, content=content, headers={"Content-Type": "application/json"})
    assert r.status_code < 500, f"{method} {url} {body!r} -> {r.status_code}: {r.text[:300]}"
    return r


def test_random_text_through_every_command_reads_back_or_is_refused(
    hostile_server: ServerProcess,
) -> None:
    server = hostile_server
    with server.client() as admin:
        bot = f"text{uuid.uuid4().hex[:8]}"
        dialog = admin.post(
            "/api/designer/dialogs", json={"name": "start", "bot_id": bot, "content": ECHO}
        )
        assert dialog.status_code == 201, dialog.text
        assert admin.post(f"/api/designer/dialogs/{dialog.json()['id']}/deploy").status_code == 201

        @settings(
            max_examples=40,
            deadline=None,
            database=None,
            derandomize=True,
            suppress_health_check=list(HealthCheck),
        )
        @given(text=ANY_TEXT)
        def through_every_command(text: str) -> None:
            ok = _storable(text)
            padded = (
                f"t{text}"  # never whitespace alone: refusals below are for the text's code points
            )
            task = _send(admin, "POST", "/api/tasks", {"title": padded, "description": text})
            assert (task.status_code == 201) == ok, task.text
            if ok:
                got = admin.get(f"/api/tasks/{task.json()['id']}").json()
                assert (got["title"], got["description"]) == (padded.strip(), text)
                r = _send(admin, "PUT", f"/api/tasks/{got['id']}", {"description": padded})
                assert admin.get(f"/api/tasks/{got['id']}").json()["description"] == padded, r.text
            doc = _send(admin, "POST", "/api/paper", {"title": padded, "content": text})
            assert (doc.status_code == 201) == ok, doc.text
            if ok:
                got = admin.get(f"/api/paper/{doc.json()['id']}").json()
                assert (got["title"], got["content"]) == (padded.strip(), text)
            session = _send(
                admin, "POST", "/api/sessions", {"bot_id": bot, "metadata": {text: text}}
            )
            assert (session.status_code == 201) == ok, session.text
            if ok:
                sid = session.json()["id"]
                assert admin.get(f"/api/sessions/{sid}").json()["metadata"] == {text: text}
                for turn in ("hello", text):
                    r = _send(admin, "POST", f"/api/sessions/{sid}/messages", {"content": turn})
                    assert r.status_code == 200, r.text
            draft = _send(
                admin,
                "POST",
                "/api/designer/dialogs",
                {"name": f"d{uuid.uuid4().hex[:8]}", "bot_id": bot, "content": text},
            )
            assert (draft.status_code == 201) == ok, draft.text
            if ok:
                check = admin.post(f"/api/designer/dialogs/{draft.json()['id']}/validate")
                assert check.status_code == 200, check.text

        through_every_command()
        _assert_spine_intact(server, admin)


# --- bodies of any shape: 400, 413 or 415, never 500, nothing recorded ------------------

DEEP = 100_000  # levels: 200 KB, well under the body size limit


def _malformed(schemas: Schemas, schema: dict[str, Any] | None) -> dict[str, tuple[bytes, str]]:
    """Hostile bodies by name: (bytes, Content-Type)."""
    json_type = "application/json"
    outer = body_for(schemas, schema, "reserved") if schema else {"k": "v"}
    if not isinstance(outer, dict) or not outer:
        outer = {"k": "v"}
    first = next(iter(outer))
    valid = json.dumps(outer).encode()

    def inside(value: bytes) -> bytes:
        """`value` as the first field of an otherwise well-formed body."""
        return json.dumps({**outer, first: "HOLE"}).encode().replace(b'"HOLE"', value, 1)

    return {
        "deep arrays": (b"[" * DEEP + b"]" * DEEP, json_type),
        "deep objects": (b'{"a":' * DEEP + b"1" + b"}" * DEEP, json_type),
        "deep inside": (inside(b"[" * DEEP + b"]" * DEEP), json_type),
        "deep objects inside": (inside(b'{"a":' * DEEP + b"{}" + b"}" * DEEP), json_type),
        "unclosed deep": (b"[" * DEEP, json_type),
        "huge exponent": (inside(b"1e999999"), json_type),
        "huge integer": (inside(b"1" + b"0" * 5000), json_type),
        "invalid utf-8": (inside(b'"\xff\xfe\xc3"'), json_type),
        "duplicate keys": (b"{" + json.dumps(first).encode() + b": 1, " + valid[1:], json_type),
        "text/plain": (valid, "text/plain"),
        "form-encoded": (b"title=x&content=y", "application/x-www-form-urlencoded"),
        "no content type": (valid, ""),
        "empty": (b"", json_type),
        "null": (b"null", json_type),
        "top-level array": (b"[]", json_type),
        "top-level string": (b'"x"', json_type),
        "not json": (b"{'single': quotes}", json_type),
    }


def _event_head(admin: httpx.Client) -> int:
    after = 0
    while True:
        r = admin.get("/api/admin/events", params={"after": after, "limit": 200})
        assert r.status_code == 200, r.text
        items = r.json()["data"]
        if not items:
            return after
        after = items[-1]["id"]


def test_malformed_bodies_on_every_write_route_are_refused(
    hostile_server: ServerProcess,
) -> None:
    """Deep nesting, huge numbers, invalid UTF-8, repeated keys, wrong or missing content
    types, empty and non-object bodies, on every write route of the OpenAPI document: each is
    a 400, 413 or 415 in the error envelope, and nothing reaches the event log."""
    with hostile_server.client() as admin:
        issued = admin.post("/api/admin/tokens", json={"user": "mallory@example.com"})
        assert issued.status_code == 201, issued.text
        with hostile_server.client(issued.json()["token"]) as mallory:
            doc = admin.get("/schema/openapi.json").json()
            schemas = Schemas(doc)
            ids = _resources(admin, mallory, f"evil{uuid.uuid4().hex[:8]}")
            head = _event_head(admin)
            failures: list[str] = []
            routes = 0
            for method, path, operation in sorted(write_routes(doc), key=order):
                routes += 1
                client = admin if path.startswith("/api/admin") else mallory
                url = path.format(**{p: ids[p] for p in re.findall(r"{(\w+)}", path)})
                content = operation.get("requestBody", {}).get("content", {})
                schema = content.get("application/json", {}).get("schema")
                for name, (body, media) in _malformed(schemas, schema).items():
                    if not schema and not body:
                        continue  # an empty body is how a route without one is called
                    headers = {"Content-Type": media} if media else {}
                    r = client.request(method, url, content=body, headers=headers)
                    expected = {415} if schema and name in ("text/plain", "form-encoded") else {400}
                    if schema and name == "no content type":
                        expected = {415}
                    if "multipart/form-data" in content:
                        # An upload (POST /api/drive/{path}) streams multipart/form-data and
                        # reads no JSON: each of these bodies is the wrong media type.
                        expected = {415}
                    try:
                        error = r.json()["error"]
                        shaped = set(error) == {"code", "message", "details"} and error["message"]
                    except (ValueError, KeyError, TypeError):
                        shaped = False
                    if r.status_code not in expected or not shaped:
                        failures.append(
                            f"{method} {path} [{name}] -> {r.status_code}: {r.text[:200]}"
                        )
            assert routes >= 15
            assert not failures, "\n".join(failures)
            assert _event_head(admin) == head, "a malformed body reached the event log"
