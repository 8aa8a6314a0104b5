"""The real `kbsync` command, end to end, against the Firestore emulator and the API double.

Each test drives the CLI as a user would and checks what they would see: the exit code, the
output, the Firestore document and what ElevenLabs (the double) ended up holding.
"""

from __future__ import annotations

import datetime
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kbsync.models import ErrorType, SyncStatus, document_id
from kbsync.store import FirestoreStore
from tests.support.cli import CREATE, KEY, kbsync, write
from tests.support.elevenlabs_double import ElevenLabsDouble, Fault

# --- the happy path -------------------------------------------------------------------------


def test_upload_pushes_and_waits_for_completed(
    env: dict[str, str], store: FirestoreStore, kb: ElevenLabsDouble, tmp_path: Path
) -> None:
    write(tmp_path, "guide.md", "# Guide\nHow to reset a password.\n")

    result = kbsync("upload", "guide.md")

    assert result.exit_code == 0, result.output
    document = store.get_by_name("guide.md")
    assert document is not None
    assert document.sync_status is SyncStatus.COMPLETED
    assert document.elevenlabs_document_id is not None
    assert document.last_sync_attempt is not None
    assert document.sync_error_type is None
    assert (
        kb.documents[document.elevenlabs_document_id].text == "# Guide\nHow to reset a password.\n"
    )
    assert kb.documents[document.elevenlabs_document_id].name == "guide.md"
    assert "completed" in result.stdout
    assert "1 created" in result.stdout


def test_upload_json_shape(env: dict[str, str], store: FirestoreStore, tmp_path: Path) -> None:
    write(tmp_path, "a.md")

    result = kbsync("upload", "a.md", "--json")

    assert result.exit_code == 0
    payload = json.loads(result.stdout)
    assert set(payload) == {"documents", "summary"}
    assert payload["summary"] == {
        "created": 1,
        "updated": 0,
        "unchanged": 0,
        "failed": 0,
        "skipped": 0,
        "deleted": 0,
    }
    (entry,) = payload["documents"]
    assert set(entry) == {
        "name",
        "id",
        "status",
        "action",
        "elevenlabs_document_id",
        "error_type",
        "error_message",
    }
    assert entry["name"] == "a.md"
    assert entry["id"] == document_id("a.md")
    assert entry["status"] == "completed"
    assert entry["action"] == "created"
    assert entry["elevenlabs_document_id"]
    assert entry["error_type"] is None


def test_directory_upload_names_by_relative_path_and_counts_skipped_files(
    env: dict[str, str], store: FirestoreStore, kb: ElevenLabsDouble, tmp_path: Path
) -> None:
    write(tmp_path, "docs/intro.md")
    write(tmp_path, "docs/guides/setup.txt")
    write(tmp_path, "docs/image.png", "not text")

    result = kbsync("upload", "docs", "--json")

    assert result.exit_code == 0
    payload = json.loads(result.stdout)
    assert sorted(d["name"] for d in payload["documents"]) == ["guides/setup.txt", "intro.md"]
    assert payload["summary"]["created"] == 2
    assert payload["summary"]["skipped"] == 1
    assert sorted(doc.name for doc in kb.documents.values()) == ["guides/setup.txt", "intro.md"]


def test_upload_from_standard_input(env: dict[str, str], store: FirestoreStore) -> None:
    result = kbsync("upload", "-", "--name", "faq.md", stdin="Q: Opening hours?\nA: 9-5.\n")

    assert result.exit_code == 0, result.output
    document = store.get_by_name("faq.md")
    assert document is not None
    assert document.content == "Q: Opening hours?\nA: 9-5.\n"
    assert document.source is None
    assert document.sync_status is SyncStatus.COMPLETED


def test_reupload_unchanged_sends_nothing_and_changed_updates_in_place(
    env: dict[str, str], store: FirestoreStore, kb: ElevenLabsDouble, tmp_path: Path
) -> None:
    path = write(tmp_path, "guide.md", "first text\n")
    assert kbsync("upload", "guide.md").exit_code == 0
    first = store.get_by_name("guide.md")
    assert first is not None
    requests_before = kb.count()

    again = kbsync("upload", "guide.md", "--json")

    assert again.exit_code == 0
    assert json.loads(again.stdout)["documents"][0]["action"] == "unchanged"
    assert kb.count() == requests_before

    path.write_text("second text\n", encoding="utf-8")
    changed = kbsync("upload", "guide.md", "--json")

    assert changed.exit_code == 0
    entry = json.loads(changed.stdout)["documents"][0]
    assert entry["action"] == "updated"
    assert entry["elevenlabs_document_id"] == first.elevenlabs_document_id
    assert len(kb.documents) == 1
    assert kb.documents[first.elevenlabs_document_id].text == "second text\n"


def test_upload_no_sync_then_cron_sync(
    env: dict[str, str], store: FirestoreStore, kb: ElevenLabsDouble, tmp_path: Path
) -> None:
    for n in range(5):
        write(tmp_path, f"docs/doc{n}.md", f"document number {n}\n")

    uploaded = kbsync("upload", "docs", "--no-sync", "--json")

    assert uploaded.exit_code == 0
    assert {d["status"] for d in json.loads(uploaded.stdout)["documents"]} == {"pending"}
    assert kb.count() == 0

    synced = kbsync("sync")

    assert synced.exit_code == 0, synced.output
    assert "5 created" in synced.stdout
    assert store.count_by_status()[SyncStatus.COMPLETED] == 5
    assert len(kb.documents) == 5

    nothing = kbsync("sync")
    assert nothing.exit_code == 0
    assert "Nothing to sync" in nothing.stdout


def test_sync_dry_run_pushes_nothing(
    env: dict[str, str], store: FirestoreStore, kb: ElevenLabsDouble, tmp_path: Path
) -> None:
    write(tmp_path, "a.md")
    kbsync("upload", "a.md", "--no-sync")

    result = kbsync("sync", "--dry-run", "--json")

    assert result.exit_code == 0
    (entry,) = json.loads(result.stdout)["documents"]
    assert entry["action"] == "created"
    assert entry["status"] == "pending"
    assert kb.count() == 0
    document = store.get_by_name("a.md")
    assert document is not None
    assert document.sync_status is SyncStatus.PENDING


# --- failures, as the seed plan's table has them ------------------------------------------------


def test_rejected_key_stops_the_run_then_retry_failed_completes(
    env: dict[str, str],
    store: FirestoreStore,
    kb: ElevenLabsDouble,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for n in range(3):
        write(tmp_path, f"docs/doc{n}.md", f"document {n}\n")
    kb.api_keys.clear()
    kb.api_keys.add("the-right-key-is-elsewhere")
    monkeypatch.setenv("KBSYNC_CONCURRENCY", "1")

    result = kbsync("upload", "docs")

    assert result.exit_code == 3
    counts = store.count_by_status()
    assert counts[SyncStatus.FAILED] == 1
    assert counts[SyncStatus.PENDING] == 2
    (failed,) = store.list_documents(SyncStatus.FAILED)
    assert failed.sync_error_type is ErrorType.AUTH_ERROR
    assert failed.sync_error_message
    assert "API key" in failed.sync_error_message
    assert "ELEVENLABS_API_KEY" in result.stderr
    assert kb.count(*CREATE) == 1

    kb.api_keys.add(KEY)
    retried = kbsync("retry-failed", "--json")

    assert retried.exit_code == 0, retried.output
    (entry,) = json.loads(retried.stdout)["documents"]
    assert entry["name"] == failed.name
    assert entry["status"] == "completed"
    assert entry["action"] == "created"

    rest = kbsync("sync")
    assert rest.exit_code == 0
    assert store.count_by_status()[SyncStatus.COMPLETED] == 3
    assert len(kb.documents) == 3


@pytest.mark.parametrize(
    ("fault", "error_type"),
    [
        (Fault.status(429, headers={"Retry-After": "0"}), ErrorType.RATE_LIMIT),
        (Fault.status(503), ErrorType.SERVER_ERROR),
    ],
)
def test_transient_error_then_success(
    env: dict[str, str],
    store: FirestoreStore,
    kb: ElevenLabsDouble,
    tmp_path: Path,
    fault: Fault,
    error_type: ErrorType,
) -> None:
    write(tmp_path, "guide.md")
    kb.script(*CREATE, fault)

    result = kbsync("upload", "guide.md", "-v")

    assert result.exit_code == 0, result.output
    document = store.get_by_name("guide.md")
    assert document is not None
    assert document.sync_status is SyncStatus.COMPLETED
    assert document.sync_retry_count == 1
    assert len(kb.documents) == 1
    assert "retrying guide.md" in result.stderr
    assert error_type.value in result.stderr


@pytest.mark.parametrize(
    ("fault", "error_type"),
    [
        (Fault.status(429, headers={"Retry-After": "0"}), ErrorType.RATE_LIMIT),
        (Fault.status(500), ErrorType.SERVER_ERROR),
        (Fault.drop(), ErrorType.NETWORK),
    ],
)
def test_attempts_used_up_ends_failed_with_the_cause(
    env: dict[str, str],
    store: FirestoreStore,
    kb: ElevenLabsDouble,
    tmp_path: Path,
    fault: Fault,
    error_type: ErrorType,
) -> None:
    write(tmp_path, "guide.md")
    kb.script(*CREATE, fault, fault, fault)

    result = kbsync("upload", "guide.md")

    assert result.exit_code == 1
    document = store.get_by_name("guide.md")
    assert document is not None
    assert document.sync_status is SyncStatus.FAILED
    assert document.sync_error_type is error_type
    assert document.sync_retry_count == 2
    assert document.next_attempt_at is not None
    assert "Failed documents" in result.stdout
    assert error_type.value in result.stdout
    assert kb.count(*CREATE) == 3
    assert len(kb.documents) == 0
    assert "retrying" not in result.stderr


def test_validation_error_waits_for_retry_failed(
    env: dict[str, str], store: FirestoreStore, kb: ElevenLabsDouble, tmp_path: Path
) -> None:
    write(tmp_path, "broken.md")
    kb.reject_names("broken*")

    result = kbsync("upload", "broken.md", "--json")

    assert result.exit_code == 1
    (entry,) = json.loads(result.stdout)["documents"]
    assert entry["status"] == "failed"
    assert entry["action"] == "failed"
    assert entry["error_type"] == "validation"
    assert entry["error_message"]
    assert kb.count(*CREATE) == 1
    document = store.get_by_name("broken.md")
    assert document is not None
    assert document.next_attempt_at is None

    later = kbsync("sync")
    assert later.exit_code == 0
    assert kb.count(*CREATE) == 1


def test_missing_key_is_a_one_line_error_and_writes_nothing(
    env: dict[str, str], store: FirestoreStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ELEVENLABS_API_KEY")
    write(tmp_path, "guide.md")

    result = kbsync("upload", "guide.md")

    assert result.exit_code == 3
    assert "ELEVENLABS_API_KEY" in result.stderr
    assert "Traceback" not in result.output
    assert list(store.list_documents()) == []


def test_unreachable_firestore_is_exit_3_not_a_traceback(
    env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", "127.0.0.1:9")

    result = kbsync("status")

    assert result.exit_code == 3
    assert "127.0.0.1:9" in result.stderr
    assert "Traceback" not in result.output


# --- input checks ---------------------------------------------------------------------------


def _bad_inputs(folder: Path) -> dict[str, tuple[list[str], str]]:
    """Each bad input of the contract: the command's arguments and a word of its problem line."""
    write(folder, "good.md")
    write(folder, "empty.md", "")
    write(folder, "blank.txt", "  \n\t\n")
    (folder / "latin1.md").write_bytes("caf\xe9".encode("latin-1"))
    (folder / "nul.md").write_bytes(b"text\x00more")
    (folder / "big.md").write_bytes(b"x" * 900_001)
    write(folder, "notes.pdf")
    (folder / "nothing").mkdir()
    write(folder, "onlyimages/pic.png")
    write(folder, "a/same.md")
    write(folder, "b/same.md")
    return {
        "missing": (["upload", "good.md", "nope.md"], "nope.md: no such file"),
        "empty": (["upload", "good.md", "empty.md"], "empty.md: is empty"),
        "whitespace": (["upload", "blank.txt"], "blank.txt: is empty"),
        "not utf-8": (["upload", "latin1.md"], "latin1.md: is not UTF-8"),
        "nul bytes": (["upload", "nul.md"], "nul.md: contains NUL"),
        "too big": (["upload", "big.md"], "big.md: is larger than 900,000 bytes"),
        "unsupported": (["upload", "notes.pdf"], "notes.pdf: unsupported file type"),
        "empty dir": (["upload", "nothing"], "nothing: directory holds no supported file"),
        "no supported": (["upload", "onlyimages"], "onlyimages: directory holds no supported"),
        "name many": (["upload", "good.md", "a/same.md", "--name", "x"], "--name: names one"),
        "stdin no name": (["upload", "-"], "-: standard input needs --name"),
        "same name": (["upload", "a/same.md", "b/same.md"], "has the same name 'same.md'"),
    }


@pytest.mark.parametrize(
    "case",
    [
        "missing",
        "empty",
        "whitespace",
        "not utf-8",
        "nul bytes",
        "too big",
        "unsupported",
        "empty dir",
        "no supported",
        "name many",
        "stdin no name",
        "same name",
    ],
)
def test_bad_input_exits_2_and_writes_nothing(
    env: dict[str, str], store: FirestoreStore, kb: ElevenLabsDouble, tmp_path: Path, case: str
) -> None:
    args, problem = _bad_inputs(tmp_path)[case]

    result = kbsync(*args)

    assert result.exit_code == 2
    assert problem in result.stderr
    assert list(store.list_documents()) == []
    assert kb.count() == 0


def test_every_bad_input_is_listed_at_once(
    env: dict[str, str], store: FirestoreStore, tmp_path: Path
) -> None:
    _bad_inputs(tmp_path)

    result = kbsync("upload", "good.md", "empty.md", "notes.pdf", "nope.md", "--no-sync")

    assert result.exit_code == 2
    assert "empty.md: is empty" in result.stderr
    assert "notes.pdf: unsupported file type" in result.stderr
    assert "nope.md: no such file" in result.stderr
    assert list(store.list_documents()) == []


def test_retry_failed_unknown_name_is_bad_usage(env: dict[str, str], store: FirestoreStore) -> None:
    result = kbsync("retry-failed", "ghost.md")

    assert result.exit_code == 2
    assert "ghost.md: no document with this name" in result.stderr


# --- list and status ------------------------------------------------------------------------


def _mixed_collection(tmp_path: Path, kb: ElevenLabsDouble) -> None:
    write(tmp_path, "docs/ok1.md")
    write(tmp_path, "docs/ok2.md", "other text\n")
    write(tmp_path, "docs/broken.md")
    kb.reject_names("broken*")
    kbsync("upload", "docs")
    write(tmp_path, "later.md")
    kbsync("upload", "later.md", "--no-sync")


def test_list_json_shape_and_status_filter(
    env: dict[str, str], store: FirestoreStore, kb: ElevenLabsDouble, tmp_path: Path
) -> None:
    _mixed_collection(tmp_path, kb)

    everything = json.loads(kbsync("list", "--json").stdout)
    failed = json.loads(kbsync("list", "--status", "failed", "--json").stdout)

    assert [d["name"] for d in everything["documents"]] == [
        "broken.md",
        "later.md",
        "ok1.md",
        "ok2.md",
    ]
    assert set(everything["documents"][0]) == {
        "name",
        "id",
        "sync_status",
        "elevenlabs_document_id",
        "sync_error_type",
        "sync_error_message",
        "last_sync_attempt",
        "sync_retry_count",
    }
    (broken,) = failed["documents"]
    assert broken["name"] == "broken.md"
    assert broken["sync_status"] == "failed"
    assert broken["sync_error_type"] == "validation"
    assert broken["last_sync_attempt"].endswith("Z")
    later = next(d for d in everything["documents"] if d["name"] == "later.md")
    assert later["sync_status"] == "pending"
    assert later["last_sync_attempt"] is None


def test_list_table(
    env: dict[str, str], store: FirestoreStore, kb: ElevenLabsDouble, tmp_path: Path
) -> None:
    _mixed_collection(tmp_path, kb)

    result = kbsync("list")

    assert result.exit_code == 0
    ok1 = store.get_by_name("ok1.md")
    assert ok1 is not None
    assert ok1.elevenlabs_document_id is not None
    row = next(line for line in result.stdout.splitlines() if "ok1.md" in line)
    assert "completed" in row
    assert ok1.elevenlabs_document_id in row
    assert "pending" in next(line for line in result.stdout.splitlines() if "later.md" in line)


def test_status_json_shape(
    env: dict[str, str], store: FirestoreStore, kb: ElevenLabsDouble, tmp_path: Path
) -> None:
    _mixed_collection(tmp_path, kb)

    payload = json.loads(kbsync("status", "--json").stdout)

    assert payload["counts"] == {"pending": 1, "syncing": 0, "completed": 2, "failed": 1}
    (failed,) = payload["failed"]
    assert set(failed) == {
        "name",
        "sync_error_type",
        "sync_error_message",
        "last_sync_attempt",
        "sync_retry_count",
    }
    assert failed["name"] == "broken.md"
    assert failed["sync_error_type"] == "validation"


def test_status_shows_counts_and_failed_table(
    env: dict[str, str], store: FirestoreStore, kb: ElevenLabsDouble, tmp_path: Path
) -> None:
    _mixed_collection(tmp_path, kb)

    result = kbsync("status")

    assert result.exit_code == 0
    assert "pending 1" in result.stdout
    assert "completed 2" in result.stdout
    assert "failed 1" in result.stdout
    assert "Failed documents" in result.stdout
    row = next(line for line in result.stdout.splitlines() if "broken.md" in line)
    assert "validation" in row


def test_no_escape_codes_when_not_a_terminal(
    env: dict[str, str], store: FirestoreStore, kb: ElevenLabsDouble, tmp_path: Path
) -> None:
    write(tmp_path, "docs/ok.md")
    write(tmp_path, "docs/broken.md")
    kb.reject_names("broken*")

    outputs = [
        kbsync("upload", "docs"),
        kbsync("list"),
        kbsync("status"),
        kbsync("sync"),
    ]

    for result in outputs:
        assert "\x1b" not in result.output
    lines = outputs[0].stdout.splitlines()
    assert any(line.startswith("completed") and "ok.md" in line for line in lines)
    assert any(line.startswith("failed") and "broken.md" in line for line in lines)


def test_version_and_help() -> None:
    version = kbsync("--version")
    assert version.exit_code == 0
    assert version.stdout.startswith("kbsync ")
    helped = kbsync("--help")
    assert helped.exit_code == 0
    for command in ("upload", "list", "sync", "retry-failed", "status"):
        assert command in helped.stdout


# --- real processes: pipes and signals ---------------------------------------------------------


def _subprocess_env(env: dict[str, str]) -> dict[str, str]:
    return {**os.environ, **env}


def test_piped_output_has_no_escape_codes_and_no_key(
    env: dict[str, str], store: FirestoreStore, kb: ElevenLabsDouble, tmp_path: Path
) -> None:
    write(tmp_path, "guide.md")
    proc = subprocess.run(
        [sys.executable, "-m", "kbsync", "upload", "guide.md", "-v"],
        capture_output=True,
        text=True,
        env={**_subprocess_env(env), "TERM": "xterm-256color"},
        cwd=tmp_path,
        timeout=120,
        check=False,
    )

    assert proc.returncode == 0, proc.stderr
    assert "\x1b" not in proc.stdout
    assert KEY not in proc.stdout + proc.stderr
    assert "guide.md" in proc.stdout


def test_status_watch_ends_with_exit_0_on_ctrl_c(
    env: dict[str, str], store: FirestoreStore, tmp_path: Path
) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "kbsync", "status", "--watch", "--interval", "0.2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_subprocess_env(env),
        cwd=tmp_path,
    )
    deadline = time.monotonic() + 60
    assert proc.stdout is not None
    first = proc.stdout.readline()
    while "pending" not in first and time.monotonic() < deadline:
        first = proc.stdout.readline()
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=30)

    assert proc.returncode == 0, stderr
    assert "pending 0" in first
    assert "Traceback" not in stderr


# --- more of the contract ---------------------------------------------------------------------


def test_firestore_document_has_the_contract_fields_with_their_types(
    env: dict[str, str], store: FirestoreStore, tmp_path: Path
) -> None:
    """Other programs read these fields: check them on the raw Firestore document."""
    from google.cloud import firestore  # noqa: PLC0415  only this test reads Firestore directly

    write(tmp_path, "guide.md", "the text\n")
    assert kbsync("upload", "guide.md").exit_code == 0

    client = firestore.Client(project=os.environ["GOOGLE_CLOUD_PROJECT"])
    raw = client.collection("knowledge_documents").document(document_id("guide.md")).get()
    fields = raw.to_dict()
    assert fields is not None
    assert fields["name"] == "guide.md"
    assert fields["content"] == "the text\n"
    assert isinstance(fields["content_hash"], str)
    assert fields["source"] == str(tmp_path / "guide.md")
    assert fields["sync_status"] == "completed"
    assert isinstance(fields["elevenlabs_document_id"], str)
    assert fields["sync_error_type"] is None
    assert fields["sync_error_message"] is None
    assert isinstance(fields["last_sync_attempt"], datetime.datetime)
    assert fields["sync_retry_count"] == 0
    assert isinstance(fields["created_at"], datetime.datetime)
    assert isinstance(fields["updated_at"], datetime.datetime)

    write(tmp_path, "guide.md", "new text\n")
    assert kbsync("upload", "guide.md").exit_code == 0
    changed = client.collection("knowledge_documents").document(document_id("guide.md")).get()
    assert changed.get("content_hash") != fields["content_hash"]
    assert len(list(client.collection("knowledge_documents").stream())) == 1


def test_the_key_is_never_stored_in_firestore(
    env: dict[str, str], store: FirestoreStore, kb: ElevenLabsDouble, tmp_path: Path
) -> None:
    write(tmp_path, "guide.md")
    kb.api_keys.clear()

    assert kbsync("upload", "guide.md").exit_code == 3

    for document in store.list_documents():
        assert KEY not in repr(document)


def test_a_create_whose_answer_was_lost_is_not_made_twice(
    env: dict[str, str], store: FirestoreStore, kb: ElevenLabsDouble, tmp_path: Path
) -> None:
    write(tmp_path, "guide.md", "exactly this text\n")
    kb.script(*CREATE, Fault.commit_then_drop())

    result = kbsync("upload", "guide.md")

    assert result.exit_code == 0, result.output
    (held,) = kb.docs_named("guide.md")
    document = store.get_by_name("guide.md")
    assert document is not None
    assert document.sync_status is SyncStatus.COMPLETED
    assert document.elevenlabs_document_id == held.id
    assert kb.count(*CREATE) == 1


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_or_sigterm_stop_a_sync_quickly_and_leave_nothing_syncing(
    env: dict[str, str], store: FirestoreStore, kb: ElevenLabsDouble, tmp_path: Path, sig: int
) -> None:
    for n in range(20):
        write(tmp_path, f"docs/doc{n:02}.md", f"document {n}\n")
    assert kbsync("upload", "docs", "--no-sync").exit_code == 0
    kb.latency = 0.5
    proc = subprocess.Popen(
        [sys.executable, "-m", "kbsync", "sync", "--concurrency", "2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_subprocess_env(env),
        cwd=tmp_path,
    )
    deadline = time.monotonic() + 60
    while kb.count(*CREATE) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    stopped_at = time.monotonic()
    proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=30)

    assert proc.returncode == 130, stderr
    assert time.monotonic() - stopped_at < 10
    assert "Traceback" not in stderr
    counts = store.count_by_status()
    assert counts[SyncStatus.SYNCING] == 0
    assert counts[SyncStatus.FAILED] == 0
    assert counts[SyncStatus.PENDING] > 0
    kb.latency = 0.0
    finished = kbsync("sync")
    assert finished.exit_code == 0
    assert store.count_by_status()[SyncStatus.COMPLETED] == 20
    assert sorted(doc.name for doc in kb.documents.values()) == [f"doc{n:02}.md" for n in range(20)]


def test_a_terminal_gets_colour_unless_no_color(
    env: dict[str, str],
    store: FirestoreStore,
    kb: ElevenLabsDouble,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    write(tmp_path, "guide.md")
    assert kbsync("upload", "guide.md").exit_code == 0
    monkeypatch.setenv("FORCE_COLOR", "1")

    coloured = kbsync("list")
    monkeypatch.setenv("NO_COLOR", "1")
    plain = kbsync("list")

    assert "\x1b[32m" in coloured.stdout  # completed, in green
    assert "\x1b[3" not in plain.stdout
    assert "completed" in plain.stdout


@pytest.mark.parametrize(
    ("args", "heavy"),
    [
        (["--help"], ("google", "elevenlabs", "httpx", "grpc", "pydantic", "tenacity")),
        (["--version"], ("google", "elevenlabs", "httpx", "grpc", "pydantic", "tenacity")),
        # Typer itself loads pydantic to describe some option types.
        (["sync", "--help"], ("google", "elevenlabs", "httpx", "grpc", "tenacity")),
    ],
)
def test_help_and_version_do_not_load_the_heavy_libraries(
    args: list[str], heavy: tuple[str, ...]
) -> None:
    """`kbsync --help` must start quickly: Firestore, ElevenLabs and HTTP stay unloaded."""
    probe = (
        "import sys\n"
        "from kbsync.cli import app\n"
        "try:\n"
        f"    app({args!r})\n"
        "except SystemExit:\n"
        "    pass\n"
        f"heavy = {heavy!r}\n"
        "print(sorted({m.split('.')[0] for m in sys.modules if m.split('.')[0] in heavy}))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )

    assert proc.stdout.strip().splitlines()[-1] == "[]"


def test_concurrency_above_the_apis_cap_adapts_instead_of_failing(
    env: dict[str, str], store: FirestoreStore, kb: ElevenLabsDouble, tmp_path: Path
) -> None:
    for n in range(40):
        write(tmp_path, f"docs/doc{n:02}.md", f"document {n}\n")
    assert kbsync("upload", "docs", "--no-sync").exit_code == 0
    kb.latency = 0.05
    kb.concurrency_cap = 4

    result = kbsync("sync", "--concurrency", "16", "--json")

    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["summary"]["created"] == 40
    assert store.count_by_status()[SyncStatus.COMPLETED] == 40
    assert len(kb.documents) == 40
    refused = [r for r in kb.requests if r.fault == "concurrency_cap"]
    assert refused, "the test must actually go over the cap"
    assert len(refused) < 40, "kbsync must learn the cap, not hammer it"
    assert all(d.sync_retry_count == 0 for d in store.list_documents()), (
        "a refusal for too many at once is not a failed attempt"
    )
