"""Bots have owners: the first dialog's creator owns a bot; only owners and admins write its
dialogs; `default` belongs to admins; `GET /api/bots`, `GET/PUT /api/bots/:id/owners`."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path

import httpx
import pytest
from eventsourcing.persistence import Tracking

from commands.admin import BOOTSTRAP_USER
from commands.bots import BotCommands, SetOwners
from commands.designer import CreateDialog, DesignerCommands, UpdateDialog
from domain.bots import Bot, NoOwners
from domain.common import Actor, Forbidden
from domain.designer import Dialog
from infra.config import Settings
from infra.eventstore import EventStoreAdapter, GBApplication
from infra.readstore import open_read_store
from projections.bots import BotsProjection, bot_owners, list_bots
from projections.designer import DesignerProjection
from tests.server import ServerProcess, UserClient

DIALOGS = "/api/designer/dialogs"
BOTS = "/api/bots"
THIEF = """TALK "To verify your account, what is your card number?"
HEAR card
CREATE TASK "card " + card, "mallory@example.com", "2030-01-01", "high"
"""
GREETING = 'TALK "Hello!"\nHEAR answer\nTALK "You said " + answer'
BOT_FIELDS = {
    "id",
    "owners",
    "dialogs",
    "created_at",
    "created_by",
    "updated_at",
    "updated_by",
    "version",
}


def new_bot() -> str:
    return f"bot-{uuid.uuid4().hex[:12]}"


def create(c: httpx.Client, bot: str, name: str = "start", content: str = GREETING) -> str:
    r = c.post(DIALOGS, json={"name": name, "content": content, "bot_id": bot})
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def email(c: httpx.Client) -> str:
    """The user a make_user client acts as."""
    return str(c.email)  # type: ignore[attr-defined]


def forbidden(r: httpx.Response) -> bool:
    return r.status_code == 403 and r.json()["error"]["code"] == "FORBIDDEN"


def owners_of(c: httpx.Client, bot: str) -> list[str]:
    r = c.get(f"{BOTS}/{bot}/owners")
    assert r.status_code == 200, r.text
    owners: list[str] = r.json()["owners"]
    return owners


# --- the reproduction ---------------------------------------------------------------------


def test_a_user_cannot_deploy_start_of_default_nor_of_another_users_bot(
    make_user: Callable[..., UserClient], admin: httpx.Client
) -> None:
    mallory, alice, bob = make_user(), make_user(), make_user()

    # `default` belongs to admins: a user can neither add a dialog to it nor touch its dialogs.
    r = mallory.post(DIALOGS, json={"name": "start", "content": THIEF})
    assert forbidden(r), r.text
    assert "admins" in r.json()["error"]["message"]
    assert forbidden(mallory.post(DIALOGS, json={"name": "start", "bot_id": "default"}))
    admins = create(admin, "default", f"welcome_{uuid.uuid4().hex[:8]}")
    url = f"{DIALOGS}/{admins}"
    for r in (
        mallory.put(url, json={"content": THIEF}),
        mallory.post(f"{url}/deploy"),
        mallory.delete(url),
    ):
        assert forbidden(r), r.text
    assert mallory.post(f"{url}/validate").json()["valid"] is True  # reading stays open
    assert admin.post(f"{url}/deploy").status_code == 201
    assert admin.delete(url).status_code == 204
    mine = mallory.get(DIALOGS, params={"bot_id": "default", "limit": 200}).json()["data"]
    assert all(d["owner"] != email(mallory) for d in mine)

    # Another user's bot: Alice's `start` stays hers, and so does the bot.
    bot = new_bot()
    start = create(alice, bot, "start", GREETING)
    url = f"{DIALOGS}/{start}"
    for r in (
        mallory.post(DIALOGS, json={"name": "other", "content": THIEF, "bot_id": bot}),
        mallory.put(url, json={"content": THIEF}),
        mallory.post(f"{url}/deploy"),
        mallory.delete(url),
    ):
        assert forbidden(r), r.text
        assert bot in r.json()["error"]["message"]
    assert alice.post(f"{url}/deploy").status_code == 201
    assert alice.get(url).json()["content"] == GREETING

    # Bob chatting with Alice's bot talks to Alice's dialog.
    opened = bob.post("/api/sessions", json={"bot_id": bot})
    assert opened.status_code == 201, opened.text
    said = bob.post(f"/api/sessions/{opened.json()['id']}/messages", json={"content": "hi"})
    assert said.status_code == 200, said.text
    reply = said.json()
    assert reply["content"] == "Hello!"
    assert "card" not in reply["content"]

    # An admin may change and deploy any bot's dialogs.
    assert admin.put(url, json={"content": 'TALK "by admin"'}).status_code == 200
    deployed = admin.post(f"{url}/deploy")
    assert deployed.status_code == 201 and deployed.json()["version"] == 2
    assert admin.post(DIALOGS, json={"name": "extra", "bot_id": bot}).status_code == 201
    assert owners_of(alice, bot) == [email(alice)]


# --- ownership ----------------------------------------------------------------------------


def test_the_first_dialog_makes_its_creator_the_owner(
    make_user: Callable[..., UserClient],
) -> None:
    alice, bob = make_user(), make_user()
    bot = new_bot()
    assert alice.get(f"{BOTS}/{bot}/owners").status_code == 404
    first = create(alice, bot)
    r = alice.get(f"{BOTS}/{bot}/owners")
    assert r.status_code == 200, r.text
    assert r.json() == {"bot_id": bot, "owners": [email(alice)], "version": 1}
    assert r.headers["etag"] == '"1"'
    assert forbidden(bob.get(f"{BOTS}/{bot}/owners"))

    # Owners share the bot: Bob, once added, changes and deploys Alice's dialogs.
    assert forbidden(bob.put(f"{DIALOGS}/{first}", json={"content": 'TALK "bob"'}))
    r = alice.put(f"{BOTS}/{bot}/owners", json={"owners": [email(alice), email(bob)]})
    assert r.status_code == 200, r.text
    assert r.json() == {"bot_id": bot, "owners": [email(alice), email(bob)], "version": 2}
    assert r.headers["etag"] == '"2"'
    assert bob.put(f"{DIALOGS}/{first}", json={"content": 'TALK "bob"'}).status_code == 200
    assert bob.post(f"{DIALOGS}/{first}/deploy").status_code == 201
    second = create(bob, bot, "second")
    assert [b["id"] for b in bob.get(BOTS).json()["data"]] == [bot]

    # Alice leaves: the answer still shows her the list she set, then she is out.
    r = alice.put(f"{BOTS}/{bot}/owners", json={"owners": [email(bob)]})
    assert r.status_code == 200 and r.json()["owners"] == [email(bob)]
    assert forbidden(alice.get(f"{BOTS}/{bot}/owners"))
    assert forbidden(alice.delete(f"{DIALOGS}/{second}"))
    assert forbidden(alice.put(f"{BOTS}/{bot}/owners", json={"owners": [email(alice)]}))
    assert alice.get(BOTS).json()["data"] == []
    assert bob.delete(f"{DIALOGS}/{first}").status_code == 204


def race(users: Sequence[httpx.Client], bot: str) -> dict[str, int]:
    """Each user creates a dialog in the bot at the same moment: {email: status}."""
    barrier = threading.Barrier(len(users))
    statuses: dict[str, int] = {}

    def post(user: httpx.Client) -> None:
        with httpx.Client(base_url=str(user.base_url), headers=user.headers) as c:
            barrier.wait()
            r = c.post(DIALOGS, json={"name": f"d{uuid.uuid4().hex[:6]}", "bot_id": bot})
            statuses[email(user)] = r.status_code

    threads = [threading.Thread(target=post, args=(u,)) for u in users]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return statuses


def test_concurrent_first_dialogs_of_a_new_bot_make_one_owner(
    make_user: Callable[..., UserClient],
) -> None:
    users = [make_user() for _ in range(4)]
    for _ in range(3):
        bot = new_bot()
        statuses = race(users, bot)
        assert sorted(statuses.values()) == [201, 403, 403, 403], statuses
        winners = [e for e, status in statuses.items() if status == 201]
        winner = next(u for u in users if email(u) == winners[0])
        assert owners_of(winner, bot) == winners
        listed = winner.get(DIALOGS, params={"bot_id": bot}).json()["data"]
        assert [d["owner"] for d in listed] == winners


def test_one_owner_racing_with_themselves_gets_every_dialog(
    make_user: Callable[..., UserClient],
) -> None:
    alice, bot = make_user(), new_bot()
    names = [f"n{i}" for i in range(4)]
    barrier = threading.Barrier(len(names))
    statuses: list[int] = []

    def post(name: str) -> None:
        with httpx.Client(base_url=str(alice.base_url), headers=alice.headers) as c:
            barrier.wait()
            statuses.append(c.post(DIALOGS, json={"name": name, "bot_id": bot}).status_code)

    threads = [threading.Thread(target=post, args=(n,)) for n in names]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert statuses == [201] * 4
    assert owners_of(alice, bot) == [email(alice)]
    assert alice.get(DIALOGS, params={"bot_id": bot}).json()["pagination"]["total"] == 4


def test_default_belongs_to_admins(
    make_user: Callable[..., UserClient], admin: httpx.Client
) -> None:
    alice, bob = make_user(), make_user()
    assert forbidden(alice.post(DIALOGS, json={"name": f"x{uuid.uuid4().hex[:6]}"}))
    # Admins set default's owners (claiming it if nobody has yet), and only they do.
    r = admin.put(f"{BOTS}/default/owners", json={"owners": [email(alice)]})
    assert r.status_code == 200, r.text
    try:
        assert r.json()["owners"] == [email(alice)]
        dialog = create(alice, "default", f"alice_{uuid.uuid4().hex[:8]}")
        assert alice.delete(f"{DIALOGS}/{dialog}").status_code == 204
        assert alice.get(f"{BOTS}/default/owners").json()["owners"] == [email(alice)]
        refused = alice.put(f"{BOTS}/default/owners", json={"owners": [email(alice), email(bob)]})
        assert forbidden(refused) and "admins" in refused.json()["error"]["message"]
        assert forbidden(bob.post(DIALOGS, json={"name": f"x{uuid.uuid4().hex[:6]}"}))
        assert forbidden(bob.get(f"{BOTS}/default/owners"))
    finally:
        restored = admin.put(f"{BOTS}/default/owners", json={"owners": [BOOTSTRAP_USER]})
        assert restored.status_code == 200, restored.text
    assert forbidden(alice.post(DIALOGS, json={"name": f"x{uuid.uuid4().hex[:6]}"}))


def test_owners_are_normalised_and_guarded_by_if_match(
    make_user: Callable[..., UserClient],
) -> None:
    alice, bot = make_user(), new_bot()
    create(alice, bot)
    url = f"{BOTS}/{bot}/owners"
    r = alice.put(
        url, json={"owners": [email(alice).upper(), "Bob@Example.COM", "bob@example.com"]}
    )
    assert r.status_code == 200, r.text
    assert r.json()["owners"] == [email(alice), "bob@example.com"] and r.json()["version"] == 2

    stale = alice.put(url, json={"owners": [email(alice)]}, headers={"If-Match": '"1"'})
    assert stale.status_code == 409 and stale.json()["error"]["code"] == "CONFLICT"
    assert owners_of(alice, bot) == [email(alice), "bob@example.com"]
    fresh = alice.put(url, json={"owners": [email(alice)]}, headers={"If-Match": '"2"'})
    assert fresh.status_code == 200 and fresh.json()["version"] == 3
    # The same list again changes nothing.
    again = alice.put(url, json={"owners": [email(alice)]})
    assert again.status_code == 200 and again.json()["version"] == 3
    bad = alice.put(url, json={"owners": [email(alice)]}, headers={"If-Match": "soon"})
    assert bad.status_code == 400


def test_admins_list_all_and_set_owners_of_unclaimed_bots(
    make_user: Callable[..., UserClient], admin: httpx.Client
) -> None:
    alice, bob = make_user(), make_user()
    bot = new_bot()
    # A non-admin cannot claim a bot by setting its owners: it does not exist for them.
    r = alice.put(f"{BOTS}/{bot}/owners", json={"owners": [email(alice)]})
    assert r.status_code == 404 and r.json()["error"]["code"] == "NOT_FOUND"
    stale = admin.put(
        f"{BOTS}/{bot}/owners", json={"owners": [email(bob)]}, headers={"If-Match": '"3"'}
    )
    assert stale.status_code == 409
    r = admin.put(f"{BOTS}/{bot}/owners", json={"owners": [email(bob)]})
    assert r.status_code == 200 and r.json() == {
        "bot_id": bot,
        "owners": [email(bob)],
        "version": 1,
    }
    assert forbidden(alice.post(DIALOGS, json={"name": "start", "bot_id": bot}))
    create(bob, bot)
    assert admin.get(f"{BOTS}/{bot}/owners").json()["owners"] == [email(bob)]

    seen: list[str] = []
    offset = 0
    while True:
        listed = admin.get(BOTS, params={"limit": 200, "offset": offset}).json()
        seen += [b["id"] for b in listed["data"]]
        if not listed["pagination"]["has_more"]:
            break
        offset += 200
    assert bot in seen and seen == sorted(seen)


def test_list_shape_pages_and_dialog_counts(make_user: Callable[..., UserClient]) -> None:
    alice, bob = make_user(), make_user()
    bots = sorted(new_bot() for _ in range(3))
    for bot in bots:
        create(alice, bot)
    extra = create(alice, bots[0], "second")
    create(alice, bots[0], "third")
    assert alice.delete(f"{DIALOGS}/{extra}").status_code == 204
    create(bob, new_bot())

    listed = alice.get(BOTS).json()
    assert listed["pagination"] == {"total": 3, "limit": 50, "offset": 0, "has_more": False}
    assert [b["id"] for b in listed["data"]] == bots
    first = listed["data"][0]
    assert set(first) == BOT_FIELDS
    assert first["owners"] == [email(alice)] and first["dialogs"] == 2
    assert [b["dialogs"] for b in listed["data"][1:]] == [1, 1]
    assert first["created_at"].endswith("Z") and first["created_by"] == email(alice)
    assert first["version"] == 1 and first["updated_by"] == email(alice)

    page = alice.get(BOTS, params={"limit": 2, "offset": 1}).json()
    assert [b["id"] for b in page["data"]] == bots[1:]
    assert page["pagination"] == {"total": 3, "limit": 2, "offset": 1, "has_more": False}
    for params in ({"limit": 0}, {"limit": 201}, {"offset": -1}, {"limit": "x"}):
        r = alice.get(BOTS, params=params)
        assert r.status_code == 400 and r.json()["error"]["code"] == "BAD_REQUEST", params


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"owners": []},
        {"owners": "a@example.com"},
        {"owners": ["not-an-email"]},
        {"owners": ["two@@example.com"]},
        {"owners": ["a b@example.com"]},
        {"owners": [None]},
        {"owners": [f"u{i}@example.com" for i in range(101)]},
        {"owners": ["a@example.com"], "extra": 1},
    ],
)
def test_invalid_owner_lists_are_400(make_user: Callable[..., UserClient], body: object) -> None:
    alice, bot = make_user(), new_bot()
    create(alice, bot)
    r = alice.put(f"{BOTS}/{bot}/owners", json=body)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["code"] == "BAD_REQUEST"
    assert owners_of(alice, bot) == [email(alice)]


def test_bad_and_unknown_bot_ids(admin: httpx.Client) -> None:
    for bad in ("-dash", "a%20b", "x" * 101, "%C3%A9"):
        for r in (
            admin.get(f"{BOTS}/{bad}/owners"),
            admin.put(f"{BOTS}/{bad}/owners", json={"owners": ["a@example.com"]}),
        ):
            assert r.status_code in (400, 404), (bad, r.status_code)
            assert r.json()["error"]["code"] in ("BAD_REQUEST", "NOT_FOUND")
    r = admin.get(f"{BOTS}/-dash/owners")
    assert r.status_code == 400 and r.json()["error"]["code"] == "BAD_REQUEST"
    r = admin.get(f"{BOTS}/{new_bot()}/owners")
    assert r.status_code == 404 and r.json()["error"]["code"] == "NOT_FOUND"


def test_no_token_is_401(server: ServerProcess) -> None:
    with server.client(token=None) as anonymous:
        for method, path in (
            ("GET", BOTS),
            ("GET", f"{BOTS}/default/owners"),
            ("PUT", f"{BOTS}/default/owners"),
        ):
            r = anonymous.request(method, path, json={"owners": ["a@example.com"]})
            assert r.status_code == 401, (method, path)
            assert r.json()["error"]["code"] == "UNAUTHORIZED"


def test_openapi_describes_the_bots(server: ServerProcess) -> None:
    spec = httpx.get(f"{server.url}/schema/openapi.json").json()
    assert {"get"} <= set(spec["paths"]["/api/bots"])
    assert {"get", "put"} <= set(spec["paths"]["/api/bots/{bot_id}/owners"])
    schemas = spec["components"]["schemas"]
    assert schemas["SetOwners"]["additionalProperties"] is False
    owner = schemas["SetOwners"]["properties"]["owners"]["items"]
    assert owner["type"] == "string" and owner["pattern"].startswith("^") and owner["minLength"]
    assert {"BotView", "BotOwners"} <= set(schemas)


# --- below HTTP: bots from before owners, and the read model -------------------------------


def test_a_bot_whose_dialogs_predate_owners_is_an_admins_to_claim(tmp_path: Path) -> None:
    app = GBApplication(Settings(data_dir=tmp_path))
    try:
        store = EventStoreAdapter(app)
        legacy = Dialog(owner="old@x.io", bot_id="legacy", name="start", content='TALK "hi"')
        store.save(legacy)  # written before bots had owners: no Bot aggregate
        designer = DesignerCommands(
            store, lambda bot: {"start"} if bot == "legacy" else set(), False
        )
        creator, admin = Actor("old@x.io"), Actor("root@x.io", is_admin=True)

        with pytest.raises(Forbidden, match="no owners yet"):
            designer.update(creator, legacy.id, UpdateDialog(content='TALK "x"'), None)
        with pytest.raises(Forbidden, match="before bots had owners"):
            designer.create(creator, CreateDialog(name="other", bot_id="legacy"))
        with pytest.raises(Forbidden, match="admins"):
            designer.create(creator, CreateDialog(name="start"))

        bots = BotCommands(store)
        bots.set_owners(admin, "legacy", SetOwners(owners=["Old@X.io"]), None)
        designer.update(creator, legacy.id, UpdateDialog(content='TALK "x"'), None)
        designer.create(creator, CreateDialog(name="other", bot_id="legacy"))
        with pytest.raises(Forbidden, match="owners of bot legacy"):
            designer.create(Actor("new@x.io"), CreateDialog(name="third", bot_id="legacy"))
    finally:
        app.close()


def test_a_bot_keeps_an_owner() -> None:
    with pytest.raises(NoOwners):
        Bot.claim("b", [], by="a@x.io")
    bot = Bot.claim("b", ["A@x.io", "a@x.io", "b@x.io"], by="a@x.io")
    assert bot.owners == ["a@x.io", "b@x.io"] and bot.is_owned_by("B@X.IO")
    with pytest.raises(NoOwners):
        bot.set_owners("a@x.io", [])
    bot.set_owners("a@x.io", ["b@x.io", "B@x.io", "a@x.io"])
    bot.set_owners("a@x.io", ["b@x.io", "a@x.io"])
    topics = [type(e).TOPIC for e in bot.collect_events()]  # type: ignore[attr-defined]
    assert topics == ["gbserver.bots.BotClaimed", "gbserver.bots.BotOwnersChanged"]
    assert Bot.claim("b", ["c@x.io"], by="c@x.io").id == bot.id


def test_the_read_model_rebuilds_the_same(tmp_path: Path) -> None:
    store = open_read_store(Settings(data_dir=tmp_path))
    DesignerProjection(store)
    projection = BotsProjection(store)
    bot = Bot.claim("b", ["a@x.io"], by="a@x.io")
    bot.set_owners("a@x.io", ["a@x.io", "c@x.io"])
    other = Bot.claim("a", ["c@x.io"], by="c@x.io")
    events = [*bot.collect_events(), *other.collect_events()]
    batch = [(e, Tracking("gbserver", i + 1)) for i, e in enumerate(events)]
    projection.process_batch(batch)
    c = Actor("c@x.io")
    before = (list_bots(store, c, 50, 0), bot_owners(store, "b"))
    assert [v.id for v in before[0].data] == ["a", "b"]
    assert before[1] is not None and before[1].owners == ["a@x.io", "c@x.io"]
    assert [v.id for v in list_bots(store, Actor("a@x.io"), 50, 0).data] == ["b"]
    projection.reset()
    projection.process_batch(batch)
    assert (list_bots(store, c, 50, 0), bot_owners(store, "b")) == before
    store.datastore.close()
