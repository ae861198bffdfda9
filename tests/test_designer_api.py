"""Designer over HTTP: a bot's dialogs, validation with positions, deploys and versions.

Dialogs are bot configuration that every user can read, so each test works in a bot of
its own (the list filters by bot_id).
"""

from __future__ import annotations

import hashlib
import threading
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from eventsourcing.persistence import Tracking

from domain.designer import Dialog, DialogNameClaim, DuplicateDialog, InvalidDialog
from infra.config import Settings
from infra.readstore import open_read_store
from projections.designer import DesignerProjection, dialog_source, live_dialog
from tests.profiles import drop_read_models
from tests.server import ServerProcess, UserClient, gbserver

BASE = "/api/designer/dialogs"
DIALOG_FIELDS = {
    "id",
    "bot_id",
    "name",
    "content",
    "owner",
    "version",
    "created_at",
    "updated_at",
    "updated_by",
    "deployed_version",
    "deployed_at",
    "deployed_by",
    "has_undeployed_changes",
}
VERSION_FIELDS = {"id", "bot_id", "name", "version", "content_hash", "deployed_at", "deployed_by"}
GREETING = 'TALK "Hello!"\nanswer = HEAR'
BROKEN = 'TALK "hi"\nTLAK "x"\nIF a = 1 THEN\n  TALK "y"\n'


def new_bot() -> str:
    return f"bot-{uuid.uuid4().hex[:12]}"


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def make_dialog(
    c: httpx.Client, bot: str, name: str = "greeting", content: str = GREETING
) -> dict[str, object]:
    r = c.post(BASE, json={"name": name, "content": content, "bot_id": bot})
    assert r.status_code == 201, r.text
    body: dict[str, object] = r.json()
    return body


def test_crud(make_user: Callable[..., UserClient]) -> None:
    c, bot = make_user(), new_bot()
    r = c.post(BASE, json={"name": "greeting", "content": GREETING, "bot_id": bot})
    assert r.status_code == 201, r.text
    dialog = r.json()
    assert set(dialog) == DIALOG_FIELDS
    assert r.headers["location"] == f"{BASE}/{dialog['id']}"
    assert r.headers["etag"] == '"1"'
    assert (dialog["name"], dialog["bot_id"], dialog["content"], dialog["owner"]) == (
        "greeting",
        bot,
        GREETING,
        c.email,
    )
    assert (dialog["version"], dialog["deployed_version"], dialog["deployed_at"]) == (1, None, None)
    assert dialog["has_undeployed_changes"] is True
    assert dialog["created_at"].endswith("Z") and dialog["updated_by"] == c.email
    uuid.UUID(dialog["id"])

    assert c.get(f"{BASE}/{dialog['id']}").json() == dialog
    listed = c.get(BASE, params={"bot_id": bot}).json()
    assert listed == {
        "data": [dialog],
        "pagination": {"total": 1, "limit": 50, "offset": 0, "has_more": False},
    }

    updated = c.put(f"{BASE}/{dialog['id']}", json={"content": 'TALK "Hi"'}).json()
    assert (updated["content"], updated["name"], updated["version"]) == ('TALK "Hi"', "greeting", 2)
    renamed = c.put(f"{BASE}/{dialog['id']}", json={"name": "welcome"}).json()
    assert (renamed["name"], renamed["content"], renamed["version"]) == ("welcome", 'TALK "Hi"', 3)
    unchanged = c.put(f"{BASE}/{dialog['id']}", json={}).json()
    assert unchanged == renamed

    assert c.delete(f"{BASE}/{dialog['id']}").status_code == 204
    assert c.get(f"{BASE}/{dialog['id']}").status_code == 404
    assert c.delete(f"{BASE}/{dialog['id']}").status_code == 404
    assert c.get(BASE, params={"bot_id": bot}).json()["data"] == []


def test_bot_defaults_and_bas_suffix(admin: httpx.Client) -> None:
    c = admin  # `default` belongs to admins (tests/test_bots_api.py)
    name = f"w{uuid.uuid4().hex[:10]}"
    dialog = c.post(BASE, json={"name": f"{name}.bas"}).json()
    assert (dialog["bot_id"], dialog["name"], dialog["content"]) == ("default", name, "")
    found = c.get(BASE, params={"bot_id": "default", "name": f"{name.upper()}.BAS"}).json()
    assert [d["id"] for d in found["data"]] == [dialog["id"]]
    assert c.delete(f"{BASE}/{dialog['id']}").status_code == 204


def test_list_filters_orders_and_pages(make_user: Callable[..., UserClient]) -> None:
    c, bot, other = make_user(), new_bot(), new_bot()
    ids = {n: make_dialog(c, bot, n)["id"] for n in ("start", "Billing", "faq")}
    elsewhere = make_dialog(c, other, "start")

    listed = c.get(BASE, params={"bot_id": bot}).json()
    assert [d["name"] for d in listed["data"]] == ["Billing", "faq", "start"]
    assert listed["pagination"]["total"] == 3

    first = c.get(BASE, params={"bot_id": bot, "limit": 2}).json()
    assert [d["name"] for d in first["data"]] == ["Billing", "faq"]
    assert first["pagination"] == {"total": 3, "limit": 2, "offset": 0, "has_more": True}
    rest = c.get(BASE, params={"bot_id": bot, "limit": 2, "offset": 2}).json()
    assert [d["name"] for d in rest["data"]] == ["start"]
    assert rest["pagination"]["has_more"] is False

    by_name = c.get(BASE, params={"bot_id": bot, "name": "billing"}).json()["data"]
    assert [d["id"] for d in by_name] == [ids["Billing"]]
    everywhere = c.get(BASE, params={"name": "start", "limit": 200}).json()["data"]
    assert {ids["start"], elsewhere["id"]} <= {d["id"] for d in everywhere}

    for params in ({"bot_id": "no spaces"}, {"name": "a/b"}, {"limit": 0}, {"offset": -1}):
        r = c.get(BASE, params=params)
        assert r.status_code == 400, params
        assert r.json()["error"]["code"] == "BAD_REQUEST"


def test_validate_reports_errors_and_warnings_with_positions(
    make_user: Callable[..., UserClient],
) -> None:
    c, bot = make_user(), new_bot()
    broken = make_dialog(c, bot, "broken", BROKEN)
    r = c.post(f"{BASE}/{broken['id']}/validate")
    assert r.status_code == 200, r.text
    report = r.json()
    assert set(report) == {"valid", "errors", "warnings"}
    assert report["valid"] is False
    assert all(set(item) == {"line", "column", "message"} for item in report["errors"])
    assert [(e["line"], e["column"]) for e in report["errors"]] == [(2, 1), (3, 1)]
    assert "TLAK" in report["errors"][0]["message"] and "TALK" in report["errors"][0]["message"]
    assert "END IF" in report["errors"][1]["message"]

    unterminated = make_dialog(c, bot, "unterminated", 'x = 1\nTALK x\nTALK "never closed\n')
    errors = c.post(f"{BASE}/{unterminated['id']}/validate").json()["errors"]
    assert [(e["line"], e["column"]) for e in errors] == [(3, 6)]
    assert "unterminated" in errors[0]["message"]

    fine = make_dialog(c, bot, "greeting", GREETING)
    report = c.post(f"{BASE}/{fine['id']}/validate").json()
    assert report["valid"] is True and report["errors"] == []
    assert [(w["line"], w["column"]) for w in report["warnings"]] == [(2, 1)]
    assert "answer" in report["warnings"][0]["message"]
    # Validating changes nothing.
    assert c.get(f"{BASE}/{fine['id']}").json() == fine


def test_call_resolves_the_bots_other_dialogs(make_user: Callable[..., UserClient]) -> None:
    c, bot, other_bot = make_user(), new_bot(), new_bot()
    caller = make_dialog(c, bot, "start", 'CALL "other.bas"\n')
    make_dialog(c, other_bot, "other", 'TALK "elsewhere"')
    report = c.post(f"{BASE}/{caller['id']}/validate").json()
    assert report["valid"] is False
    assert [(e["line"], e["column"]) for e in report["errors"]] == [(1, 6)]

    make_dialog(c, bot, "Other.bas", 'TALK "here"')
    assert c.post(f"{BASE}/{caller['id']}/validate").json()["valid"] is True
    assert c.post(f"{BASE}/{caller['id']}/deploy").status_code == 201


def test_deploy_refuses_an_invalid_dialog(make_user: Callable[..., UserClient]) -> None:
    c, bot = make_user(), new_bot()
    dialog = make_dialog(c, bot, "broken", BROKEN)
    r = c.post(f"{BASE}/{dialog['id']}/deploy")
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["code"] == "BAD_REQUEST" and "not deployed" in error["message"]
    assert [(d["line"], d["column"]) for d in error["details"]] == [(2, 1), (3, 1)]
    assert all(set(d) == {"line", "column", "message"} for d in error["details"])
    assert c.get(f"{BASE}/{dialog['id']}").json() == dialog
    versions = c.get(f"{BASE}/{dialog['id']}/versions").json()
    assert versions["data"] == [] and versions["pagination"]["total"] == 0


def test_deploys_are_numbered_versions_with_their_source(
    make_user: Callable[..., UserClient],
) -> None:
    c, bot = make_user(), new_bot()
    dialog = make_dialog(c, bot, "greeting", GREETING)
    url = f"{BASE}/{dialog['id']}"

    r = c.post(f"{url}/deploy")
    assert r.status_code == 201, r.text
    first = r.json()
    assert set(first) == VERSION_FIELDS
    assert (first["id"], first["name"], first["bot_id"], first["version"]) == (
        dialog["id"],
        "greeting",
        bot,
        1,
    )
    assert first["deployed_by"] == c.email and first["deployed_at"].endswith("Z")
    assert first["content_hash"] == sha256(GREETING)
    assert r.headers["location"] == f"{url}/versions/1"

    live = c.get(url).json()
    assert (live["deployed_version"], live["deployed_at"], live["deployed_by"]) == (
        1,
        first["deployed_at"],
        c.email,
    )
    assert live["has_undeployed_changes"] is False
    assert live["version"] == 2 and live["content"] == GREETING

    edited = c.put(url, json={"content": 'TALK "Hello again!"'}).json()
    assert edited["has_undeployed_changes"] is True and edited["deployed_version"] == 1
    second = c.post(f"{url}/deploy").json()
    assert second["version"] == 2 and second["content_hash"] == sha256('TALK "Hello again!"')
    assert c.get(url).json()["deployed_version"] == 2

    # A deploy with no change since still makes a new version.
    third = c.post(f"{url}/deploy").json()
    assert third["version"] == 3 and third["content_hash"] == second["content_hash"]

    versions = c.get(f"{url}/versions").json()
    assert versions["data"] == [first, second, third]
    assert versions["pagination"] == {"total": 3, "limit": 50, "offset": 0, "has_more": False}
    paged = c.get(f"{url}/versions", params={"limit": 1, "offset": 1}).json()
    assert paged["data"] == [second] and paged["pagination"]["has_more"] is True

    v1 = c.get(f"{url}/versions/1").json()
    assert v1 == {**first, "content": GREETING}
    assert c.get(f"{url}/versions/2").json()["content"] == 'TALK "Hello again!"'
    assert c.get(f"{url}/versions/4").status_code == 404
    assert c.get(f"{url}/versions/0").status_code == 400

    assert c.delete(url).status_code == 204
    assert c.get(f"{url}/versions").status_code == 404
    assert c.get(f"{url}/versions/1").status_code == 404


def test_if_match_guards_writes_and_deploys(make_user: Callable[..., UserClient]) -> None:
    c, bot = make_user(), new_bot()
    dialog = make_dialog(c, bot)
    url = f"{BASE}/{dialog['id']}"
    stale = {"If-Match": '"7"'}
    for r in (
        c.put(url, json={"content": "x = 1"}, headers=stale),
        c.post(f"{url}/deploy", headers=stale),
        c.delete(url, headers=stale),
    ):
        assert r.status_code == 409 and r.json()["error"]["code"] == "CONFLICT"
    assert c.post(f"{url}/deploy", headers={"If-Match": '"1"'}).status_code == 201
    assert c.get(url).headers["etag"] == '"2"'


def test_a_bot_has_one_dialog_per_name(make_user: Callable[..., UserClient]) -> None:
    c, bot, other = make_user(), new_bot(), new_bot()
    first = make_dialog(c, bot, "greeting")
    for name in ("greeting", "GREETING", "greeting.bas"):
        r = c.post(BASE, json={"name": name, "bot_id": bot})
        assert r.status_code == 409, name
        assert r.json()["error"]["code"] == "CONFLICT"
    assert make_dialog(c, other, "greeting")["id"] != first["id"]

    second = make_dialog(c, bot, "farewell")
    r = c.put(f"{BASE}/{second['id']}", json={"name": "Greeting"})
    assert r.status_code == 409 and r.json()["error"]["code"] == "CONFLICT"
    assert c.get(f"{BASE}/{second['id']}").json() == second

    # Renaming and deleting free a name.
    assert c.put(f"{BASE}/{first['id']}", json={"name": "hello"}).status_code == 200
    assert c.put(f"{BASE}/{second['id']}", json={"name": "greeting"}).status_code == 200
    assert c.post(BASE, json={"name": "farewell", "bot_id": bot}).status_code == 201
    assert c.delete(f"{BASE}/{first['id']}").status_code == 204
    again = make_dialog(c, bot, "hello")
    assert again["id"] != first["id"] and again["version"] == 1
    names = [d["name"] for d in c.get(BASE, params={"bot_id": bot}).json()["data"]]
    assert names == ["farewell", "greeting", "hello"]
    # A case-only rename keeps the name.
    assert c.put(f"{BASE}/{again['id']}", json={"name": "Hello"}).json()["name"] == "Hello"


def test_concurrent_creates_of_one_name_make_one_dialog(
    make_user: Callable[..., UserClient],
) -> None:
    c, bot = make_user(), new_bot()
    barrier = threading.Barrier(4)
    statuses: list[int] = []

    def post() -> None:
        with httpx.Client(base_url=str(c.base_url), headers=c.headers) as client:
            barrier.wait()
            r = client.post(BASE, json={"name": "start", "bot_id": bot})
            statuses.append(r.status_code)

    threads = [threading.Thread(target=post) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(statuses) == [201, 409, 409, 409]
    assert c.get(BASE, params={"bot_id": bot}).json()["pagination"]["total"] == 1


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"content": "TALK 1"},
        {"name": ""},
        {"name": 3},
        {"name": "has space"},
        {"name": "-dash-first"},
        {"name": "dots.in.name"},
        {"name": "x" * 101},
        {"name": "ok", "content": None},
        {"name": "ok", "content": "x" * 200_001},
        {"name": "ok", "bot_id": ""},
        {"name": "ok", "bot_id": "a bot"},
        {"name": "ok", "extra": 1},
    ],
)
def test_invalid_dialogs_are_400(make_user: Callable[..., UserClient], body: object) -> None:
    c = make_user()
    r = c.post(BASE, json=body)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["code"] == "BAD_REQUEST"


def test_invalid_updates_are_400(make_user: Callable[..., UserClient]) -> None:
    c, bot = make_user(), new_bot()
    dialog = make_dialog(c, bot)
    for body in ({"name": ""}, {"content": 5}, {"bot_id": "other"}, {"name": "a b"}):
        r = c.put(f"{BASE}/{dialog['id']}", json=body)
        assert r.status_code == 400, body
        assert r.json()["error"]["code"] == "BAD_REQUEST"
    assert c.get(f"{BASE}/{dialog['id']}").json() == dialog


def test_longest_names_and_sources_are_accepted(make_user: Callable[..., UserClient]) -> None:
    c, bot = make_user(), new_bot()
    source = "' " + "x" * 199_990 + "\n"
    dialog = make_dialog(c, bot, "n" * 100 + ".bas", source)
    assert dialog["name"] == "n" * 100 and dialog["content"] == source


def test_unknown_dialogs_are_404(make_user: Callable[..., UserClient]) -> None:
    c = make_user()
    url = f"{BASE}/{uuid.uuid4()}"
    for r in (
        c.get(url),
        c.put(url, json={"content": "x = 1"}),
        c.delete(url),
        c.post(f"{url}/validate"),
        c.post(f"{url}/deploy"),
        c.get(f"{url}/versions"),
        c.get(f"{url}/versions/1"),
    ):
        assert r.status_code == 404, r.request.url
        assert r.json()["error"]["code"] == "NOT_FOUND"


def test_no_token_is_401(server: ServerProcess, make_user: Callable[..., UserClient]) -> None:
    dialog = make_dialog(make_user(), new_bot())
    url = f"{BASE}/{dialog['id']}"
    with server.client(token=None) as anonymous:
        for method, path in [
            ("GET", BASE),
            ("POST", BASE),
            ("GET", url),
            ("PUT", url),
            ("DELETE", url),
            ("POST", f"{url}/validate"),
            ("POST", f"{url}/deploy"),
            ("GET", f"{url}/versions"),
            ("GET", f"{url}/versions/1"),
        ]:
            r = anonymous.request(method, path, json={"name": "x"})
            assert r.status_code == 401, (method, path)
            assert r.json()["error"]["code"] == "UNAUTHORIZED"


def test_everyone_reads_only_the_bots_owners_and_admins_change(
    make_user: Callable[..., UserClient], admin: httpx.Client
) -> None:
    author, reader, co_owner, bot = make_user(), make_user(), make_user(), new_bot()
    dialog = make_dialog(author, bot)
    url = f"{BASE}/{dialog['id']}"
    author.post(f"{url}/deploy")
    dialog = author.get(url).json()

    assert reader.get(url).json() == dialog
    assert [d["id"] for d in reader.get(BASE, params={"bot_id": bot}).json()["data"]] == [
        dialog["id"]
    ]
    assert reader.post(f"{url}/validate").json()["valid"] is True
    assert reader.get(f"{url}/versions").json()["pagination"]["total"] == 1
    assert reader.get(f"{url}/versions/1").json()["content"] == GREETING
    for r in (
        reader.put(url, json={"content": 'TALK "mine now"'}),
        reader.post(f"{url}/deploy"),
        reader.delete(url),
        reader.post(BASE, json={"name": "mine", "bot_id": bot}),
    ):
        assert r.status_code == 403
        assert r.json()["error"]["code"] == "FORBIDDEN"
    assert author.get(url).json() == dialog

    # Another owner of the bot changes the author's dialog; the author stays its creator.
    owners = {"owners": [author.email, co_owner.email]}
    assert author.put(f"/api/bots/{bot}/owners", json=owners).status_code == 200
    shared = co_owner.put(url, json={"content": 'TALK "co-owner"'}).json()
    assert shared["updated_by"] == co_owner.email and shared["owner"] == author.email

    changed = admin.put(url, json={"content": 'TALK "by admin"'}).json()
    assert changed["updated_by"] != author.email and changed["owner"] == author.email
    assert admin.post(f"{url}/deploy").json()["version"] == 2
    assert admin.delete(url).status_code == 204


def test_idempotency_key_creates_once(make_user: Callable[..., UserClient]) -> None:
    c, bot = make_user(), new_bot()
    key = {"Idempotency-Key": f"k-{uuid.uuid4()}"}
    body = {"name": "start", "content": GREETING, "bot_id": bot}
    first = c.post(BASE, json=body, headers=key)
    again = c.post(BASE, json=body, headers=key)
    assert first.status_code == again.status_code == 201, again.text
    assert first.json() == again.json()
    assert again.headers["idempotent-replayed"] == "true"
    other = c.post(BASE, json={**body, "name": "other"}, headers=key)
    assert other.status_code == 409
    # Without the key, the same body is a second dialog of the same name.
    assert c.post(BASE, json=body).status_code == 409
    assert c.get(BASE, params={"bot_id": bot}).json()["pagination"]["total"] == 1


def test_unicode_source_round_trips(make_user: Callable[..., UserClient]) -> None:
    c, bot = make_user(), new_bot()
    source = 'TALK "Olá, café ☕ — 日本語 🎉"\n'
    dialog = make_dialog(c, bot, "unicode", source)
    assert c.get(f"{BASE}/{dialog['id']}").json()["content"] == source
    deployed = c.post(f"{BASE}/{dialog['id']}/deploy").json()
    assert deployed["content_hash"] == sha256(source)
    assert c.get(f"{BASE}/{dialog['id']}/versions/1").json()["content"] == source


def test_idempotency_key_deploys_once(make_user: Callable[..., UserClient]) -> None:
    c, bot = make_user(), new_bot()
    dialog = make_dialog(c, bot)
    url = f"{BASE}/{dialog['id']}"
    key = {"Idempotency-Key": f"k-{uuid.uuid4()}"}
    first = c.post(f"{url}/deploy", headers=key)
    # Even after the draft changes (here: breaks), a retry answers with the first deploy.
    c.put(url, json={"content": BROKEN})
    again = c.post(f"{url}/deploy", headers=key)
    assert first.status_code == again.status_code == 201, again.text
    assert first.json() == again.json() and again.json()["version"] == 1
    assert again.headers["idempotent-replayed"] == "true"
    assert again.headers["location"] == f"{url}/versions/1"
    assert c.get(f"{url}/versions").json()["pagination"]["total"] == 1
    other = make_dialog(c, bot, "other")
    assert c.post(f"{BASE}/{other['id']}/deploy", headers=key).status_code == 409


def test_openapi_describes_the_designer(server: ServerProcess) -> None:
    spec = httpx.get(f"{server.url}/schema/openapi.json").json()
    for path in (
        "/api/designer/dialogs",
        "/api/designer/dialogs/{dialog_id}",
        "/api/designer/dialogs/{dialog_id}/validate",
        "/api/designer/dialogs/{dialog_id}/deploy",
        "/api/designer/dialogs/{dialog_id}/versions",
        "/api/designer/dialogs/{dialog_id}/versions/{version}",
    ):
        assert path in spec["paths"], path
    schemas = spec["components"]["schemas"]
    assert {"CreateDialog", "UpdateDialog", "DialogView", "ValidationReport"} <= set(schemas)
    assert schemas["CreateDialog"]["additionalProperties"] is False
    assert "201" in spec["paths"]["/api/designer/dialogs/{dialog_id}/deploy"]["post"]["responses"]


def test_rebuild_gives_the_same_dialogs_and_versions(
    fresh_server: Callable[..., ServerProcess],
) -> None:
    srv = fresh_server()
    with srv.client() as c:
        bot = new_bot()
        ids = [make_dialog(c, bot, f"d{i}", f'TALK "v1 {i}"')["id"] for i in range(5)]
        for i, dialog_id in enumerate(ids):
            url = f"{BASE}/{dialog_id}"
            c.post(f"{url}/deploy")
            c.put(url, json={"content": f'TALK "v2 {i}"'})
            if i % 2:
                c.post(f"{url}/deploy")
            if i == 3:
                c.put(url, json={"name": "renamed"})
        c.delete(f"{BASE}/{ids[4]}")
        urls = [f"{BASE}?bot_id={bot}", f"{BASE}?name=renamed"]
        for dialog_id in ids:
            urls += [f"{BASE}/{dialog_id}", f"{BASE}/{dialog_id}/versions"]
            urls += [f"{BASE}/{dialog_id}/versions/{n}" for n in (1, 2)]
        before = [c.get(u).content for u in urls]
    srv.stop()
    drop_read_models(srv.env, srv.data_dir)
    assert "designer:" in gbserver("rebuild", env=srv.env).stdout
    srv.start()
    with srv.client() as c:
        assert [c.get(u).content for u in urls] == before


# --- the read side the Conversations work loads dialogs from (no server) ------------------


def test_deploy_is_a_domain_rule() -> None:
    dialog = Dialog(owner="o@x.io", bot_id="b", name="start", content=BROKEN)
    with pytest.raises(InvalidDialog) as refused:
        dialog.deploy("o@x.io", (), http_allowed=False)
    assert [(d.line, d.column) for d in refused.value.report.errors] == [(2, 1), (3, 1)]
    assert dialog.deployed_version == 0
    dialog.edit("o@x.io", {"content": 'CALL "other.bas"'})
    with pytest.raises(InvalidDialog):
        dialog.deploy("o@x.io", {"start"}, http_allowed=False)
    assert dialog.deploy("o@x.io", {"start", "Other"}, http_allowed=False) == 1
    assert dialog.deploy("o@x.io", {"start", "Other"}, http_allowed=False) == 2
    topics = [getattr(type(e), "TOPIC") for e in dialog.collect_events()]  # noqa: B009
    assert topics == [
        "gbserver.designer.DialogCreated",
        "gbserver.designer.DialogEdited",
        "gbserver.designer.DialogDeployed",
        "gbserver.designer.DialogDeployed",
    ]
    claim = DialogNameClaim(bot_id="b", name="start", dialog_id=str(dialog.id))
    with pytest.raises(DuplicateDialog):
        claim.claim("Start", "another")


def test_conversations_load_the_version_they_started_with(tmp_path: Path) -> None:
    store = open_read_store(Settings(data_dir=tmp_path))
    projection = DesignerProjection(store)
    dialog = Dialog(owner="o@x.io", bot_id="b", name="start", content='TALK "one"')
    dialog.deploy("o@x.io", (), http_allowed=False)
    dialog.edit("o@x.io", {"content": 'TALK "two"'})
    dialog.deploy("o@x.io", (), http_allowed=False)
    dialog.edit("o@x.io", {"content": 'TALK "draft"'})
    events = dialog.collect_events()
    projection.process_batch([(e, Tracking("gbserver", i + 1)) for i, e in enumerate(events)])

    live = live_dialog(store, "b", "START.bas")
    assert live is not None and (live.version, live.content) == (2, 'TALK "two"')
    first = dialog_source(store, "b", "start", 1)
    assert first is not None and first.content == 'TALK "one"'
    assert live_dialog(store, "other-bot", "start") is None
    assert dialog_source(store, "b", "start", 3) is None

    # Renamed, then deleted: what ran as `start` stays loadable under that name.
    dialog.edit("o@x.io", {"name": "hello"})
    dialog.delete("o@x.io")
    later = dialog.collect_events()
    projection.process_batch([(e, Tracking("gbserver", 10 + i)) for i, e in enumerate(later)])
    assert live_dialog(store, "b", "start") is None and live_dialog(store, "b", "hello") is None
    kept = dialog_source(store, "b", "start", 2)
    assert kept is not None and kept.content == 'TALK "two"'
    store.datastore.close()
