"""The values kbsync reasons about: documents, statuses, error types and outcomes.

Nothing here talks to Firestore or ElevenLabs; these are plain frozen values that the
engine, the store and the command line pass between each other.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum


class SyncStatus(StrEnum):
    """Where a document stands with ElevenLabs (the contract's `sync_status`)."""

    PENDING = "pending"
    SYNCING = "syncing"
    COMPLETED = "completed"
    FAILED = "failed"


class ErrorType(StrEnum):
    """Why a push failed (the contract's `sync_error_type`)."""

    RATE_LIMIT = "rate_limit"
    AUTH_ERROR = "auth_error"
    VALIDATION = "validation"
    SERVER_ERROR = "server_error"
    NETWORK = "network"
    UNKNOWN = "unknown"

    @property
    def transient(self) -> bool:
        """True when trying again later may succeed without anyone changing anything."""
        return self in _TRANSIENT


_TRANSIENT = frozenset({ErrorType.RATE_LIMIT, ErrorType.SERVER_ERROR, ErrorType.NETWORK})


class Action(StrEnum):
    """What a run did with one document (the `action` key of the JSON output)."""

    CREATED = "created"
    UPDATED = "updated"
    UNCHANGED = "unchanged"
    FAILED = "failed"
    SKIPPED = "skipped"
    DELETED = "deleted"


MAX_ERROR_MESSAGE = 2000
"""The contract caps `sync_error_message` at this many characters."""


def content_hash(content: str) -> str:
    """The fingerprint stored as `content_hash`: it changes whenever the text changes."""
    return hashlib.sha256(content.encode("utf-8")).hexdigest()


_UNSAFE_ID_CHARS = re.compile(r"[^A-Za-z0-9._-]+")


def document_id(name: str) -> str:
    """The Firestore document id for a name: readable, stable and unique per name.

    Names may hold `/` (directory uploads) and other characters Firestore ids cannot, so the
    id is a cleaned prefix of the name plus a hash of the whole name.
    """
    slug = _UNSAFE_ID_CHARS.sub("-", name).strip("-.")[:80] or "doc"
    digest = hashlib.sha256(name.encode("utf-8")).hexdigest()[:16]
    return f"{slug}-{digest}"


@dataclass(frozen=True)
class NewDocument:
    """A document as read from the user's input, before it reaches Firestore."""

    name: str
    """Unique name: the file's name, or its path below the uploaded directory."""
    content: str
    """The text that will be pushed to ElevenLabs."""
    source: str | None
    """Where it was read from (a path), or None for standard input."""

    @property
    def id(self) -> str:
        """The Firestore document id this name maps to."""
        return document_id(self.name)

    @property
    def content_hash(self) -> str:
        """The fingerprint of `content`."""
        return content_hash(self.content)


@dataclass(frozen=True)
class Document:
    """A knowledge document as stored in Firestore: the contract's fields plus kbsync's own."""

    id: str
    name: str
    content: str
    content_hash: str
    source: str | None
    sync_status: SyncStatus
    elevenlabs_document_id: str | None = None
    sync_error_type: ErrorType | None = None
    sync_error_message: str | None = None
    last_sync_attempt: datetime | None = None
    sync_retry_count: int = 0
    created_at: datetime | None = None
    updated_at: datetime | None = None
    pushed_hash: str | None = None
    """`content_hash` of the text ElevenLabs holds under `elevenlabs_document_id`."""
    attempted_hash: str | None = None
    """`content_hash` of the last text a push was attempted for (to count retries)."""
    create_in_doubt: bool = False
    """A create may have reached ElevenLabs without kbsync hearing of it: look before creating."""
    doubt_hashes: tuple[str, ...] = ()
    """`content_hash`es of the texts unheard creates sent, which may differ from `content` now."""
    lease_owner: str | None = None
    """The run that holds this document while it is `syncing`."""
    lease_expires_at: datetime | None = None
    """When another run may take over a `syncing` document."""
    failed_runs: int = 0
    """Runs in a row that ended this document `failed` for a transient reason."""
    next_attempt_at: datetime | None = None
    """When a later `sync` may try a transiently failed document again.

    None: it waits for `retry-failed`."""
    delete_requested: bool = False
    """The user asked for it to go (`delete`, `upload --delete-missing`): the next push deletes
    it from ElevenLabs, then from Firestore."""
    rag_status: str | None = None
    """The ElevenLabs RAG index status last heard for the pushed text (with `KBSYNC_RAG`)."""

    @property
    def needs_push(self) -> bool:
        """True when ElevenLabs does not yet hold this exact text."""
        return self.elevenlabs_document_id is None or self.pushed_hash != self.content_hash


@dataclass(frozen=True)
class Failure:
    """Why one push failed, in the contract's words."""

    error_type: ErrorType
    message: str


@dataclass(frozen=True)
class SyncOutcome:
    """What happened to one document in one run: one row of the output."""

    id: str
    name: str
    status: SyncStatus | None
    """None once the document is deleted."""
    action: Action
    elevenlabs_document_id: str | None = None
    error_type: ErrorType | None = None
    error_message: str | None = None
    attempts: int = 0
    """Push attempts made in this run (0 when nothing was sent)."""
    retry_count: int = 0
    """The document's `sync_retry_count` after this run."""
