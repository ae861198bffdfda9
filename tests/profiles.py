"""The deployment profiles the suite runs against, chosen by GB_TEST_PROFILES.

- embedded: SQLite event and read stores under a temp data dir, in-process projections.
- scaled: PostgreSQL (a fresh database per server, on GB_TEST_DATABASE_URL's server) and
  Kafka (GB_TEST_KAFKA_BOOTSTRAP; a topic of its own per server), relay and projectors in
  the server process unless a test runs them apart. Drive and mail content in an S3 bucket
  of its own per server (`gbtest-<hex>`, created by the server; left behind) when
  GB_TEST_S3_ENDPOINT names an S3 server (`scripts/services up s3`, whose fixed keys are the
  defaults of GB_TEST_S3_ACCESS_KEY / GB_TEST_S3_SECRET_KEY); without it, under the data dir.
  The knowledge base in an OpenSearch index of its own per server (`gbtest-<hex>`, created
  by the server on first use, deleted when the profile is cleaned up) when GB_TEST_OPENSEARCH
  names a node (`scripts/services up opensearch`); without it, SQLite under the data dir.

GB_TEST_PROFILES defaults to "embedded" so that a fresh clone passes without services;
`.ci/run` starts PostgreSQL and Kafka and sets "embedded,scaled".
"""

from __future__ import annotations

import contextlib
import os
import uuid
from dataclasses import dataclass, field

import httpx
import psycopg

from tests import pg


@dataclass
class Profile:
    name: str
    databases: list[str] = field(default_factory=list)
    search_indices: list[str] = field(default_factory=list)  # OpenSearch indices handed out

    @property
    def scaled(self) -> bool:
        return self.name == "scaled"

    def env(self) -> dict[str, str]:
        """Settings for one new server of this profile (its own database and topic)."""
        if not self.scaled:
            return {}
        url = pg.fresh_database_url()
        if url is None:
            raise RuntimeError("the scaled profile needs GB_TEST_DATABASE_URL")
        bootstrap = os.environ.get("GB_TEST_KAFKA_BOOTSTRAP", "").strip()
        if not bootstrap:
            raise RuntimeError("the scaled profile needs GB_TEST_KAFKA_BOOTSTRAP")
        self.databases.append(url)
        search = opensearch_env()
        if search:
            self.search_indices.append(search["GB_OPENSEARCH_INDEX"])
        return {
            "GB_DATABASE_URL": url,
            "GB_KAFKA_BOOTSTRAP": bootstrap,
            "GB_KAFKA_TOPIC": f"gbtest.{uuid.uuid4().hex[:12]}",
            **s3_env(),
            **search,
        }

    def cleanup(self) -> None:
        for url in self.databases:
            pg.drop_database(url)
        self.databases.clear()
        drop_opensearch_indices(self.search_indices)
        self.search_indices.clear()


def s3_env() -> dict[str, str]:
    """GB_S3_* for one new server (a bucket of its own), or {} without GB_TEST_S3_ENDPOINT."""
    endpoint = os.environ.get("GB_TEST_S3_ENDPOINT", "").strip()
    if not endpoint:
        return {}
    return {
        "GB_S3_ENDPOINT": endpoint,
        "GB_S3_BUCKET": f"gbtest-{uuid.uuid4().hex[:16]}",
        "GB_S3_ACCESS_KEY": os.environ.get("GB_TEST_S3_ACCESS_KEY", "gbserver"),
        "GB_S3_SECRET_KEY": os.environ.get("GB_TEST_S3_SECRET_KEY", "gbserver-secret"),
        "GB_S3_REGION": "us-east-1",
    }


def opensearch_env() -> dict[str, str]:
    """GB_OPENSEARCH_* for one new server (an index of its own), or {} without
    GB_TEST_OPENSEARCH."""
    url = os.environ.get("GB_TEST_OPENSEARCH", "").strip().rstrip("/")
    if not url:
        return {}
    return {"GB_OPENSEARCH_URL": url, "GB_OPENSEARCH_INDEX": f"gbtest-{uuid.uuid4().hex[:16]}"}


def drop_opensearch_indices(names: list[str]) -> None:
    """Deletes these indices (those never created are skipped) from GB_TEST_OPENSEARCH's node:
    a single node keeps every index's shard in its small heap."""
    url = os.environ.get("GB_TEST_OPENSEARCH", "").strip().rstrip("/")
    if not url or not names:
        return
    for start in range(0, len(names), 50):
        batch = ",".join(names[start : start + 50])
        with contextlib.suppress(httpx.HTTPError):  # best effort, like dropping databases
            httpx.delete(f"{url}/{batch}", params={"ignore_unavailable": "true"}, timeout=30)


def selected() -> list[str]:
    names = [p.strip() for p in os.environ.get("GB_TEST_PROFILES", "embedded").split(",")]
    unknown = set(names) - {"embedded", "scaled"}
    if unknown or not names:
        raise RuntimeError(f"GB_TEST_PROFILES: unknown profile(s) {sorted(unknown)}")
    return names


def drop_read_models(env: dict[str, str], data_dir: os.PathLike[str] | str) -> None:
    """Deletes the read-model database (SQLite) or its tables (PostgreSQL)."""
    url = env.get("GB_DATABASE_URL")
    if not url:
        from pathlib import Path

        for f in Path(data_dir).glob("read.sqlite*"):
            f.unlink()
        return
    from infra.bootstrap import PROJECTIONS

    tables = [t for p in PROJECTIONS for t in p.tables] + ["gbserver_read_tracking"]
    with psycopg.connect(url, autocommit=True) as conn:
        for table in tables:
            conn.execute(f'DROP TABLE IF EXISTS "{table}"')
