"""Keeping agents' knowledge bases in step with the collection.

After a run, every `completed` document is in each configured agent's knowledge base, and
documents kbsync no longer has are gone from it. Entries that other tools attached are left
alone: kbsync only touches entries whose ElevenLabs id it knows (pushed by it, or in its folder).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field

from kbsync.engine import RetryPolicy
from kbsync.errors import RemoteError, RemoteNotFound
from kbsync.interfaces import AgentDocument, DocumentStore, KnowledgeBase
from kbsync.models import SyncStatus

log = logging.getLogger(__name__)

MAX_CONFLICTS = 5
"""Times an agent's list is read and written again after someone else changed it meanwhile."""


@dataclass
class AgentChange:
    """What keeping one agent in step did."""

    agent_id: str
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    error: RemoteError | None = None


def desired_documents(
    current: list[AgentDocument],
    completed: dict[str, str],
    managed: set[str],
    usage_mode: str,
) -> list[AgentDocument]:
    """The agent's list as it should be: others' entries as they are, then kbsync's documents.

    `completed` maps the ElevenLabs id of every completed document to its name; `managed` is
    every id kbsync answers for (completed or not).
    """
    kept = [entry for entry in current if entry.id not in managed and entry.id not in completed]
    ours = {entry.id: entry for entry in current if entry.id in completed}
    for remote_id, name in completed.items():
        entry = ours.get(remote_id)
        if entry is None or entry.usage_mode != usage_mode or entry.name != name:
            ours[remote_id] = AgentDocument(remote_id, name, "text", usage_mode)
    return kept + [ours[remote_id] for remote_id in completed]


def keep_agents_in_step(
    store: DocumentStore,
    kb: KnowledgeBase,
    agent_ids: Iterable[str],
    *,
    usage_mode: str = "auto",
    folder_id: str | None = None,
    policy: RetryPolicy | None = None,
) -> list[AgentChange]:
    """Read each agent, change its list, write the whole list back; again on conflict."""
    policy = policy or RetryPolicy()
    completed: dict[str, str] = {}
    managed: set[str] = set()
    for remote_id, name, status, _ in store.remote_documents():
        if remote_id is None:
            continue
        managed.add(remote_id)
        if status is SyncStatus.COMPLETED:
            completed[remote_id] = name
    if folder_id:
        managed.update(document.id for document in kb.list_folder(folder_id))
    return [
        _keep_one(kb, agent_id, completed, managed=managed, usage_mode=usage_mode, policy=policy)
        for agent_id in agent_ids
    ]


def _keep_one(
    kb: KnowledgeBase,
    agent_id: str,
    completed: dict[str, str],
    *,
    managed: set[str],
    usage_mode: str,
    policy: RetryPolicy,
) -> AgentChange:
    change = AgentChange(agent_id)
    for _ in range(MAX_CONFLICTS):
        try:
            current = policy.call(kb.agent_documents, agent_id)
            wanted = desired_documents(current, completed, managed, usage_mode)
            after = {entry.id for entry in wanted}
            change.added = sorted(completed[i] for i in after - {e.id for e in current})
            change.removed = sorted(e.name or e.id for e in current if e.id not in after)
            if wanted != current:
                policy.call(kb.set_agent_documents, agent_id, wanted)
        except RemoteError as error:
            if error.status_code == 409 and not isinstance(error, RemoteNotFound):
                change.error = error
                continue  # someone else changed the agent meanwhile: read it again
            change.error = error
            return change
        else:
            change.error = None
            return change
    return change
