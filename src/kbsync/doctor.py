"""`kbsync doctor`: one check per thing kbsync needs, each saying what to do when it fails."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from kbsync.config import Settings
from kbsync.errors import KbsyncError, RemoteError, RemoteNotFound
from kbsync.interfaces import DocumentStore, KnowledgeBase
from kbsync.models import ErrorType


@dataclass(frozen=True)
class Check:
    """The result of one check."""

    name: str
    ok: bool
    detail: str
    fix: str | None = None


def run_checks(
    load_settings: Callable[[], Settings],
    *,
    open_store: Callable[[Settings], DocumentStore],
    open_kb: Callable[[Settings], KnowledgeBase],
) -> Iterator[Check]:
    """Configuration, Firestore, the API key, the folder and each agent, in that order."""
    try:
        settings = load_settings()
    except KbsyncError as error:
        yield Check("configuration", False, error.message, error.hint)
        return
    where = f"emulator at {settings.emulator_host}" if settings.emulator_host else "real Firestore"
    yield Check(
        "configuration",
        True,
        f"ElevenLabs {settings.base_url} with key {settings.masked_key()}; {where}, project "
        f"{settings.project or '(inferred)'}, collection {settings.collection}",
    )
    yield _firestore(settings, open_store)
    kb: KnowledgeBase | None = None
    try:
        kb = open_kb(settings)
        kb.check_key()
        yield Check("API key", True, f"accepted by {settings.base_url}")
    except KbsyncError as error:
        kb = None
        yield Check("API key", False, error.message, error.hint)
    except RemoteError as error:
        kb = None
        fix = (
            "Check ELEVENLABS_API_KEY (a key from the ElevenLabs dashboard)."
            if error.error_type is ErrorType.AUTH_ERROR
            else "Check ELEVENLABS_BASE_URL and the network."
        )
        yield Check("API key", False, error.message, fix)
    if settings.folder_id:
        yield _folder(kb, settings.folder_id)
    for agent_id in settings.agent_ids:
        yield _agent(kb, agent_id)


def _firestore(settings: Settings, open_store: Callable[[Settings], DocumentStore]) -> Check:
    try:
        store = open_store(settings)
        total = sum(store.count_by_status().values())
    except KbsyncError as error:
        fix = error.hint or (
            "Start the emulator and set FIRESTORE_EMULATOR_HOST, or set GOOGLE_CLOUD_PROJECT "
            "and credentials (gcloud auth application-default login)."
        )
        return Check("Firestore", False, error.message, fix)
    return Check("Firestore", True, f"{total} documents in {settings.collection}")


_NO_KEY = "not checked: no working API key"


def _folder(kb: KnowledgeBase | None, folder_id: str) -> Check:
    name = f"folder {folder_id}"
    if kb is None:
        return Check(name, False, _NO_KEY, "Fix the API key first.")
    try:
        exists = kb.folder_exists(folder_id)
    except RemoteError as error:
        return Check(name, False, error.message, "Check the network, then run doctor again.")
    if not exists:
        return Check(
            name,
            False,
            "no such folder in the knowledge base",
            "Check KBSYNC_FOLDER_ID: the id of a folder in the ElevenLabs knowledge base.",
        )
    return Check(name, True, "exists")


def _agent(kb: KnowledgeBase | None, agent_id: str) -> Check:
    name = f"agent {agent_id}"
    if kb is None:
        return Check(name, False, _NO_KEY, "Fix the API key first.")
    try:
        documents = kb.agent_documents(agent_id)
    except RemoteNotFound:
        return Check(
            name, False, "no such agent", "Check KBSYNC_AGENT_ID (or --agent-id): an agent id."
        )
    except RemoteError as error:
        return Check(name, False, error.message, "Check the network, then run doctor again.")
    return Check(name, True, f"{len(documents)} documents in its knowledge base")
