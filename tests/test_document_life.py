"""The whole life of a document: delete, prune, agents, RAG status, doctor, directory mirroring.

End to end through the real CLI against the Firestore emulator and the API double.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kbsync.models import ErrorType, SyncStatus
from kbsync.store import FirestoreStore
from tests.support.cli import KEY, kbsync, write
from tests.support.elevenlabs_double import ElevenLabsDouble, Fault


def remote_id(store: FirestoreStore, name: str) -> str:
    document = store.get_by_name(name)
    assert document is not None
    assert document.elevenlabs_document_id is not None
    return document.elevenlabs_document_id


def names_in_firestore(store: FirestoreStore) -> list[str]:
    return [document.name for document in store.list_documents()]


# --- delete ---------------------------------------------------------------------------------


def test_delete_removes_from_elevenlabs_then_firestore(
    env: dict[str, str], store: FirestoreStore, kb: ElevenLabsDouble, tmp_path: Path
) -> None:
    write(tmp_path, "docs/a.md")
    write(tmp_path, "docs/b.md", "other\n")
    assert kbsync("upload", "docs").exit_code == 0
    a_id = remote_id(store, "a.md")

    result = kbsync("delete", "a.md", "--json")

    assert result.exit_code == 0, result.output
    (entry,) = json.loads(result.stdout)["documents"]
    assert entry["action"] == "deleted"
    assert entry["status"] is None
    assert entry["elevenlabs_document_id"] == a_id
    assert names_in_firestore(store) == ["b.md"]
    assert a_id not in kb.documents
    assert len(kb.documents) == 1


def test_delete_of_an_unknown_name_is_bad_usage(
    env: dict[str, str], store: FirestoreStore, kb: ElevenLabsDouble
) -> None:
    result = kbsync("delete", "ghost.md")

    assert result.exit_code == 2
    assert "ghost.md: no document with this name" in result.stderr
    assert kb.count() == 0


def test_a_document_an_agent_uses_is_kept_unless_forced(
    env: dict[str, str], store: FirestoreStore, kb: ElevenLabsDouble, tmp_path: Path
) -> None:
    write(tmp_path, "a.md")
    assert kbsync("upload", "a.md").exit_code == 0
    a_id = remote_id(store, "a.md")
    agent = kb.add_agent(
        "someone else's agent",
        knowledge_base=[{"type": "text", "name": "a.md", "id": a_id, "usage_mode": "auto"}],
    )

    kept = kbsync("delete", "a.md", "--json")

    assert kept.exit_code == 1
    (entry,) = json.loads(kept.stdout)["documents"]
    assert entry["action"] == "failed"
    assert entry["error_type"] == "validation"
    assert "--force" in entry["error_message"]
    assert a_id in kb.documents
    assert names_in_firestore(store) == ["a.md"]

    forced = kbsync("delete", "a.md", "--force")

    assert forced.exit_code == 0, forced.output
    assert a_id not in kb.documents
    assert names_in_firestore(store) == []
    assert [entry["id"] for entry in kb.agent_kb(agent)] == []


def test_delete_keep_remote_only_forgets_it_in_firestore(
    env: dict[str, str], store: FirestoreStore, kb: ElevenLabsDouble, tmp_path: Path
) -> None:
    write(tmp_path, "a.md")
    assert kbsync("upload", "a.md").exit_code == 0
    a_id = remote_id(store, "a.md")

    result = kbsync("delete", "a.md", "--keep-remote")

    assert result.exit_code == 0, result.output
    assert names_in_firestore(store) == []
    assert a_id in kb.documents
    assert a_id in result.stderr


# --- prune ----------------------------------------------------------------------------------


@pytest.fixture
def folder(env: dict[str, str], kb: ElevenLabsDouble, monkeypatch: pytest.MonkeyPatch) -> str:
    """kbsync's own ElevenLabs folder, and leases short enough that nothing counts as new."""
    folder_id = kb.add_folder("kbsync")
    monkeypatch.setenv("KBSYNC_FOLDER_ID", folder_id)
    monkeypatch.setenv("KBSYNC_LEASE_SECONDS", "0.001")
    return folder_id


def orphan(tmp_path: Path, name: str) -> None:
    """A document kbsync made whose Firestore document was removed outside kbsync."""
    write(tmp_path, name, f"orphan {name}\n")
    assert kbsync("upload", name).exit_code == 0
    assert kbsync("delete", name, "--keep-remote").exit_code == 0


def test_prune_deletes_only_what_kbsync_made_and_nobody_points_to(
    folder: str, store: FirestoreStore, kb: ElevenLabsDouble, tmp_path: Path
) -> None:
    write(tmp_path, "kept.md")
    assert kbsync("upload", "kept.md").exit_code == 0
    orphan(tmp_path, "gone.md")
    foreign = kb.add_document("made by someone else.md", "not kbsync's")
    (gone,) = kb.docs_named("gone.md")
    assert kb.documents[gone.id].folder_id == folder

    planned = kbsync("prune", "--dry-run", "--json")

    assert planned.exit_code == 0, planned.output
    payload = json.loads(planned.stdout)
    assert [(d["name"], d["action"]) for d in payload["documents"]] == [("gone.md", "would_delete")]
    assert gone.id in kb.documents

    pruned = kbsync("prune", "--json")

    assert pruned.exit_code == 0, pruned.output
    assert json.loads(pruned.stdout)["summary"]["deleted"] == 1
    assert gone.id not in kb.documents
    assert foreign.id in kb.documents
    assert remote_id(store, "kept.md") in kb.documents


def test_prune_stops_before_deleting_more_than_max_delete(
    folder: str, store: FirestoreStore, kb: ElevenLabsDouble, tmp_path: Path
) -> None:
    for n in range(4):
        orphan(tmp_path, f"old{n}.md")
    deletes_before = kb.count("DELETE")

    result = kbsync("prune", "--max-delete", "3")

    assert result.exit_code == 1
    assert "more than --max-delete 3" in result.stderr
    assert "nothing was deleted" in result.stderr
    assert kb.count("DELETE") == deletes_before
    assert len(kb.documents) == 4

    assert kbsync("prune", "--max-delete", "4").exit_code == 0
    assert len(kb.documents) == 0


def test_prune_needs_kbsyncs_folder(env: dict[str, str], kb: ElevenLabsDouble) -> None:
    result = kbsync("prune")

    assert result.exit_code == 3
    assert "KBSYNC_FOLDER_ID" in result.stderr
    assert kb.count("DELETE") == 0


# --- agents ---------------------------------------------------------------------------------


def test_an_agents_list_ends_exactly_right_after_adds_changes_and_deletes(
    env: dict[str, str],
    store: FirestoreStore,
    kb: ElevenLabsDouble,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    other = kb.add_document("faq from another tool", "someone else's")
    theirs = {"type": "text", "name": other.name, "id": other.id, "usage_mode": "prompt"}
    agent = kb.add_agent("support", knowledge_base=[theirs])
    monkeypatch.setenv("KBSYNC_AGENT_ID", agent)
    write(tmp_path, "docs/a.md", "a\n")
    write(tmp_path, "docs/b.md", "b\n")

    added = kbsync("upload", "docs", "--json")

    assert added.exit_code == 0, added.output
    (change,) = json.loads(added.stdout)["agents"]
    assert change["agent_id"] == agent
    assert change["added"] == ["a.md", "b.md"]
    a_id, b_id = remote_id(store, "a.md"), remote_id(store, "b.md")
    assert kb.agent_kb(agent) == [
        theirs,
        {"type": "text", "name": "a.md", "id": a_id, "usage_mode": "auto"},
        {"type": "text", "name": "b.md", "id": b_id, "usage_mode": "auto"},
    ]

    write(tmp_path, "docs/a.md", "a, changed\n")
    assert kbsync("upload", "docs").exit_code == 0
    assert [entry["id"] for entry in kb.agent_kb(agent)] == [other.id, a_id, b_id]

    deleted = kbsync("delete", "b.md", "--json")

    assert deleted.exit_code == 0, deleted.output
    # Deleting a document only kbsync's agents use takes it out of them (the API's force).
    assert json.loads(deleted.stdout)["agents"][0]["error_message"] is None
    assert kb.agent_kb(agent) == [
        theirs,
        {"type": "text", "name": "a.md", "id": a_id, "usage_mode": "auto"},
    ]
    assert b_id not in kb.documents


def test_agent_usage_mode_and_a_conflicting_write_are_handled(
    env: dict[str, str],
    store: FirestoreStore,
    kb: ElevenLabsDouble,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    agent = kb.add_agent("support")
    monkeypatch.setenv("KBSYNC_AGENT_USAGE_MODE", "prompt")
    kb.script("PATCH", "/v1/convai/agents/{id}", Fault.status(409))
    write(tmp_path, "a.md")

    result = kbsync("upload", "a.md", "--agent-id", agent)

    assert result.exit_code == 0, result.output
    assert kb.agent_kb(agent) == [
        {"type": "text", "name": "a.md", "id": remote_id(store, "a.md"), "usage_mode": "prompt"}
    ]
    assert kb.count("PATCH", "/v1/convai/agents/{id}") == 2


def test_a_missing_agent_fails_the_run_with_a_clear_message(
    env: dict[str, str], store: FirestoreStore, kb: ElevenLabsDouble, tmp_path: Path
) -> None:
    write(tmp_path, "a.md")

    result = kbsync("upload", "a.md", "--agent-id", "agent_does_not_exist")

    assert result.exit_code == 1
    assert "agent agent_does_not_exist: not updated" in result.stdout
    document = store.get_by_name("a.md")
    assert document is not None
    assert document.sync_status is SyncStatus.COMPLETED


# --- RAG ------------------------------------------------------------------------------------


def test_rag_indexing_is_started_recorded_and_shown(
    env: dict[str, str],
    store: FirestoreStore,
    kb: ElevenLabsDouble,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    write(tmp_path, "big.md", "A long enough text to be indexed. " * 40)
    write(tmp_path, "tiny.md", "Too small.\n")
    monkeypatch.setenv("KBSYNC_RAG", "true")

    assert kbsync("upload", "big.md", "tiny.md").exit_code == 0

    big, tiny = store.get_by_name("big.md"), store.get_by_name("tiny.md")
    assert big is not None
    assert tiny is not None
    assert big.rag_status == "created"
    assert tiny.rag_status == "document_too_small"
    assert kb.count("POST", "/v1/convai/knowledge-base/{id}/rag-index") == 2
    status = kbsync("status", "--json")
    assert json.loads(status.stdout)["rag"] == {"created": 1, "document_too_small": 1}
    assert "RAG index: created 1" in kbsync("status").stdout


def test_without_rag_nothing_is_indexed(
    env: dict[str, str], store: FirestoreStore, kb: ElevenLabsDouble, tmp_path: Path
) -> None:
    write(tmp_path, "a.md")

    assert kbsync("upload", "a.md").exit_code == 0

    assert kb.count("POST", "/v1/convai/knowledge-base/{id}/rag-index") == 0
    assert "rag" not in json.loads(kbsync("status", "--json").stdout)


# --- doctor ---------------------------------------------------------------------------------


def test_doctor_passes_and_masks_the_key(
    env: dict[str, str], kb: ElevenLabsDouble, monkeypatch: pytest.MonkeyPatch
) -> None:
    agent = kb.add_agent("support")
    monkeypatch.setenv("KBSYNC_AGENT_ID", agent)
    monkeypatch.setenv("KBSYNC_FOLDER_ID", kb.add_folder("kbsync"))

    result = kbsync("doctor")

    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert [line.split(" ", 1)[0] for line in lines] == ["ok"] * 5
    assert "****" + KEY[-4:] in result.stdout


@pytest.mark.parametrize(
    ("breakage", "failing"),
    [
        ({"ELEVENLABS_API_KEY": "sk-wrong-key-0000"}, "API key"),
        ({"FIRESTORE_EMULATOR_HOST": "127.0.0.1:9"}, "Firestore"),
        ({"KBSYNC_AGENT_ID": "agent_missing"}, "agent agent_missing"),
        ({"KBSYNC_FOLDER_ID": "folder_missing"}, "folder folder_missing"),
    ],
    ids=["bad key", "stopped emulator", "missing agent", "missing folder"],
)
def test_doctor_names_the_failing_check(
    env: dict[str, str],
    kb: ElevenLabsDouble,
    monkeypatch: pytest.MonkeyPatch,
    breakage: dict[str, str],
    failing: str,
) -> None:
    for name, value in breakage.items():
        monkeypatch.setenv(name, value)

    result = kbsync("doctor")

    assert result.exit_code == 3
    failed = [line for line in result.stdout.splitlines() if line.startswith("FAIL")]
    assert len(failed) == 1, result.stdout
    assert failed[0].startswith(f"FAIL {failing}:")


# --- directories ----------------------------------------------------------------------------


def test_include_and_exclude_choose_files_in_directories(
    env: dict[str, str], store: FirestoreStore, tmp_path: Path
) -> None:
    write(tmp_path, "docs/a.md")
    write(tmp_path, "docs/b.txt")
    write(tmp_path, "docs/drafts/c.md")
    write(tmp_path, "docs/guides/d.md")

    result = kbsync(
        "upload", "docs", "--include", "*.md", "--exclude", "drafts/*", "--no-sync", "--json"
    )

    assert result.exit_code == 0, result.output
    assert sorted(d["name"] for d in json.loads(result.stdout)["documents"]) == [
        "a.md",
        "guides/d.md",
    ]


def test_delete_missing_mirrors_a_directory(
    env: dict[str, str], store: FirestoreStore, kb: ElevenLabsDouble, tmp_path: Path
) -> None:
    write(tmp_path, "docs/a.md")
    gone = write(tmp_path, "docs/b.md", "b\n")
    write(tmp_path, "elsewhere/c.md", "c\n")
    assert kbsync("upload", "docs").exit_code == 0
    assert kbsync("upload", "elsewhere/c.md").exit_code == 0
    b_id = remote_id(store, "b.md")
    gone.unlink()

    result = kbsync("upload", "--delete-missing", "docs", "--json")

    assert result.exit_code == 0, result.output
    actions = {d["name"]: d["action"] for d in json.loads(result.stdout)["documents"]}
    assert actions == {"a.md": "unchanged", "b.md": "deleted"}
    assert names_in_firestore(store) == ["a.md", "c.md"]
    assert b_id not in kb.documents


def test_errors_stay_typed_after_a_failed_delete(
    env: dict[str, str], store: FirestoreStore, kb: ElevenLabsDouble, tmp_path: Path
) -> None:
    write(tmp_path, "a.md")
    assert kbsync("upload", "a.md").exit_code == 0
    kb.script("DELETE", "/v1/convai/knowledge-base/{id}", *[Fault.status(503)] * 3)

    result = kbsync("delete", "a.md")

    assert result.exit_code == 1
    document = store.get_by_name("a.md")
    assert document is not None
    assert document.sync_status is SyncStatus.FAILED
    assert document.sync_error_type is ErrorType.SERVER_ERROR
    assert document.delete_requested
    assert kbsync("retry-failed").exit_code == 0
    assert names_in_firestore(store) == []


def test_the_agents_list_keeps_others_entries_and_drops_kbsyncs_stale_ones() -> None:
    from kbsync.agents import desired_documents  # noqa: PLC0415
    from kbsync.interfaces import AgentDocument  # noqa: PLC0415

    theirs = AgentDocument("x1", "their doc", "file", "prompt")
    stale = AgentDocument("k-old", "deleted.md", "text", "auto")
    current = [theirs, stale, AgentDocument("k1", "a.md", "text", "prompt")]

    wanted = desired_documents(
        current,
        completed={"k1": "a.md", "k2": "b.md"},
        managed={"k1", "k2", "k-old"},
        usage_mode="auto",
    )

    assert wanted == [
        theirs,
        AgentDocument("k1", "a.md", "text", "auto"),
        AgentDocument("k2", "b.md", "text", "auto"),
    ]
