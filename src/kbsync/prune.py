"""Pruning: deleting ElevenLabs documents kbsync made that no Firestore document points to.

Only documents in kbsync's own folder (`KBSYNC_FOLDER_ID`) are ever considered, so documents
made by anyone else are never touched. Documents younger than a lease, or whose name belongs
to a Firestore document that may still adopt them (never pushed, or being pushed), are left.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

from kbsync.engine import RetryPolicy, utcnow
from kbsync.errors import RemoteError, RemoteNotFound
from kbsync.interfaces import DocumentStore, KnowledgeBase, RemoteDocument
from kbsync.models import SyncStatus


class PruneAction(StrEnum):
    """What prune did (or would do) with one ElevenLabs document."""

    DELETED = "deleted"
    WOULD_DELETE = "would_delete"
    KEPT = "kept"
    FAILED = "failed"


@dataclass(frozen=True)
class PruneItem:
    """One orphaned ElevenLabs document and what happened to it."""

    id: str
    name: str
    action: PruneAction
    reason: str | None = None


@dataclass
class PruneResult:
    """Everything one prune found and did."""

    items: list[PruneItem] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        """True when a deletion failed."""
        return any(item.action is PruneAction.FAILED for item in self.items)


class PruneRefused(Exception):
    """More documents would go than `--max-delete` allows: nothing was deleted."""

    def __init__(self, result: PruneResult, max_delete: int) -> None:
        count = len(result.items)
        self.result = result
        self.message = (
            f"{count} ElevenLabs documents would be deleted, more than --max-delete {max_delete}: "
            "nothing was deleted."
        )
        self.hint = (
            "Check KBSYNC_COLLECTION and KBSYNC_FOLDER_ID first (a wrong collection makes every "
            f"document look orphaned), then run `kbsync prune --max-delete {count}`."
        )
        super().__init__(self.message)


def find_orphans(
    store: DocumentStore,
    kb: KnowledgeBase,
    folder_id: str,
    *,
    policy: RetryPolicy,
    min_age_seconds: float,
    now: datetime | None = None,
) -> list[RemoteDocument]:
    """The documents in kbsync's folder that no Firestore document points to, old enough to
    be sure no run is still about to record them."""
    referenced: set[str] = set()
    unsettled: set[str] = set()
    for remote_id, name, status, _ in store.remote_documents():
        if remote_id is not None:
            referenced.add(remote_id)
        if remote_id is None or status is SyncStatus.SYNCING:
            unsettled.add(name)  # a run may adopt a copy of this name
    cutoff = (now or utcnow()) - timedelta(seconds=min_age_seconds)
    listed = policy.call(lambda: list(kb.list_folder(folder_id)))
    return [
        document
        for document in listed
        if document.id not in referenced
        and document.name not in unsettled
        and (document.created_at is None or document.created_at <= cutoff)
    ]


def prune_orphans(
    store: DocumentStore,
    kb: KnowledgeBase,
    folder_id: str,
    *,
    policy: RetryPolicy,
    min_age_seconds: float,
    agent_ids: tuple[str, ...] = (),
    max_delete: int = 20,
    dry_run: bool = False,
) -> PruneResult:
    """Delete the orphans (at most `max_delete`, else none); `dry_run` only lists them."""
    orphans = find_orphans(store, kb, folder_id, policy=policy, min_age_seconds=min_age_seconds)
    if dry_run or len(orphans) > max_delete:
        listed = PruneResult([PruneItem(d.id, d.name, PruneAction.WOULD_DELETE) for d in orphans])
        if dry_run:
            return listed
        raise PruneRefused(listed, max_delete)
    result = PruneResult()
    for document in orphans:
        result.items.append(_delete(kb, document, policy, agent_ids))
    return result


def _delete(
    kb: KnowledgeBase, document: RemoteDocument, policy: RetryPolicy, agent_ids: tuple[str, ...]
) -> PruneItem:
    try:
        users = policy.call(kb.dependent_agents, document.id)
        others = [agent for agent in users if agent not in agent_ids]
        if others:
            reason = f"used by agent(s) {', '.join(others)}"
            return PruneItem(document.id, document.name, PruneAction.KEPT, reason)
        policy.call(kb.delete, document.id, bool(users))
    except RemoteNotFound:
        pass  # gone already: as good as deleted
    except RemoteError as error:
        return PruneItem(document.id, document.name, PruneAction.FAILED, error.message)
    return PruneItem(document.id, document.name, PruneAction.DELETED)
