"""The two services the sync engine needs, as Protocols.

The engine is written against these only; `store.FirestoreStore` and `remote.ElevenLabsKB` are
the real implementations, and the engine's unit tests use small fakes of the same shape.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Protocol

from kbsync.models import Document, Failure, NewDocument, SyncStatus


class UpsertAction(StrEnum):
    """What writing one input into Firestore did."""

    CREATED = "created"
    """A new Firestore document, `pending`."""
    CHANGED = "changed"
    """The content changed: back to `pending`, retry count 0."""
    RETRY = "retry"
    """Same content, but it had `failed`: back to `pending` so it is tried again."""
    UNCHANGED = "unchanged"
    """Same content: nothing was written."""


@dataclass(frozen=True)
class UpsertResult:
    """The result of writing one input into Firestore."""

    document: Document
    action: UpsertAction


@dataclass(frozen=True)
class Claim:
    """A document a run holds while it pushes it."""

    document: Document
    """The document as it was when claimed (status `syncing`, lease held)."""
    owner: str
    """The run that holds the lease."""
    version: object = field(default=None, compare=False, repr=False)
    """The store's token for the document as claimed, so that recording the outcome need not
    read it again (the write is conditional on nobody having written since)."""


class DocumentStore(Protocol):
    """Where knowledge documents live (Firestore): the source of truth."""

    def check(self) -> None:
        """Raise `StoreUnavailable` unless the store answers."""

    def upsert(self, documents: Iterable[NewDocument]) -> list[UpsertResult]:
        """Write inputs as knowledge documents; unchanged content is not written again."""

    def get(self, doc_id: str) -> Document | None:
        """The document with this id, or None."""

    def get_by_name(self, name: str) -> Document | None:
        """The document with this name, or None."""

    def list_documents(self, status: SyncStatus | None = None) -> Iterator[Document]:
        """Every document (or those with `status`), ordered by name."""

    def count_by_status(self) -> dict[SyncStatus, int]:
        """How many documents have each status."""

    def due(self, now: datetime) -> Iterator[str]:
        """Ids of documents a `sync` should try now.

        Those are: `pending`; `syncing` with an expired lease; `failed` for a transient reason
        whose `next_attempt_at` has passed.
        """

    def claim(self, doc_id: str, owner: str, lease_seconds: float, now: datetime) -> Claim | None:
        """Atomically move a due document to `syncing` under `owner`'s lease.

        Returns None when the document is not due (taken by another run, already completed,
        gone). Sets `last_sync_attempt`, `attempted_hash`, and grows `sync_retry_count` when this
        content was attempted before.
        """

    def record_success(
        self,
        claim: Claim,
        elevenlabs_document_id: str,
        pushed_hash: str,
        retries: int,
        rag_status: str | None = None,
    ) -> Document | None:
        """Record a successful push, only while `claim` still holds the lease.

        `pushed_hash` is the hash of the text that was sent; if the content changed meanwhile
        the document goes back to `pending` instead of `completed`. `retries` is how many
        retries this run made (added to `sync_retry_count`). Returns the document as written,
        or None when the lease was lost (nothing written).
        """

    def record_failure(
        self,
        claim: Claim,
        failure: Failure,
        retries: int,
        next_attempt_at: datetime | None,
        create_in_doubt: bool,
    ) -> Document | None:
        """Record a failed push (`failed`), only while `claim` still holds the lease.

        `next_attempt_at` None means: wait for `retry-failed`. Transient failures grow
        `failed_runs`. Returns the document as written, or None when the lease was lost.
        """

    def release(self, claim: Claim, create_in_doubt: bool) -> bool:
        """Give a claimed document back as `pending` (run stopped); only while still held."""

    def reset_failed(self, names: Iterable[str] | None = None) -> list[Document]:
        """Move `failed` documents (all, or those named) back to `pending` for `retry-failed`."""

    def request_deletion(self, doc_ids: Iterable[str]) -> list[Document]:
        """Mark documents for deletion (`pending`): the next push deletes them."""

    def remove(self, claim: Claim) -> bool:
        """Delete a claimed document from Firestore, only while `claim` still holds it."""

    def remote_documents(self) -> Iterator[tuple[str | None, str, SyncStatus, str]]:
        """(ElevenLabs id or None, name, status, Firestore id) of every document, no texts."""

    def rag_counts(self) -> dict[str, int]:
        """How many documents have each RAG index status."""

    def from_directory(self, directory: str) -> Iterator[Document]:
        """Documents uploaded from below `directory` (by `source`), without their texts."""


@dataclass(frozen=True)
class RemoteDocument:
    """A document as the knowledge base lists it."""

    id: str
    name: str
    created_at: datetime | None = None
    """When ElevenLabs created it (its metadata), if the listing said."""


@dataclass(frozen=True)
class AgentDocument:
    """One entry of an agent's knowledge base.

    As in `conversation_config.agent.prompt.knowledge_base` of the agent."""

    id: str
    name: str
    type: str = "text"
    usage_mode: str = "auto"


class KnowledgeBase(Protocol):
    """The ElevenLabs knowledge base. Every failure is raised as `errors.RemoteError`."""

    def create(self, name: str, text: str, folder_id: str | None = None) -> str:
        """Create a text document (inside `folder_id` when given); returns its id."""

    def update(self, document_id: str, name: str, text: str) -> None:
        """Replace a text document's content in place (same id); `RemoteNotFound` if gone."""

    def get_content(self, document_id: str) -> str:
        """The text a document holds."""

    def find_by_name(self, name: str) -> list[RemoteDocument]:
        """Every document with exactly this name, over the full (paged) listing."""

    def list_documents(self) -> Iterator[RemoteDocument]:
        """Every document in the knowledge base, page by page."""

    def delete(self, document_id: str, force: bool = False) -> None:
        """Delete a document; `force` also removes it from agents that use it.

        `RemoteNotFound` when it is already gone."""

    def dependent_agents(self, document_id: str) -> list[str]:
        """Ids (or names, where the API gives no id) of the agents that use a document."""

    def list_folder(self, folder_id: str) -> Iterator[RemoteDocument]:
        """Every document directly inside a folder, page by page (folders left out)."""

    def folder_exists(self, folder_id: str) -> bool:
        """True when `folder_id` is a knowledge-base folder; False when there is no such thing."""

    def check_key(self) -> None:
        """One cheap request that needs a valid key; `RemoteError` (auth_error) if refused."""

    def agent_documents(self, agent_id: str) -> list[AgentDocument]:
        """The knowledge base of an agent; `RemoteNotFound` when there is no such agent."""

    def set_agent_documents(self, agent_id: str, documents: list[AgentDocument]) -> None:
        """Write an agent's whole knowledge-base list back."""

    def compute_rag_index(self, document_id: str, model: str) -> str:
        """Start RAG indexing (or read its state); returns the status in lower case
        (`created`, `processing`, `succeeded`, `failed`, `rag_limit_exceeded`, ...)."""
