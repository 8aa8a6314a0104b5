"""Firestore as kbsync's document store: the only module that talks to Firestore.

One Firestore document per knowledge document, its id `models.document_id(name)`, its fields
those of the contract plus kbsync's own (`pushed_hash`, `attempted_hash`, `create_in_doubt`,
`lease_owner`, `lease_expires_at`, `failed_runs`, `next_attempt_at`).

Concurrency: every change of a document is a compare-and-set. The document is read, the change
is decided, and the write carries a precondition: the update time that was read (a create: that
the document does not exist). If another writer got there first, Firestore refuses the write
and the change is decided again on a fresh read. For one document this is what a transaction
gives, without its lock waits (two runs claiming one document made the emulator hold a lock
for about 2 s before aborting one of them) and with a deadline on every call, which
`@firestore.transactional` cannot put on its begin and commit calls.

Deadlines: every call is retried on transient errors for at most `timeout` seconds (30 by
default), then raised as `StoreUnavailable`; `check()` tries once, for at most 10 s. The client
library's own defaults would keep retrying an unreachable Firestore for up to 300 s.

Indexes: the emulator needs none; real Firestore needs two composite indexes on the collection
(it refuses the query without them, with a link that creates the index; kbsync shows the link):

- `sync_status` ascending, `name` ascending: `list_documents(status)` (`kbsync list --status`);
- `sync_status` ascending, `next_attempt_at` ascending: `due()`, failed documents whose next
  attempt has come.

    gcloud firestore indexes composite create --collection-group=knowledge_documents \\
        --field-config=field-path=sync_status,order=ascending \\
        --field-config=field-path=name,order=ascending
    gcloud firestore indexes composite create --collection-group=knowledge_documents \\
        --field-config=field-path=sync_status,order=ascending \\
        --field-config=field-path=next_attempt_at,order=ascending

`due()` finds `syncing` documents whose lease ran out by reading the lease of every `syncing`
document (there are only as many as runs push at once) rather than with a range query, so that
needs no index, and a lease missing altogether counts as run out, as it does in `claim()`.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from google.api_core import exceptions as api_errors
from google.api_core.retry import Retry, if_transient_error
from google.auth import exceptions as auth_errors
from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter
from google.cloud.firestore_v1.field_path import FieldPath

from kbsync.errors import StoreUnavailable
from kbsync.interfaces import Claim, UpsertAction, UpsertResult
from kbsync.models import (
    MAX_ERROR_MESSAGE,
    Document,
    ErrorType,
    Failure,
    NewDocument,
    SyncStatus,
    content_hash,
    document_id,
)

DEFAULT_COLLECTION = "knowledge_documents"
DEFAULT_TIMEOUT = 30.0
"""Seconds one store call may take, retries included."""
CHECK_TIMEOUT = 10.0
"""Seconds `check()` waits for its one read."""
DOCUMENT_PAGE_SIZE = 100
"""Whole documents read per query page: up to ~1 MiB each, so memory stays bounded."""
ID_PAGE_SIZE = 500
"""Document ids (no content) read per query page."""
UPSERT_READ_BATCH = 100
"""Documents read in one batched get before `upsert` decides what to write."""
MAX_CONFLICTS = 10
"""Times a change is decided again because another writer changed the document first."""

_T = TypeVar("_T")
_Fields = dict[str, Any]
_Decision = tuple[_Fields | None, _T]
"""What to write (None: nothing) and what the caller gets once it is written."""


class FirestoreStore:
    """The `DocumentStore` on a Firestore collection (or the emulator)."""

    def __init__(
        self,
        collection: str = DEFAULT_COLLECTION,
        *,
        project: str | None = None,
        database: str = "(default)",
        client: firestore.Client | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self.collection_name = collection
        self.project = project
        self.database = database
        self.timeout = timeout
        self._client = client
        self._client_lock = threading.Lock()
        self._emulator_host = os.environ.get("FIRESTORE_EMULATOR_HOST") or None
        self._retry = Retry(
            predicate=if_transient_error, initial=0.25, maximum=4.0, multiplier=2.0, timeout=timeout
        )

    # -- the client and its errors ------------------------------------------------------------

    @property
    def client(self) -> firestore.Client:
        """The Firestore client, built on first use; `StoreUnavailable` if it cannot be."""
        with self._client_lock:
            if self._client is None:
                self._client = self._build_client()
            return self._client

    def _build_client(self) -> firestore.Client:
        try:
            return firestore.Client(project=self.project, database=self.database)
        except auth_errors.DefaultCredentialsError as error:
            raise StoreUnavailable(
                "No Google credentials found for Firestore: set GOOGLE_APPLICATION_CREDENTIALS "
                "to a service-account key file or run `gcloud auth application-default login` "
                "(or set FIRESTORE_EMULATOR_HOST to use the emulator)."
            ) from error
        except auth_errors.GoogleAuthError as error:
            raise StoreUnavailable(
                f"The Google credentials for Firestore do not work ({_first_line(error)}): check "
                "GOOGLE_APPLICATION_CREDENTIALS (or set FIRESTORE_EMULATOR_HOST for the emulator)."
            ) from error
        except (OSError, ValueError) as error:
            # google-cloud-core raises OSError when no project can be found.
            raise StoreUnavailable(
                f"No Google Cloud project for Firestore ({_first_line(error)}): set "
                "GOOGLE_CLOUD_PROJECT (or FIRESTORE_EMULATOR_HOST to use the emulator)."
            ) from error

    def close(self) -> None:
        """Close the client's connections (the store builds a new client if used again)."""
        with self._client_lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()  # type: ignore[no-untyped-call]  # the library leaves it unannotated

    @property
    def _where(self) -> str:
        if self._emulator_host:
            return f"Firestore at {self._emulator_host}"
        project = self.project or (self._client.project if self._client is not None else None)
        return (
            f"Firestore at firestore.googleapis.com (project {project}, database {self.database})"
        )

    def _unavailable(self, error: Exception) -> StoreUnavailable:
        """The `StoreUnavailable` a failed Firestore call becomes: what failed and what to check."""
        cause = error.cause if isinstance(error, api_errors.RetryError) else error
        detail = _first_line(cause or error)
        if isinstance(error, api_errors.RetryError) or isinstance(
            cause, api_errors.ServiceUnavailable | api_errors.DeadlineExceeded
        ):
            check = (
                "check FIRESTORE_EMULATOR_HOST and that the emulator runs"
                if self._emulator_host
                else "check the network connection and GOOGLE_CLOUD_PROJECT"
            )
            message = f"{self._where} did not answer ({detail}): {check}."
        elif isinstance(
            cause,
            api_errors.PermissionDenied | api_errors.Unauthenticated | auth_errors.GoogleAuthError,
        ):
            message = (
                f"{self._where} refused access ({detail}): check the credentials "
                "(GOOGLE_APPLICATION_CREDENTIALS) and GOOGLE_CLOUD_PROJECT."
            )
        elif isinstance(cause, api_errors.NotFound):
            message = (
                f"{self._where} has no such database ({detail}): check GOOGLE_CLOUD_PROJECT "
                "and KBSYNC_DATABASE."
            )
        elif isinstance(cause, api_errors.FailedPrecondition) and "index" in detail.lower():
            message = f"{self._where} needs a composite index for this query: {detail}"
        else:
            message = f"{self._where} failed ({type(cause).__name__}: {detail})."
        return StoreUnavailable(message)

    def _collection(self) -> Any:
        return self.client.collection(self.collection_name)

    def _ref(self, doc_id: str) -> Any:
        return self._collection().document(doc_id)

    # -- reads --------------------------------------------------------------------------------

    def check(self) -> None:
        """Raise `StoreUnavailable` unless Firestore answers one cheap read within 10 s."""
        query = self._collection().select([]).limit(1)
        try:
            list(query.stream(retry=None, timeout=min(CHECK_TIMEOUT, self.timeout)))
        except (api_errors.GoogleAPIError, auth_errors.GoogleAuthError) as error:
            raise self._unavailable(error) from error

    def get(self, doc_id: str) -> Document | None:
        """The document with this id, or None."""
        data = self._read(doc_id).to_dict()
        return None if data is None else _document(doc_id, data)

    def get_by_name(self, name: str) -> Document | None:
        """The document with this name, or None."""
        return self.get(document_id(name))

    def list_documents(self, status: SyncStatus | None = None) -> Iterator[Document]:
        """Every document (or those with `status`), ordered by name, read page by page."""
        query = self._collection()
        if status is not None:
            query = query.where(filter=FieldFilter("sync_status", "==", status.value))
        for snapshot in self._paged(query.order_by("name"), DOCUMENT_PAGE_SIZE):
            yield _document(snapshot.id, snapshot.to_dict() or {})

    def count_by_status(self) -> dict[SyncStatus, int]:
        """How many documents have each status (aggregation queries: nothing is downloaded)."""
        counts: dict[SyncStatus, int] = {}
        for status in SyncStatus:
            query = self._with_status(status).count(alias="documents")
            try:
                result = query.get(retry=self._retry, timeout=self.timeout)
            except (api_errors.GoogleAPIError, auth_errors.GoogleAuthError) as error:
                raise self._unavailable(error) from error
            counts[status] = int(result[0][0].value)
        return counts

    def due(self, now: datetime) -> Iterator[str]:
        """Ids of documents a `sync` should try now: pending, lease run out, next attempt come.

        The three queries run at once: a run with nothing to do costs one round trip.
        """
        now = _aware(now)
        with ThreadPoolExecutor(max_workers=3, thread_name_prefix="kbsync-due") as pool:
            parts = [
                pool.submit(list, ids)
                for ids in (self._pending_ids(), self._expired_ids(now), self._retry_ids(now))
            ]
            for part in parts:
                yield from part.result()

    def _pending_ids(self) -> Iterator[str]:
        pending = self._with_status(SyncStatus.PENDING).select([])
        for snapshot in self._paged(pending.order_by(FieldPath.document_id()), ID_PAGE_SIZE):
            yield snapshot.id

    def _expired_ids(self, now: datetime) -> Iterator[str]:
        syncing = self._with_status(SyncStatus.SYNCING).select(["lease_expires_at"])
        for snapshot in self._paged(syncing.order_by(FieldPath.document_id()), ID_PAGE_SIZE):
            lease_expires_at = _timestamp(snapshot.get("lease_expires_at"))
            if lease_expires_at is None or lease_expires_at < now:
                yield snapshot.id

    def _retry_ids(self, now: datetime) -> Iterator[str]:
        retry_due = (
            self._with_status(SyncStatus.FAILED)
            .where(filter=FieldFilter("next_attempt_at", "<=", now))
            .select(["next_attempt_at"])
            .order_by("next_attempt_at")
        )
        for snapshot in self._paged(retry_due, ID_PAGE_SIZE):
            yield snapshot.id

    def _with_status(self, status: SyncStatus) -> Any:
        return self._collection().where(filter=FieldFilter("sync_status", "==", status.value))

    def _read(self, doc_id: str) -> Any:
        try:
            return self._ref(doc_id).get(retry=self._retry, timeout=self.timeout)
        except (api_errors.GoogleAPIError, auth_errors.GoogleAuthError) as error:
            raise self._unavailable(error) from error

    def _read_many(self, doc_ids: list[str]) -> dict[str, Any]:
        refs = [self._ref(doc_id) for doc_id in dict.fromkeys(doc_ids)]
        try:
            snapshots = list(self.client.get_all(refs, retry=self._retry, timeout=self.timeout))
        except (api_errors.GoogleAPIError, auth_errors.GoogleAuthError) as error:
            raise self._unavailable(error) from error
        return {snapshot.id: snapshot for snapshot in snapshots}

    def _paged(self, query: Any, page_size: int) -> Iterator[Any]:
        """The query's snapshots, one page at a time (no stream is held open between pages)."""
        last = None
        while True:
            page_query = query.limit(page_size)
            if last is not None:
                page_query = page_query.start_after(last)
            try:
                page = list(page_query.stream(retry=self._retry, timeout=self.timeout))
            except (api_errors.GoogleAPIError, auth_errors.GoogleAuthError) as error:
                raise self._unavailable(error) from error
            yield from page
            if len(page) < page_size:
                return
            last = page[-1]

    # -- writes -------------------------------------------------------------------------------

    def upsert(self, documents: Iterable[NewDocument]) -> list[UpsertResult]:
        """Write inputs as knowledge documents; unchanged content is not written again."""
        inputs = list(documents)
        now = _utcnow()
        results: list[UpsertResult] = []
        for start in range(0, len(inputs), UPSERT_READ_BATCH):
            batch = inputs[start : start + UPSERT_READ_BATCH]
            snapshots = self._read_many([new.id for new in batch])
            for new in batch:
                decide = functools.partial(_upsert_decision, new, now)
                results.append(self._change(new.id, decide, snapshots.get(new.id)))
        return results

    def claim(self, doc_id: str, owner: str, lease_seconds: float, now: datetime) -> Claim | None:
        """Atomically move a due document to `syncing` under `owner`'s lease (None: not due)."""
        now = _aware(now)

        def decide(data: _Fields | None) -> _Decision[Claim | None]:
            if data is None:
                return None, None
            stored = _document(doc_id, data)
            if not _is_due(stored, now):
                return None, None
            fields: _Fields = {
                "sync_status": SyncStatus.SYNCING.value,
                "lease_owner": owner,
                "lease_expires_at": now + timedelta(seconds=lease_seconds),
                "last_sync_attempt": now,
                "attempted_hash": stored.content_hash,
                "updated_at": now,
            }
            if stored.attempted_hash == stored.content_hash:
                fields["sync_retry_count"] = stored.sync_retry_count + 1
            if _taken_from_a_dead_run(stored):
                fields |= _in_doubt_after_a_dead_run(stored)
            merged = data | fields
            return fields, Claim(document=_document(doc_id, merged), owner=owner, version=merged)

        claim, written = self._change_versioned(doc_id, decide)
        if claim is None:
            return None
        assert isinstance(claim.version, dict)  # for mypy: decide() put the fields there
        return dataclasses.replace(claim, version=_Known(claim.version, written))

    def record_success(
        self,
        claim: Claim,
        elevenlabs_document_id: str,
        pushed_hash: str,
        retries: int,
        rag_status: str | None = None,
    ) -> Document | None:
        """Record a push: `completed`, or `pending` if the content changed meanwhile (or its
        deletion was asked for meanwhile)."""
        now = _utcnow()

        def decide(data: _Fields | None) -> _Decision[Document | None]:
            if not _held(data, claim.owner):
                return None, None
            assert data is not None  # for mypy: _held() is False without data
            stored = _document(claim.document.id, data)
            changed = stored.content_hash != pushed_hash
            again = changed or stored.delete_requested
            fields: _Fields = {
                "sync_status": (SyncStatus.PENDING if again else SyncStatus.COMPLETED).value,
                "elevenlabs_document_id": elevenlabs_document_id,
                "pushed_hash": pushed_hash,
                # Retries of the text that was pushed do not count for newer content.
                "sync_retry_count": 0 if changed else stored.sync_retry_count + retries,
                "sync_error_type": None,
                "sync_error_message": None,
                "create_in_doubt": False,
                "doubt_hashes": [],
                "failed_runs": 0,
                "next_attempt_at": None,
                **_NO_LEASE,
                "updated_at": now,
            }
            if rag_status is not None:
                fields["rag_status"] = rag_status
            return fields, _document(claim.document.id, data | fields)

        return self._change(claim.document.id, decide, _as_claimed(claim))

    def record_failure(
        self,
        claim: Claim,
        failure: Failure,
        retries: int,
        next_attempt_at: datetime | None,
        create_in_doubt: bool,
    ) -> Document | None:
        """Record a failed push: `failed`, or `pending` if the content changed meanwhile."""
        now = _utcnow()
        next_attempt_at = None if next_attempt_at is None else _aware(next_attempt_at)

        def decide(data: _Fields | None) -> _Decision[Document | None]:
            if not _held(data, claim.owner):
                return None, None
            assert data is not None  # for mypy: _held() is False without data
            stored = _document(claim.document.id, data)
            fields: _Fields = {"create_in_doubt": create_in_doubt, **_NO_LEASE, "updated_at": now}
            if create_in_doubt:
                fields["doubt_hashes"] = _with_doubt(stored, claim.document.content_hash)
            if stored.content_hash != claim.document.content_hash:
                # Edited during the push: the new content deserves a fresh try, not this error.
                fields |= {
                    "sync_status": SyncStatus.PENDING.value,
                    "sync_error_type": None,
                    "sync_error_message": None,
                    "sync_retry_count": 0,
                    "next_attempt_at": None,
                }
            else:
                transient = failure.error_type.transient
                fields |= {
                    "sync_status": SyncStatus.FAILED.value,
                    "sync_error_type": failure.error_type.value,
                    "sync_error_message": failure.message[:MAX_ERROR_MESSAGE],
                    "sync_retry_count": stored.sync_retry_count + retries,
                    "next_attempt_at": next_attempt_at,
                    "failed_runs": stored.failed_runs + 1 if transient else stored.failed_runs,
                }
            return fields, _document(claim.document.id, data | fields)

        return self._change(claim.document.id, decide, _as_claimed(claim))

    def release(self, claim: Claim, create_in_doubt: bool) -> bool:
        """Give a claimed document back as `pending` (run stopped); only while still held."""
        now = _utcnow()

        def decide(data: _Fields | None) -> _Decision[bool]:
            if not _held(data, claim.owner):
                return None, False
            assert data is not None  # for mypy: _held() is False without data
            stored = _document(claim.document.id, data)
            fields: _Fields = {
                "sync_status": SyncStatus.PENDING.value,
                "create_in_doubt": stored.create_in_doubt or create_in_doubt,
                **(
                    {"doubt_hashes": _with_doubt(stored, claim.document.content_hash)}
                    if create_in_doubt
                    else {}
                ),
                **_NO_LEASE,
                "updated_at": now,
            }
            return fields, True

        return self._change(claim.document.id, decide, _as_claimed(claim))

    def request_deletion(self, doc_ids: Iterable[str]) -> list[Document]:
        """Mark documents for deletion: the next push deletes them (ElevenLabs, then Firestore).

        A document another run is pushing under a live lease keeps its status; that run sees
        the mark when it records its outcome and leaves the document `pending`.
        """
        now = _utcnow()

        def decide(doc_id: str, data: _Fields | None) -> _Decision[Document | None]:
            if data is None:
                return None, None
            stored = _document(doc_id, data)
            fields: _Fields = {
                "delete_requested": True,
                "failed_runs": 0,
                "next_attempt_at": None,
                "updated_at": now,
            }
            fields |= _back_to_pending(stored, now)
            return fields, _document(doc_id, data | fields)

        written = [
            self._change(doc_id, functools.partial(decide, doc_id))
            for doc_id in dict.fromkeys(doc_ids)
        ]
        return [document for document in written if document is not None]

    def remove(self, claim: Claim) -> bool:
        """Delete a claimed document from Firestore, only while `claim` still holds it."""
        snapshot = _as_claimed(claim) or self._read(claim.document.id)
        for _ in range(MAX_CONFLICTS):
            data = snapshot.to_dict()
            if not _held(data, claim.owner):
                return False
            ref = self._ref(claim.document.id)
            try:
                option = self.client.write_option(last_update_time=snapshot.update_time)
                ref.delete(option=option, retry=self._retry, timeout=self.timeout)
            except (api_errors.FailedPrecondition, api_errors.NotFound):
                snapshot = self._read(claim.document.id)
                if not snapshot.exists:
                    return True
                continue
            except (api_errors.GoogleAPIError, auth_errors.GoogleAuthError) as error:
                raise self._unavailable(error) from error
            return True
        return False

    def remote_documents(self) -> Iterator[tuple[str | None, str, SyncStatus, str]]:
        """(ElevenLabs id or None, name, status, Firestore id) of every document, without
        reading the texts."""
        query = self._collection().select(["elevenlabs_document_id", "name", "sync_status"])
        for snapshot in self._paged(query.order_by(FieldPath.document_id()), ID_PAGE_SIZE):
            data = snapshot.to_dict() or {}
            remote_id = _text(data.get("elevenlabs_document_id"))
            name = _text(data.get("name")) or snapshot.id
            yield remote_id, name, _status(data.get("sync_status")), snapshot.id

    def rag_counts(self) -> dict[str, int]:
        """How many documents have each RAG index status (those with one), no texts read."""
        counts: dict[str, int] = {}
        query = self._collection().select(["rag_status"]).order_by(FieldPath.document_id())
        for snapshot in self._paged(query, ID_PAGE_SIZE):
            state = _text((snapshot.to_dict() or {}).get("rag_status"))
            if state:
                counts[state] = counts.get(state, 0) + 1
        return counts

    def from_directory(self, directory: str) -> Iterator[Document]:
        """Documents uploaded from below `directory` (their `source` starts with it)."""
        prefix = directory.rstrip("/") + "/"
        query = (
            self._collection()
            .where(filter=FieldFilter("source", ">=", prefix))
            .where(filter=FieldFilter("source", "<", prefix + "\uffff"))
            .select(["name", "source", "sync_status", "delete_requested"])
            .order_by("source")
        )
        for snapshot in self._paged(query, ID_PAGE_SIZE):
            yield _document(snapshot.id, snapshot.to_dict() or {})

    def reset_failed(self, names: Iterable[str] | None = None) -> list[Document]:
        """Move `failed` documents (all, or those named) back to `pending`; others are left."""
        now = _utcnow()
        if names is None:
            failed = self._with_status(SyncStatus.FAILED).select([])
            doc_ids = [
                snapshot.id
                for snapshot in self._paged(failed.order_by(FieldPath.document_id()), ID_PAGE_SIZE)
            ]
        else:
            doc_ids = list(dict.fromkeys(document_id(name) for name in names))

        def decide(doc_id: str, data: _Fields | None) -> _Decision[Document | None]:
            if data is None or _document(doc_id, data).sync_status != SyncStatus.FAILED:
                return None, None
            fields: _Fields = {
                "sync_status": SyncStatus.PENDING.value,
                "sync_error_type": None,
                "sync_error_message": None,
                "failed_runs": 0,
                "next_attempt_at": None,
                "updated_at": now,
            }
            return fields, _document(doc_id, data | fields)

        written = [self._change(doc_id, functools.partial(decide, doc_id)) for doc_id in doc_ids]
        documents = [document for document in written if document is not None]
        return documents if names is not None else sorted(documents, key=lambda d: d.name)

    def _change(
        self,
        doc_id: str,
        decide: Callable[[_Fields | None], _Decision[_T]],
        snapshot: Any = None,
    ) -> _T:
        """Decide a change on the stored document and write it unless someone wrote first."""
        return self._change_versioned(doc_id, decide, snapshot)[0]

    def _change_versioned(
        self,
        doc_id: str,
        decide: Callable[[_Fields | None], _Decision[_T]],
        snapshot: Any = None,
    ) -> tuple[_T, Any]:
        """`_change`, also giving the document's update time after it."""
        if snapshot is None:
            snapshot = self._read(doc_id)
        for _ in range(MAX_CONFLICTS):
            data = snapshot.to_dict()
            fields, result = decide(data)
            if fields is None:
                return result, snapshot.update_time
            written = self._write_if_unchanged(doc_id, snapshot, fields)
            if written is not None:
                return result, written
            snapshot = self._read(doc_id)
            if _already_written(snapshot.to_dict(), fields):
                # Our own write went through although its answer was lost, then got retried.
                return result, snapshot.update_time
        raise StoreUnavailable(
            f"{self._where}: document {doc_id} kept changing while kbsync wrote it "
            f"({MAX_CONFLICTS} tries); run the command again."
        )

    def _write_if_unchanged(self, doc_id: str, snapshot: Any, fields: _Fields) -> Any:
        """Write `fields` only if the document is still as `snapshot` saw it.

        Returns the write's update time, or None if someone else wrote first.
        """
        ref = self._ref(doc_id)
        try:
            if not snapshot.exists:
                result = ref.create(fields, retry=self._retry, timeout=self.timeout)
            else:
                precondition = self.client.write_option(last_update_time=snapshot.update_time)
                result = ref.update(
                    fields, option=precondition, retry=self._retry, timeout=self.timeout
                )
        except (api_errors.AlreadyExists, api_errors.FailedPrecondition, api_errors.NotFound):
            return None
        except (api_errors.GoogleAPIError, auth_errors.GoogleAuthError) as error:
            raise self._unavailable(error) from error
        return result.update_time


@dataclasses.dataclass(frozen=True)
class _Known:
    """A document as this store wrote it when claiming it: it stands in for a fresh read when
    the outcome is recorded, since that write is conditional on this update time anyway."""

    data: _Fields
    update_time: Any
    exists: bool = True

    def to_dict(self) -> _Fields:
        return dict(self.data)


def _as_claimed(claim: Claim) -> _Known | None:
    return claim.version if isinstance(claim.version, _Known) else None


# -- deciding changes (pure) ------------------------------------------------------------------

_NO_LEASE: _Fields = {"lease_owner": None, "lease_expires_at": None}


def _upsert_decision(
    new: NewDocument, now: datetime, data: _Fields | None
) -> _Decision[UpsertResult]:
    if data is None:
        fields = _new_fields(new, now)
        return fields, UpsertResult(_document(new.id, fields), UpsertAction.CREATED)
    stored = _document(new.id, data)
    if stored.content_hash != new.content_hash:
        fields = {
            "content": new.content,
            "content_hash": new.content_hash,
            "source": new.source,
            "sync_retry_count": 0,
            "failed_runs": 0,
            "next_attempt_at": None,
            "sync_error_type": None,
            "sync_error_message": None,
            "updated_at": now,
        }
        fields |= _back_to_pending(stored, now)
        return fields, UpsertResult(_document(new.id, data | fields), UpsertAction.CHANGED)
    if stored.sync_status == SyncStatus.FAILED:
        fields = {
            "sync_status": SyncStatus.PENDING.value,
            "sync_error_type": None,
            "sync_error_message": None,
            "failed_runs": 0,
            "next_attempt_at": None,
            "updated_at": now,
        }
        return fields, UpsertResult(_document(new.id, data | fields), UpsertAction.RETRY)
    return None, UpsertResult(stored, UpsertAction.UNCHANGED)


def _new_fields(new: NewDocument, now: datetime) -> _Fields:
    return {
        "name": new.name,
        "content": new.content,
        "content_hash": new.content_hash,
        "source": new.source,
        "sync_status": SyncStatus.PENDING.value,
        "elevenlabs_document_id": None,
        "sync_error_type": None,
        "sync_error_message": None,
        "last_sync_attempt": None,
        "sync_retry_count": 0,
        "created_at": now,
        "updated_at": now,
        "pushed_hash": None,
        "attempted_hash": None,
        "create_in_doubt": False,
        **_NO_LEASE,
        "failed_runs": 0,
        "next_attempt_at": None,
    }


def _back_to_pending(stored: Document, now: datetime) -> _Fields:
    """The fields that make a changed document due again.

    None while another run pushes it under a live lease: that run sees the change when it
    records its outcome and leaves the document `pending` itself.
    """
    if stored.sync_status == SyncStatus.SYNCING and not _lease_expired(stored, now):
        return {}
    fields: _Fields = {"sync_status": SyncStatus.PENDING.value, **_NO_LEASE}
    if _taken_from_a_dead_run(stored):
        fields |= _in_doubt_after_a_dead_run(stored)
    return fields


def _in_doubt_after_a_dead_run(stored: Document) -> _Fields:
    """The dead run may have created the text it was pushing (`attempted_hash`): remember
    which, so the next push can recognise that copy even if the content changed since."""
    fields: _Fields = {"create_in_doubt": True}
    if stored.attempted_hash:
        fields["doubt_hashes"] = _with_doubt(stored, stored.attempted_hash)
    return fields


MAX_DOUBTS = 10
"""Texts in doubt remembered per document (each run that died or timed out adds its own)."""


def _with_doubt(stored: Document, sent_hash: str) -> list[str]:
    """`doubt_hashes` with `sent_hash` added: every text an unheard create may have made."""
    hashes = [h for h in stored.doubt_hashes if h != sent_hash] + [sent_hash]
    return hashes[-MAX_DOUBTS:]


def _taken_from_a_dead_run(stored: Document) -> bool:
    """A `syncing` document whose lease ran out: the run that held it may have created it on
    ElevenLabs before it died, so the next push must look before creating."""
    return stored.sync_status == SyncStatus.SYNCING


def _lease_expired(document: Document, now: datetime) -> bool:
    return document.lease_expires_at is None or document.lease_expires_at < now


def _is_due(document: Document, now: datetime) -> bool:
    if document.sync_status == SyncStatus.PENDING:
        return True
    if document.sync_status == SyncStatus.SYNCING:
        return _lease_expired(document, now)
    if document.sync_status == SyncStatus.FAILED:
        return document.next_attempt_at is not None and document.next_attempt_at <= now
    return False


def _held(data: _Fields | None, owner: str) -> bool:
    return (
        data is not None
        and data.get("sync_status") == SyncStatus.SYNCING.value
        and data.get("lease_owner") == owner
    )


def _already_written(data: _Fields | None, fields: _Fields) -> bool:
    """True when the stored document already holds every field of a write."""
    return data is not None and all(
        key in data and _same_value(data[key], value) for key, value in fields.items()
    )


def _same_value(stored: object, written: object) -> bool:
    if isinstance(written, datetime):
        return _timestamp(stored) == _timestamp(written)
    return stored == written


# -- reading Firestore values -----------------------------------------------------------------


def _document(doc_id: str, data: _Fields) -> Document:
    """A stored document as a `Document`; fields other programs left out get their defaults."""
    content = _text(data.get("content")) or ""
    return Document(
        id=doc_id,
        name=_text(data.get("name")) or doc_id,
        content=content,
        content_hash=_text(data.get("content_hash")) or content_hash(content),
        source=_text(data.get("source")),
        sync_status=_status(data.get("sync_status")),
        elevenlabs_document_id=_text(data.get("elevenlabs_document_id")),
        sync_error_type=_error_type(data.get("sync_error_type")),
        sync_error_message=_text(data.get("sync_error_message")),
        last_sync_attempt=_timestamp(data.get("last_sync_attempt")),
        sync_retry_count=_count(data.get("sync_retry_count")),
        created_at=_timestamp(data.get("created_at")),
        updated_at=_timestamp(data.get("updated_at")),
        pushed_hash=_text(data.get("pushed_hash")),
        attempted_hash=_text(data.get("attempted_hash")),
        create_in_doubt=data.get("create_in_doubt") is True,
        doubt_hashes=tuple(h for h in data.get("doubt_hashes") or () if isinstance(h, str)),
        lease_owner=_text(data.get("lease_owner")),
        lease_expires_at=_timestamp(data.get("lease_expires_at")),
        failed_runs=_count(data.get("failed_runs")),
        next_attempt_at=_timestamp(data.get("next_attempt_at")),
        delete_requested=data.get("delete_requested") is True,
        rag_status=_text(data.get("rag_status")),
    )


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _count(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _status(value: object) -> SyncStatus:
    """The stored status; a missing or unknown one reads as `pending` (it still needs a push)."""
    try:
        return SyncStatus(str(value))
    except ValueError:
        return SyncStatus.PENDING


def _error_type(value: object) -> ErrorType | None:
    if value is None:
        return None
    try:
        return ErrorType(str(value))
    except ValueError:
        return ErrorType.UNKNOWN


def _timestamp(value: object) -> datetime | None:
    """A Firestore timestamp as a plain, timezone-aware UTC `datetime` (microseconds)."""
    if not isinstance(value, datetime):
        return None
    value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return datetime(
        value.year,
        value.month,
        value.day,
        value.hour,
        value.minute,
        value.second,
        value.microsecond,
        tzinfo=UTC,
    )


def _aware(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError(f"kbsync needs timezone-aware datetimes, got {moment!r}")
    return moment.astimezone(UTC)


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _first_line(error: BaseException) -> str:
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0][:300]
