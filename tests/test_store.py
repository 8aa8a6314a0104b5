"""`FirestoreStore` against the real Firestore emulator."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from kbsync.errors import StoreUnavailable
from kbsync.interfaces import Claim, UpsertAction
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
from kbsync.store import DOCUMENT_PAGE_SIZE, FirestoreStore
from tests.support.emulator import free_port

LEASE = 300.0
RATE_LIMITED = Failure(ErrorType.RATE_LIMIT, "429 Too Many Requests")
REJECTED = Failure(ErrorType.VALIDATION, "422 the text is empty")


@pytest.fixture
def now() -> datetime:
    return datetime.now(UTC)


def upload(store: FirestoreStore, name: str, content: str = "hello") -> Document:
    (result,) = store.upsert([NewDocument(name=name, content=content, source=f"docs/{name}")])
    return result.document


def claimed(store: FirestoreStore, name: str, now: datetime, owner: str = "run-1") -> Claim:
    claim = store.claim(document_id(name), owner, LEASE, now)
    assert claim is not None
    return claim


def stored(store: FirestoreStore, name: str) -> Document:
    document = store.get_by_name(name)
    assert document is not None
    return document


def update_time(store: FirestoreStore, name: str) -> datetime:
    """When Firestore last wrote the document (changes on every write, even a no-op one)."""
    snapshot = store.client.collection(store.collection_name).document(document_id(name)).get()
    assert snapshot.exists
    moment: datetime = snapshot.update_time
    return moment


def fail(
    store: FirestoreStore,
    name: str,
    now: datetime,
    failure: Failure = RATE_LIMITED,
    next_attempt_at: datetime | None = None,
) -> Document:
    document = store.record_failure(claimed(store, name, now), failure, 0, next_attempt_at, False)
    assert document is not None
    return document


# -- upsert -----------------------------------------------------------------------------------


def test_upsert_creates_a_pending_document_under_the_name_derived_id(
    store: FirestoreStore,
) -> None:
    (result,) = store.upsert([NewDocument("guides/intro.md", "Welcome", "kb/guides/intro.md")])

    assert result.action is UpsertAction.CREATED
    document = stored(store, "guides/intro.md")
    assert document == result.document
    assert document.id == document_id("guides/intro.md")
    assert (document.name, document.content, document.source) == (
        "guides/intro.md",
        "Welcome",
        "kb/guides/intro.md",
    )
    assert document.content_hash == content_hash("Welcome")
    assert document.sync_status is SyncStatus.PENDING
    assert document.sync_retry_count == 0
    assert document.elevenlabs_document_id is None
    assert document.sync_error_type is None
    assert document.last_sync_attempt is None
    assert document.created_at is not None
    assert document.created_at.tzinfo is not None
    assert document.updated_at == document.created_at
    assert document.needs_push


def test_upsert_of_the_same_content_writes_nothing(store: FirestoreStore, now: datetime) -> None:
    upload(store, "a.md", "same")
    store.record_success(claimed(store, "a.md", now), "el-1", content_hash("same"), 0)
    before, written_at = stored(store, "a.md"), update_time(store, "a.md")

    (result,) = store.upsert([NewDocument("a.md", "same", "elsewhere/a.md")])

    assert result.action is UpsertAction.UNCHANGED
    assert result.document == before
    assert stored(store, "a.md") == before
    assert update_time(store, "a.md") == written_at
    assert before.sync_status is SyncStatus.COMPLETED


def test_upsert_of_new_content_goes_back_to_pending_with_a_fresh_retry_count(
    store: FirestoreStore, now: datetime
) -> None:
    upload(store, "a.md", "v1")
    fail(store, "a.md", now, RATE_LIMITED, next_attempt_at=now + timedelta(minutes=5))
    store.upsert([NewDocument("a.md", "v1", None)])  # RETRY
    claim = claimed(store, "a.md", now)  # a retry of v1
    failed = store.record_failure(claim, RATE_LIMITED, 2, now, False)
    assert failed is not None
    assert failed.sync_retry_count == 3
    assert failed.failed_runs == 1

    (result,) = store.upsert([NewDocument("a.md", "v2", "new/a.md")])

    assert result.action is UpsertAction.CHANGED
    document = stored(store, "a.md")
    assert document == result.document
    assert (document.content, document.content_hash, document.source) == (
        "v2",
        content_hash("v2"),
        "new/a.md",
    )
    assert document.sync_status is SyncStatus.PENDING
    assert document.sync_retry_count == 0
    assert document.failed_runs == 0
    assert document.next_attempt_at is None
    assert document.sync_error_type is None
    assert document.sync_error_message is None
    assert document.created_at == failed.created_at
    assert document.updated_at is not None
    assert failed.updated_at is not None
    assert document.updated_at > failed.updated_at


def test_upsert_of_a_failed_document_with_the_same_content_retries_it(
    store: FirestoreStore, now: datetime
) -> None:
    upload(store, "a.md", "text")
    claim = claimed(store, "a.md", now)
    store.record_failure(claim, REJECTED, 1, None, False)

    (result,) = store.upsert([NewDocument("a.md", "text", None)])

    assert result.action is UpsertAction.RETRY
    document = stored(store, "a.md")
    assert document == result.document
    assert document.sync_status is SyncStatus.PENDING
    assert document.sync_error_type is None
    assert document.sync_error_message is None
    assert document.failed_runs == 0
    assert document.next_attempt_at is None
    assert document.sync_retry_count == 1, "retries of this content are still counted"


def test_upload_while_another_run_pushes_keeps_it_syncing_and_that_run_sees_the_change(
    store: FirestoreStore, now: datetime
) -> None:
    upload(store, "a.md", "v1")
    claim = claimed(store, "a.md", now)

    (result,) = store.upsert([NewDocument("a.md", "v2", None)])

    assert result.action is UpsertAction.CHANGED
    during = stored(store, "a.md")
    assert during.sync_status is SyncStatus.SYNCING
    assert during.lease_owner == "run-1"
    assert during.lease_expires_at == claim.document.lease_expires_at
    assert during.content == "v2"

    after = store.record_success(claim, "el-1", content_hash("v1"), 1)

    assert after is not None
    assert after == stored(store, "a.md")
    assert after.sync_status is SyncStatus.PENDING, "v2 still has to be pushed"
    assert after.elevenlabs_document_id == "el-1"
    assert after.pushed_hash == content_hash("v1")
    assert after.sync_retry_count == 0
    assert after.lease_owner is None
    assert after.needs_push


def test_upload_over_an_expired_lease_makes_it_pending(
    store: FirestoreStore, now: datetime
) -> None:
    upload(store, "a.md", "v1")
    claimed(store, "a.md", now - timedelta(seconds=LEASE + 60))

    store.upsert([NewDocument("a.md", "v2", None)])

    document = stored(store, "a.md")
    assert document.sync_status is SyncStatus.PENDING
    assert document.lease_owner is None
    assert document.lease_expires_at is None
    assert document.create_in_doubt, "the run that died may have created it on ElevenLabs"


def test_upsert_of_many_documents_at_once(store: FirestoreStore) -> None:
    inputs = [NewDocument(f"doc-{i:03}.md", f"text {i}", None) for i in range(120)]
    store.upsert(inputs[:50])

    results = store.upsert(
        [*inputs[:40], *(NewDocument(d.name, "new", None) for d in inputs[40:50]), *inputs[50:]]
    )

    actions = [result.action for result in results]
    assert (
        actions
        == [UpsertAction.UNCHANGED] * 40 + [UpsertAction.CHANGED] * 10 + [UpsertAction.CREATED] * 70
    )
    assert [result.document.name for result in results] == [d.name for d in inputs]
    assert store.count_by_status()[SyncStatus.PENDING] == 120


# -- claim and the lease ----------------------------------------------------------------------


def test_claim_takes_the_lease_and_stamps_the_attempt(store: FirestoreStore, now: datetime) -> None:
    upload(store, "a.md", "text")

    claim = claimed(store, "a.md", now, owner="run-1")

    assert claim.owner == "run-1"
    document = stored(store, "a.md")
    assert document == claim.document
    assert document.sync_status is SyncStatus.SYNCING
    assert document.lease_owner == "run-1"
    assert document.lease_expires_at == now + timedelta(seconds=LEASE)
    assert document.last_sync_attempt == now
    assert document.attempted_hash == content_hash("text")
    assert document.sync_retry_count == 0, "a first attempt is not a retry"


def test_a_live_lease_keeps_other_runs_out_until_it_runs_out(
    store: FirestoreStore, now: datetime
) -> None:
    upload(store, "a.md")
    first = claimed(store, "a.md", now, owner="run-1")

    assert (
        store.claim(first.document.id, "run-2", LEASE, now + timedelta(seconds=LEASE - 1)) is None
    )
    assert stored(store, "a.md").lease_owner == "run-1"

    later = now + timedelta(seconds=LEASE + 1)
    takeover = store.claim(first.document.id, "run-2", LEASE, later)

    assert takeover is not None
    assert takeover.document.lease_owner == "run-2"
    assert takeover.document.last_sync_attempt == later
    assert takeover.document.sync_retry_count == 1, "the same content was attempted before"
    assert takeover.document.create_in_doubt, "the run that lost it may have created it"
    assert not first.document.create_in_doubt


def test_a_run_that_lost_its_lease_records_nothing(store: FirestoreStore, now: datetime) -> None:
    upload(store, "a.md")
    first = claimed(store, "a.md", now, owner="run-1")
    claimed(store, "a.md", now + timedelta(seconds=LEASE + 1), owner="run-2")
    taken_over, written_at = stored(store, "a.md"), update_time(store, "a.md")

    assert store.record_success(first, "el-1", first.document.content_hash, 0) is None
    assert store.record_failure(first, RATE_LIMITED, 1, now, True) is None
    assert store.release(first, create_in_doubt=True) is False

    assert stored(store, "a.md") == taken_over
    assert update_time(store, "a.md") == written_at


def test_claim_of_a_completed_or_missing_document_is_refused(
    store: FirestoreStore, now: datetime
) -> None:
    upload(store, "a.md")
    store.record_success(claimed(store, "a.md", now), "el-1", content_hash("hello"), 0)

    assert store.claim(document_id("a.md"), "run-2", LEASE, now) is None
    assert store.claim(document_id("missing.md"), "run-2", LEASE, now) is None


def test_retry_count_grows_with_each_attempt_of_the_same_content(
    store: FirestoreStore, now: datetime
) -> None:
    upload(store, "a.md", "v1")
    first = store.record_failure(claimed(store, "a.md", now), RATE_LIMITED, 2, now, False)
    assert first is not None
    assert first.sync_retry_count == 2, "two retries within the run"

    again = claimed(store, "a.md", now + timedelta(seconds=1))
    assert again.document.sync_retry_count == 3, "a later run's attempt is a retry too"

    store.record_failure(again, RATE_LIMITED, 0, now, False)
    store.upsert([NewDocument("a.md", "v2", None)])
    fresh = claimed(store, "a.md", now + timedelta(seconds=2))
    assert fresh.document.sync_retry_count == 0, "new content starts again at 0"


def test_two_runs_claiming_one_document_at_once_never_both_win(
    store: FirestoreStore, now: datetime
) -> None:
    other = FirestoreStore(store.collection_name, project=store.project)
    try:
        for round_number in range(20):
            name = f"race-{round_number}.md"
            upload(store, name)
            start = threading.Barrier(2)
            winners: list[str] = []
            threads = [
                threading.Thread(
                    target=race,
                    args=(runner, owner),
                    kwargs={"name": name, "now": now, "start": start, "winners": winners},
                )
                for runner, owner in [(store, "run-a"), (other, "run-b")]
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(timeout=30)
            assert len(winners) == 1, f"round {round_number}: winners {winners}"
            assert stored(store, name).lease_owner == winners[0]
    finally:
        other.close()


def race(
    runner: FirestoreStore,
    owner: str,
    *,
    name: str,
    now: datetime,
    start: threading.Barrier,
    winners: list[str],
) -> None:
    """Claim `name` for `owner` as soon as the other runner is ready too."""
    start.wait()
    if runner.claim(document_id(name), owner, LEASE, now) is not None:
        winners.append(owner)


# -- recording outcomes -----------------------------------------------------------------------


def test_record_success_completes_the_document(store: FirestoreStore, now: datetime) -> None:
    upload(store, "a.md", "text")
    failed = fail(store, "a.md", now, RATE_LIMITED, next_attempt_at=now)
    claim = claimed(store, "a.md", now + timedelta(seconds=1))

    document = store.record_success(claim, "el-42", content_hash("text"), retries=2)

    assert document is not None
    assert document == stored(store, "a.md")
    assert document.sync_status is SyncStatus.COMPLETED
    assert document.elevenlabs_document_id == "el-42"
    assert document.pushed_hash == content_hash("text")
    assert not document.needs_push
    assert document.sync_retry_count == failed.sync_retry_count + 1 + 2
    assert document.sync_error_type is None
    assert document.sync_error_message is None
    assert document.failed_runs == 0
    assert document.next_attempt_at is None
    assert document.lease_owner is None
    assert document.lease_expires_at is None
    assert document.create_in_doubt is False


def test_a_transient_failure_counts_a_failed_run_and_waits_for_its_next_attempt(
    store: FirestoreStore, now: datetime
) -> None:
    upload(store, "a.md")
    claim = claimed(store, "a.md", now)
    next_attempt = now + timedelta(minutes=2)
    long_message = "x" * (MAX_ERROR_MESSAGE + 500)

    document = store.record_failure(
        claim, Failure(ErrorType.NETWORK, long_message), 2, next_attempt, create_in_doubt=True
    )

    assert document is not None
    assert document == stored(store, "a.md")
    assert document.sync_status is SyncStatus.FAILED
    assert document.sync_error_type is ErrorType.NETWORK
    assert document.sync_error_message == "x" * MAX_ERROR_MESSAGE
    assert document.sync_retry_count == 2
    assert document.failed_runs == 1
    assert document.next_attempt_at == next_attempt
    assert document.create_in_doubt is True
    assert document.lease_owner is None


def test_a_permanent_failure_waits_for_retry_failed(store: FirestoreStore, now: datetime) -> None:
    upload(store, "a.md")

    document = store.record_failure(claimed(store, "a.md", now), REJECTED, 0, None, False)

    assert document is not None
    assert document.sync_status is SyncStatus.FAILED
    assert document.sync_error_type is ErrorType.VALIDATION
    assert document.sync_error_message == REJECTED.message
    assert document.failed_runs == 0
    assert document.next_attempt_at is None


def test_a_failure_of_content_edited_during_the_push_leaves_it_pending(
    store: FirestoreStore, now: datetime
) -> None:
    upload(store, "a.md", "v1")
    claim = claimed(store, "a.md", now)
    store.upsert([NewDocument("a.md", "v2", None)])

    document = store.record_failure(claim, RATE_LIMITED, 1, now, create_in_doubt=True)

    assert document is not None
    assert document == stored(store, "a.md")
    assert document.sync_status is SyncStatus.PENDING
    assert document.sync_error_type is None
    assert document.next_attempt_at is None
    assert document.create_in_doubt is True
    assert document.lease_owner is None


def test_release_gives_the_document_back_as_pending(store: FirestoreStore, now: datetime) -> None:
    upload(store, "a.md")
    claim = claimed(store, "a.md", now)

    assert store.release(claim, create_in_doubt=True) is True

    document = stored(store, "a.md")
    assert document.sync_status is SyncStatus.PENDING
    assert document.lease_owner is None
    assert document.lease_expires_at is None
    assert document.create_in_doubt is True
    assert store.release(claim, create_in_doubt=False) is False

    again = claimed(store, "a.md", now)
    assert store.release(again, create_in_doubt=False) is True
    assert stored(store, "a.md").create_in_doubt is True, "a doubt is not forgotten on release"


# -- finding documents ------------------------------------------------------------------------


def test_due_finds_pending_expired_leases_and_failures_whose_time_has_come(
    store: FirestoreStore, now: datetime
) -> None:
    for name in ["pending", "live", "expired", "retry-now", "retry-later", "permanent", "done"]:
        upload(store, name)
    claimed(store, "live", now)
    claimed(store, "expired", now - timedelta(seconds=LEASE + 1))
    fail(store, "retry-now", now, RATE_LIMITED, next_attempt_at=now - timedelta(seconds=1))
    fail(store, "retry-later", now, RATE_LIMITED, next_attempt_at=now + timedelta(minutes=5))
    fail(store, "permanent", now, REJECTED, next_attempt_at=None)
    store.record_success(claimed(store, "done", now), "el-1", content_hash("hello"), 0)

    due = list(store.due(now))

    assert sorted(due) == sorted(document_id(n) for n in ["pending", "expired", "retry-now"])
    later = list(store.due(now + timedelta(minutes=10)))
    assert sorted(later) == sorted(
        document_id(n) for n in ["pending", "live", "expired", "retry-now", "retry-later"]
    )


def test_due_ids_can_each_be_claimed(store: FirestoreStore, now: datetime) -> None:
    upload(store, "a.md")
    upload(store, "b.md")

    claims = [store.claim(doc_id, "run-1", LEASE, now) for doc_id in store.due(now)]

    assert all(claim is not None for claim in claims)
    assert len(claims) == 2
    assert list(store.due(now)) == []


def test_count_by_status(store: FirestoreStore, now: datetime) -> None:
    for name in ["a", "b", "c", "d", "e", "f"]:
        upload(store, name)
    claimed(store, "a", now)
    fail(store, "b", now)
    fail(store, "c", now, REJECTED)
    store.record_success(claimed(store, "d", now), "el-d", content_hash("hello"), 0)

    assert store.count_by_status() == {
        SyncStatus.PENDING: 2,
        SyncStatus.SYNCING: 1,
        SyncStatus.COMPLETED: 1,
        SyncStatus.FAILED: 2,
    }


def test_count_by_status_of_an_empty_collection(store: FirestoreStore) -> None:
    assert store.count_by_status() == dict.fromkeys(SyncStatus, 0)


def test_list_documents_reads_every_page_in_name_order_and_filters_by_status(
    store: FirestoreStore,
) -> None:
    total = 2 * DOCUMENT_PAGE_SIZE + 37
    names = [f"dir-{i % 7}/doc-{i:04}.md" for i in range(total)]
    store.upsert(NewDocument(name, f"text {name}", None) for name in reversed(names))
    failed = set(names[::3])
    collection = store.client.collection(store.collection_name)
    batch = store.client.batch()
    for name in failed:  # as another program would write it
        batch.update(collection.document(document_id(name)), {"sync_status": "failed"})
    batch.commit()

    every = list(store.list_documents())
    only_failed = list(store.list_documents(SyncStatus.FAILED))

    assert [document.name for document in every] == sorted(names)
    assert [document.name for document in only_failed] == sorted(failed)
    assert all(document.sync_status is SyncStatus.FAILED for document in only_failed)
    assert all(document.content == f"text {document.name}" for document in every)
    assert list(store.list_documents(SyncStatus.SYNCING)) == []


def test_documents_written_by_other_programs_read_with_defaults(store: FirestoreStore) -> None:
    collection = store.client.collection(store.collection_name)
    collection.document(document_id("legacy.md")).set({"name": "legacy.md", "content": "old"})

    document = store.get_by_name("legacy.md")

    assert document is not None
    assert document.content_hash == content_hash("old")
    assert document.sync_status is SyncStatus.PENDING
    assert document.sync_retry_count == 0
    assert document.source is None
    assert document.created_at is None
    assert store.get_by_name("missing.md") is None
    assert store.get("no-such-id") is None


# -- retry-failed -----------------------------------------------------------------------------


def test_reset_failed_by_name_moves_only_those_back_to_pending(
    store: FirestoreStore, now: datetime
) -> None:
    for name in ["x.md", "y.md", "z.md"]:
        upload(store, name)
    fail(store, "x.md", now, REJECTED)
    fail(store, "y.md", now, RATE_LIMITED, next_attempt_at=now + timedelta(hours=1))

    documents = store.reset_failed(["x.md", "z.md", "unknown.md"])

    assert [document.name for document in documents] == ["x.md"]
    x = stored(store, "x.md")
    assert documents[0] == x
    assert x.sync_status is SyncStatus.PENDING
    assert x.sync_error_type is None
    assert x.sync_error_message is None
    assert x.failed_runs == 0
    assert stored(store, "y.md").sync_status is SyncStatus.FAILED
    assert stored(store, "z.md").sync_status is SyncStatus.PENDING


def test_reset_failed_without_names_moves_every_failed_document(
    store: FirestoreStore, now: datetime
) -> None:
    for name in ["b.md", "a.md", "c.md"]:
        upload(store, name)
    fail(store, "b.md", now, REJECTED)
    fail(store, "a.md", now, RATE_LIMITED, next_attempt_at=now + timedelta(hours=1))
    store.record_failure(
        claimed(store, "a.md", now + timedelta(hours=2)), RATE_LIMITED, 1, None, False
    )

    documents = store.reset_failed()

    assert [document.name for document in documents] == ["a.md", "b.md"]
    a = stored(store, "a.md")
    assert a.sync_status is SyncStatus.PENDING
    assert a.failed_runs == 0
    assert a.next_attempt_at is None
    assert a.sync_retry_count == 2, "retries of this content are kept"
    assert store.count_by_status()[SyncStatus.FAILED] == 0
    assert store.reset_failed() == []


# -- reaching Firestore -----------------------------------------------------------------------


def test_check_passes_on_the_emulator(store: FirestoreStore) -> None:
    store.check()


@pytest.fixture
def unreachable_store(monkeypatch: pytest.MonkeyPatch) -> Iterator[FirestoreStore]:
    """A store pointed at a loopback port that nothing listens on."""
    monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", f"127.0.0.1:{free_port()}")
    unreachable = FirestoreStore(project="kbsync-test", timeout=1.0)
    yield unreachable
    unreachable.close()


def test_check_of_an_unreachable_firestore_names_the_host(
    unreachable_store: FirestoreStore,
) -> None:
    host = os.environ["FIRESTORE_EMULATOR_HOST"]
    started = time.monotonic()

    with pytest.raises(StoreUnavailable, match=re.escape(f"Firestore at {host} did not answer")):
        unreachable_store.check()

    assert time.monotonic() - started < 10


@pytest.mark.parametrize(
    "call",
    [
        lambda s: s.get("a"),
        lambda s: s.upsert([NewDocument("a.md", "text", None)]),
        lambda s: list(s.list_documents()),
        lambda s: list(s.due(datetime.now(UTC))),
        lambda s: s.count_by_status(),
        lambda s: s.reset_failed(),
    ],
    ids=["get", "upsert", "list_documents", "due", "count_by_status", "reset_failed"],
)
def test_every_call_to_an_unreachable_firestore_fails_within_its_timeout(
    unreachable_store: FirestoreStore, call: Any
) -> None:
    started = time.monotonic()

    with pytest.raises(StoreUnavailable, match="did not answer") as raised:
        call(unreachable_store)

    assert time.monotonic() - started < 10
    assert "FIRESTORE_EMULATOR_HOST" in raised.value.message
    assert "\n" not in raised.value.message


def test_missing_credentials_say_what_to_set(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("FIRESTORE_EMULATOR_HOST", raising=False)
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path))  # no gcloud login to find
    no_credentials = FirestoreStore(project="kbsync-test")

    with pytest.raises(StoreUnavailable, match="GOOGLE_APPLICATION_CREDENTIALS") as raised:
        no_credentials.check()

    assert "FIRESTORE_EMULATOR_HOST" in raised.value.message


def test_missing_project_says_what_to_set(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    login = tmp_path / "login.json"  # a gcloud user login: credentials without a project
    login.write_text(
        '{"type": "authorized_user", "client_id": "id", "client_secret": "s", '
        '"refresh_token": "t"}',
        encoding="utf-8",
    )
    monkeypatch.delenv("FIRESTORE_EMULATOR_HOST", raising=False)
    monkeypatch.delenv("GOOGLE_CLOUD_PROJECT", raising=False)
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(login))
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path))  # no gcloud default project either

    with pytest.raises(StoreUnavailable, match="set GOOGLE_CLOUD_PROJECT"):
        FirestoreStore().check()


# -- the emulator launcher --------------------------------------------------------------------


def test_emulator_command_runs_a_command_and_passes_its_exit_code_through() -> None:
    """One start of a fresh emulator (slow): host and project set, exit code kept, then gone."""
    launcher = Path(__file__).parent / "support" / "emulator.py"
    script = (
        "import os, sys; "
        "print(os.environ['FIRESTORE_EMULATOR_HOST'], os.environ['GOOGLE_CLOUD_PROJECT']); "
        "sys.exit(7)"
    )
    env = {key: value for key, value in os.environ.items() if key != "FIRESTORE_EMULATOR_HOST"}

    finished = subprocess.run(
        [sys.executable, str(launcher), "--", sys.executable, "-c", script],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert finished.returncode == 7, finished.stderr
    host, project = finished.stdout.split()
    assert re.fullmatch(r"127\.0\.0\.1:\d+", host)
    assert project == os.environ["GOOGLE_CLOUD_PROJECT"]
    assert processes_mentioning(f"--port={host.split(':')[1]}") == [], "the emulator outlived it"


def processes_mentioning(argument: str) -> list[str]:
    """Command lines of live processes with `argument` (Linux /proc; the Java child has it)."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            arguments = cmdline.read_bytes().split(b"\0")
        except OSError:  # the process ended meanwhile
            continue
        if argument.encode() in arguments:  # a zombie's command line reads empty
            found.append(b" ".join(arguments).decode(errors="replace"))
    return found
