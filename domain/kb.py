"""Knowledge base: a bot's collections are folders of its package in drive.

The files under `{bot}.gbai/{bot}.gbkb/{collection}/` (the shared `bots` space) make bot `{bot}`'s
collection `{collection}`, at any depth. The index follows the drive's events (projections.kb);
the only events of this area are reindex requests: a job that asks for a collection's (or
every collection's) documents to be read again, so that a new extractor or model applies.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from uuid import UUID

from eventsourcing.domain import Aggregate, event

KB_SUFFIX = ".gbkb"
PACKAGE_SUFFIX = ".gbai"
MAX_NAME = 255  # characters of a collection's name (a drive folder's name: at most 255 bytes)
# A name: no `/`, not only white space.
NAME_PATTERN = r"^[^/]*[^/\s][^/]*$"


class InvalidCollection(ValueError):
    """Not a name a collection can have."""


@dataclass(frozen=True)
class KbLocation:
    """Where a drive path sits in the knowledge base."""

    bot: str
    collection: str


def kb_location(path: str) -> KbLocation | None:
    """The bot and collection of a drive path of the bots space, or None when the path is
    not a document of a collection (`{bot}.gbai/{bot}.gbkb/{collection}/…/file`). The bot's
    name is its package's; the `.gbkb` folder must carry the same name (case aside)."""
    parts = path.split("/")
    if len(parts) < 4:
        return None
    package, kb, collection = parts[0], parts[1], parts[2]
    if not (package.lower().endswith(PACKAGE_SUFFIX) and kb.lower().endswith(KB_SUFFIX)):
        return None
    bot = package[: -len(PACKAGE_SUFFIX)]
    if not bot or kb[: -len(KB_SUFFIX)].lower() != bot.lower():
        return None
    return KbLocation(bot=bot, collection=collection)


def collection_name(raw: str) -> str:
    """A collection as dialogs and clients name it: `hr`, `hr.gbkb` (trimmed, NFC). Names
    compare as given otherwise: they are the folders' names."""
    name = unicodedata.normalize("NFC", raw.strip())
    if name.lower().endswith(KB_SUFFIX) and name[: -len(KB_SUFFIX)].strip():
        name = name[: -len(KB_SUFFIX)].strip()
    if not name or "/" in name or len(name) > MAX_NAME:
        raise InvalidCollection(f"not a collection name: {raw[:80]!r}")
    return name


def collection_path(bot: str, collection: str) -> str:
    """The drive folder of a collection."""
    return f"{bot}{PACKAGE_SUFFIX}/{bot}{KB_SUFFIX}/{collection}"


class ReindexJob(Aggregate):
    """A request to read a collection's documents (or every collection's) again."""

    TOPIC = "gbserver.kb.ReindexJob"

    class Created(Aggregate.Created):
        TOPIC = "gbserver.kb.ReindexJob.Created"

    @event("ReindexRequested", topic="gbserver.kb.ReindexRequested")
    def __init__(
        self, bot: str | None, collection: str | None, by: str, id: UUID | None = None
    ) -> None:
        self.bot = bot
        self.collection = collection
        self.by = by
