"""The blob store on S3 (commands.ports.BlobStore), used when GB_S3_ENDPOINT is set.

Any S3-compatible server (AWS, MinIO, S3Proxy as `scripts/services up s3` runs it) through
boto3, path-style addressing. Layout in the bucket:

- `blobs/ab/cd/<sha256>`: the blobs, named by their content's SHA-256 like the file store's.
- `partial/<uuid>`: an upload larger than a part (8 MiB), first sent as a multipart upload to
  this temporary key (hashed on the way), then copied to its final key once its digest is
  known (a server-side copy: boto3's managed copy, multipart past `COPY_THRESHOLD`) and
  deleted. Content up to a part is held in memory and put in one request, straight to its
  final key. Either way a writer holds about one part in memory, whatever the content's size.

A blob is whole or absent: objects appear atomically in S3, and an upload that fails or is
aborted aborts its multipart upload and deletes its temporary object. What a crash leaves
behind (a `partial/` object, an unfinished multipart upload) `clean_partial` removes.

The bucket is created when missing, on first use (not at startup: the server starts, and
reports storage as failing in its health, while S3 is out of reach). Errors that mean the
store cannot be used now escape as StoreUnreachable (no answer: connection refused, timed
out, dropped) or StoreUnavailable (an answer: 5xx, throttling, credentials refused).
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    HTTPClientError,
    IncompleteReadError,
)
from botocore.exceptions import (
    ConnectionError as BotoConnectionError,
)

from commands.ports import Blob, BlobMissing, BlobTooLarge, StoreUnavailable, StoreUnreachable
from infra.blobs import CHUNK, SHA256, check_digest, write_whole
from infra.config import Settings

log = logging.getLogger("gbserver.blobs")

PART = 8 * 1024 * 1024  # bytes per multipart part (S3: at least 5 MiB but the last; 10,000 parts)
MAX_PARTS = 10_000
COPY_THRESHOLD = 256 * 1024 * 1024  # larger blobs are copied in parts (S3: one copy <= 5 GiB)
BLOBS = "blobs/"
PARTIAL = "partial/"
CHECKSUM = "CRC32"  # checked by S3 on every part, as boto3's own managed uploads do

# Answers that mean "not there" rather than a failure.
MISSING_KEY = {"NoSuchKey", "404", "NotFound"}
MISSING_BUCKET = {"NoSuchBucket"}
MISSING_UPLOAD = {"NoSuchUpload"}
# Answers that mean the store refuses this client: wrong keys, no permission.
REFUSED = {
    "AccessDenied",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "InvalidToken",
    "ExpiredToken",
    "AuthorizationHeaderMalformed",
    "403",
    "Forbidden",
}
# Answers that mean "busy or broken now, try again later".
BUSY = {"SlowDown", "ServiceUnavailable", "InternalError", "RequestTimeout", "Throttling"}

T = TypeVar("T")


def error_code(e: ClientError) -> str:
    return str(e.response.get("Error", {}).get("Code", ""))


def error_status(e: ClientError) -> int:
    return int(e.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)


class S3BlobStore:
    def __init__(
        self,
        endpoint: str,
        bucket: str,
        *,
        access_key: str = "",
        secret_key: str = "",
        region: str = "us-east-1",
        connect_timeout: float = 5.0,
        read_timeout: float = 60.0,
        attempts: int = 3,
    ) -> None:
        self.endpoint = endpoint
        self.bucket = bucket
        self.region = region
        self.where = f"S3 bucket {bucket!r} at {endpoint}"
        # Keys left empty: boto3's own chain (AWS_* variables, profiles, instance roles).
        session = boto3.session.Session(
            aws_access_key_id=access_key or None,
            aws_secret_access_key=secret_key or None,
            region_name=region,
        )

        def client(connect: float, read: float, tries: int) -> Any:  # boto3: untyped
            config = Config(
                signature_version="s3v4",
                s3={"addressing_style": "path"},
                connect_timeout=connect,
                read_timeout=read,
                retries={"max_attempts": tries, "mode": "standard"},
                max_pool_connections=32,  # one client serves every request thread
            )
            return session.client("s3", endpoint_url=endpoint, config=config)

        self.client = client(connect_timeout, read_timeout, attempts)
        # The health check's: one quick try, so that a dead endpoint answers "error" at once.
        self.probe = client(min(connect_timeout, 2.0), min(read_timeout, 3.0), 1)
        self.copy_config = TransferConfig(
            multipart_threshold=COPY_THRESHOLD, multipart_chunksize=COPY_THRESHOLD // 2
        )
        self._bucket_ready = False
        self._bucket_lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings) -> S3BlobStore:
        return cls(
            settings.s3_endpoint,
            settings.s3_bucket,
            access_key=settings.s3_access_key,
            secret_key=settings.s3_secret_key,
            region=settings.s3_region,
        )

    # --- errors -------------------------------------------------------------------------

    def unavailable(self, e: Exception) -> StoreUnavailable:
        """The StoreUnavailable an S3 failure means."""
        if isinstance(e, BotoConnectionError | HTTPClientError | IncompleteReadError):
            return StoreUnreachable(f"{self.where} is out of reach: {e}")
        if isinstance(e, ClientError):
            code, status = error_code(e), error_status(e)
            if code in REFUSED or status == 403:
                return StoreUnavailable(
                    f"{self.where} refused access ({code or status}): check GB_S3_ACCESS_KEY,"
                    " GB_S3_SECRET_KEY and the key's permissions"
                )
            return StoreUnavailable(f"{self.where} failed ({code or status}): {e}")
        return StoreUnavailable(f"{self.where} failed: {e}")

    @staticmethod
    def is_failure(e: Exception) -> bool:
        """An error that means the store cannot be used now (as opposed to a bug)."""
        if isinstance(e, BotoConnectionError | HTTPClientError | IncompleteReadError):
            return True
        if isinstance(e, ClientError):
            code, status = error_code(e), error_status(e)
            return code in REFUSED or code in BUSY or status == 403 or status >= 500
        return False

    @contextmanager
    def errors(self) -> Iterator[None]:
        """Turns the store's failures into StoreUnavailable / StoreUnreachable."""
        try:
            yield
        except (BotoCoreError, ClientError) as e:
            if self.is_failure(e):
                raise self.unavailable(e) from e
            raise

    def call(self, fn: Callable[..., T], /, **kwargs: Any) -> T:
        with self.errors():
            return fn(**kwargs)

    # --- the bucket ---------------------------------------------------------------------

    def ensure_bucket(self) -> None:
        """Creates the bucket when missing, once per process; safe against other processes
        creating it at the same time."""
        if self._bucket_ready:
            return
        with self._bucket_lock, self.errors():
            if self._bucket_ready:
                return
            try:
                self.client.head_bucket(Bucket=self.bucket)
            except ClientError as e:
                if error_status(e) != 404 and error_code(e) not in MISSING_BUCKET | {"404"}:
                    raise
                self._create_bucket()
            self._bucket_ready = True

    def _create_bucket(self) -> None:
        args: dict[str, Any] = {"Bucket": self.bucket}
        if self.region != "us-east-1":  # AWS wants the region named, except for its first
            args["CreateBucketConfiguration"] = {"LocationConstraint": self.region}
        try:
            self.client.create_bucket(**args)
            log.info("created the %s", self.where)
        except ClientError as e:
            if error_code(e) not in {"BucketAlreadyOwnedByYou", "BucketAlreadyExists"}:
                raise  # (a bucket someone else owns shows as refused access on first use)

    def check(self) -> None:
        """The health check: the bucket answers (one quick HEAD; created if missing).
        Raises StoreUnavailable when it does not."""
        with self.errors():
            try:
                self.probe.head_bucket(Bucket=self.bucket)
                return
            except ClientError as e:
                if error_status(e) != 404 and error_code(e) not in MISSING_BUCKET | {"404"}:
                    raise
            self._bucket_ready = False
        self.ensure_bucket()

    # --- blobs --------------------------------------------------------------------------

    @staticmethod
    def key_of(sha256: str) -> str:
        check_digest(sha256)
        return f"{BLOBS}{sha256[:2]}/{sha256[2:4]}/{sha256}"

    def writer(self, limit: int | None = None) -> S3Writer:
        self.ensure_bucket()
        return S3Writer(self, limit)

    def put(self, data: bytes) -> Blob:
        return write_whole(self.writer(), data)

    def head_key(self, key: str) -> bool:
        try:
            self.call(self.client.head_object, Bucket=self.bucket, Key=key)
            return True
        except ClientError as e:
            if error_code(e) in MISSING_KEY | MISSING_BUCKET or error_status(e) == 404:
                return False
            raise

    def exists(self, sha256: str) -> bool:
        return self.head_key(self.key_of(sha256))

    def read(self, sha256: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        key = self.key_of(sha256)
        if start < 0 or (end is not None and end < start):
            # An empty range (S3 would ignore such a Range header and send everything).
            if not self.head_key(key):
                raise BlobMissing(sha256)
            return iter(())
        args: dict[str, Any] = {"Bucket": self.bucket, "Key": key}
        if start > 0 or end is not None:
            args["Range"] = f"bytes={start}-{'' if end is None else end}"
        try:
            response = self.call(self.client.get_object, **args)
        except ClientError as e:
            code = error_code(e)
            if code in MISSING_KEY | MISSING_BUCKET or error_status(e) == 404:
                raise BlobMissing(sha256) from None
            if code == "InvalidRange" or error_status(e) == 416:  # starts past the end
                if not self.head_key(key):
                    raise BlobMissing(sha256) from None
                return iter(())
            raise
        return self._stream(response["Body"])

    def _stream(self, body: Any) -> Iterator[bytes]:
        try:
            with self.errors():
                yield from body.iter_chunks(CHUNK)
        finally:
            body.close()

    def delete(self, sha256: str) -> None:
        try:
            self.call(self.client.delete_object, Bucket=self.bucket, Key=self.key_of(sha256))
        except ClientError as e:
            if error_code(e) not in MISSING_KEY | MISSING_BUCKET:
                raise

    def _list(self, prefix: str) -> Iterator[dict[str, Any]]:
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=prefix
        )
        try:
            with self.errors():
                for page in pages:
                    yield from page.get("Contents", [])
        except ClientError as e:
            if error_code(e) not in MISSING_BUCKET:
                raise

    def stored(self) -> Iterator[tuple[str, float]]:
        for item in self._list(BLOBS):
            key = item["Key"]
            name = key.rsplit("/", 1)[-1]
            if SHA256.fullmatch(name) and key == self.key_of(name):
                yield name, item["LastModified"].timestamp()

    def clean_partial(self, older_than: float) -> int:
        """Deletes `partial/` objects and aborts multipart uploads started more than
        `older_than` seconds ago (by this store's writers, crashed or cut off)."""
        cutoff = time.time() - older_than
        removed = 0
        for item in list(self._list(PARTIAL)):
            if item["LastModified"].timestamp() < cutoff:
                self._delete_key(item["Key"])
                removed += 1
        for upload in self._uploads():
            if upload["Initiated"].timestamp() < cutoff:
                try:
                    self.call(
                        self.client.abort_multipart_upload,
                        Bucket=self.bucket,
                        Key=upload["Key"],
                        UploadId=upload["UploadId"],
                    )
                    removed += 1
                except ClientError as e:
                    if error_code(e) not in MISSING_UPLOAD:  # finished or aborted meanwhile
                        raise
        return removed

    def _uploads(self) -> list[dict[str, Any]]:
        pages = self.client.get_paginator("list_multipart_uploads").paginate(
            Bucket=self.bucket, Prefix=PARTIAL
        )
        uploads: list[dict[str, Any]] = []
        try:
            with self.errors():
                for page in pages:
                    uploads.extend(page.get("Uploads", []))
        except ClientError as e:
            if error_code(e) not in MISSING_BUCKET:
                raise
        return uploads

    def _delete_key(self, key: str) -> None:
        self.call(self.client.delete_object, Bucket=self.bucket, Key=key)


class S3Writer:
    """One upload: chunks are hashed and gathered into a part; a first full part starts a
    multipart upload to `partial/<uuid>`, and each full part is sent as it fills."""

    def __init__(self, store: S3BlobStore, limit: int | None) -> None:
        self.store = store
        self.limit = limit
        self.size = 0
        self.digest = hashlib.sha256()
        self.buffer = bytearray()
        self.key = f"{PARTIAL}{uuid.uuid4().hex}"
        self.upload_id: str | None = None
        self.parts: list[dict[str, Any]] = []
        self.uploaded = False  # the temporary object exists (its multipart upload completed)
        self.done = False

    def write(self, chunk: bytes) -> None:
        if self.done:
            raise ValueError("the upload is finished")
        self.size += len(chunk)
        if self.limit is not None and self.size > self.limit:
            self.abort()
            raise BlobTooLarge(self.limit)
        self.digest.update(chunk)
        view = memoryview(chunk)
        try:
            while view:
                room = PART - len(self.buffer)
                self.buffer += view[:room]
                view = view[room:]
                if len(self.buffer) >= PART:
                    self._send_part()
        except BaseException:
            self.abort()
            raise

    def _send_part(self) -> None:
        store = self.store
        if self.upload_id is None:
            started = store.call(
                store.client.create_multipart_upload,
                Bucket=store.bucket,
                Key=self.key,
                ChecksumAlgorithm=CHECKSUM,
            )
            self.upload_id = started["UploadId"]
        number = len(self.parts) + 1
        if number > MAX_PARTS:
            raise BlobTooLarge(MAX_PARTS * PART)
        body, self.buffer = self.buffer, bytearray()  # the part is the only copy held
        sent = store.call(
            store.client.upload_part,
            Bucket=store.bucket,
            Key=self.key,
            UploadId=self.upload_id,
            PartNumber=number,
            Body=body,
            ChecksumAlgorithm=CHECKSUM,
        )
        part: dict[str, Any] = {"ETag": sent["ETag"], "PartNumber": number}
        if f"Checksum{CHECKSUM}" in sent:
            part[f"Checksum{CHECKSUM}"] = sent[f"Checksum{CHECKSUM}"]
        self.parts.append(part)

    def commit(self) -> Blob:
        if self.done:
            raise ValueError("the upload is finished")
        store = self.store
        blob = Blob(self.digest.hexdigest(), self.size)
        final = store.key_of(blob.sha256)
        try:
            # Written even when the same content is stored already: the write refreshes the
            # blob's time, so the collector (whose grace period counts from it) cannot take
            # an old orphan that this upload is about to name.
            if self.upload_id is None:  # up to a part: one request, straight to its place
                store.call(
                    store.client.put_object,
                    Bucket=store.bucket,
                    Key=final,
                    Body=self.buffer,
                )
                self.buffer = bytearray()
                self.done = True
                return blob
            if self.buffer:
                self._send_part()
            store.call(
                store.client.complete_multipart_upload,
                Bucket=store.bucket,
                Key=self.key,
                UploadId=self.upload_id,
                MultipartUpload={"Parts": self.parts},
            )
            self.uploaded = True
            store.call(
                store.client.copy,
                CopySource={"Bucket": store.bucket, "Key": self.key},
                Bucket=store.bucket,
                Key=final,
                Config=store.copy_config,
            )
        except BaseException:
            self.abort()
            raise
        self.done = True
        self._drop_temporary()
        return blob

    def abort(self) -> None:
        """Leaves nothing behind (or, when S3 cannot be reached, what clean_partial finds)."""
        if self.done:
            return
        self.done = True
        self.buffer = bytearray()
        self._drop_temporary()

    def _drop_temporary(self) -> None:
        store = self.store
        try:
            if self.uploaded:
                store.client.delete_object(Bucket=store.bucket, Key=self.key)
            elif self.upload_id is not None:
                store.client.abort_multipart_upload(
                    Bucket=store.bucket, Key=self.key, UploadId=self.upload_id
                )
        except (BotoCoreError, ClientError) as e:
            log.warning("could not remove the upload %s (clean_partial will): %s", self.key, e)
