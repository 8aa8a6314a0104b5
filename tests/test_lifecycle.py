"""The document life cycle as a Hypothesis state machine, end to end but in-process.

The real `FirestoreStore` on the emulator, the real `ElevenLabsKB` over HTTP to an in-process
`ElevenLabsDouble`, and `SyncEngine` runs driven by a clock the machine controls. Rules upload
documents (names and contents from small pools, so re-uploads collide and leave content
unchanged), sync (with random faults on or off, or once with a revoked API key), retry failed
documents, "crash" a run (claim a document under an owner that dies, maybe after its create
reached ElevenLabs) and move the clock. After every step the machine checks what the contract
promises a user: at most one ElevenLabs document per name, the id Firestore records is that
document's, a `completed` document's text is on ElevenLabs, nothing stays `syncing` except under
a dead run's lease (which the next sync takes over once it runs out), retry counts start at 0
for new content. At the end of every example it turns faults off, restores the key, moves the
clock past every lease, runs `retry-failed` and `sync`, and checks that everything converged.

Runs are single-threaded (`concurrency=1`) so that the double's seeded faults hit the same
requests every time and Hypothesis can replay and shrink a failure. `KBSYNC_LIFECYCLE_EXAMPLES`
raises the number of examples for a longer bug hunt.
"""

from __future__ import annotations

import logging
import os
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)

from kbsync.engine import RetryPolicy, RunReport, SyncEngine
from kbsync.interfaces import UpsertAction
from kbsync.models import Action, Document, ErrorType, NewDocument, SyncStatus
from kbsync.remote import ElevenLabsKB
from kbsync.store import FirestoreStore
from tests.support.elevenlabs_double import ElevenLabsDouble
from tests.support.emulator import clear_emulator

API_KEY = "lifecycle-key"
REVOKED_KEY = "lifecycle-revoked-key"
NAMES = ("faq.md", "hours.txt", "guides/returns.md")
CONTENTS = ("alpha", "beta", "gamma\nsecond line")
FAULT_KINDS = ("429", "500", "503", "drop", "commit_then_drop", "commit_then_500")
LEASE_SECONDS = 60.0
POLICY = RetryPolicy(
    max_attempts=3, backoff_base=0.002, backoff_max=0.01, retry_delay_max=1.0, max_failed_runs=3
)
"""Millisecond waits within a run; across runs at most 1 s of the machine's clock, and after
three failed runs a document waits for `retry-failed`."""
SETTLED_ERRORS = frozenset(
    {ErrorType.RATE_LIMIT, ErrorType.SERVER_ERROR, ErrorType.NETWORK, ErrorType.AUTH_ERROR}
)
"""The only error types these faults and a revoked key can cause."""
EXAMPLES = int(os.environ.get("KBSYNC_LIFECYCLE_EXAMPLES", "50"))

names = st.sampled_from(NAMES)
contents = st.sampled_from(CONTENTS)
batches = st.lists(
    st.tuples(names, contents), min_size=1, max_size=3, unique_by=lambda pair: pair[0]
)
"""What one `kbsync upload` writes: up to three documents, each name at most once."""


@dataclass
class World:
    """What outlives one example: the store, the double and an adapter pointed at it."""

    store: FirestoreStore
    double: ElevenLabsDouble
    kb: ElevenLabsKB
    emulator_host: str
    project: str


class _EngineLog(logging.Handler):
    """Collects the engine's log lines (from worker threads) to report coverage as events."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        # `handle()` calls this holding the handler's own (reentrant) `self.lock`.
        self.lines.append(record.getMessage())

    def drain(self) -> list[str]:
        with self.lock:
            lines, self.lines = self.lines, []
        return lines


class LifecycleMachine(RuleBasedStateMachine):
    """One example: an empty Firestore and an empty knowledge base, then rules."""

    def __init__(self, world: World, engine_log: _EngineLog) -> None:
        super().__init__()
        self.ok = False
        """True only between a step that passed its checks and the next step: teardown's
        convergence check runs only then, so it never hides the failure being shrunk."""
        self.world = world
        self.store = world.store
        self.double = world.double
        self.kb = world.kb
        self.engine_log = engine_log
        clear_emulator(world.emulator_host, world.project)
        self.double.reset()
        self.double.api_keys = {API_KEY}
        engine_log.drain()
        self.now = datetime.now(UTC)
        self.contents: dict[str, str] = {}
        self.fresh: set[str] = set()
        """Names whose content changed and has not been claimed since: retry count 0."""
        self.dead_owners: set[str] = set()
        self.faulty = False
        self.runs = 0

    # -- helpers ------------------------------------------------------------------------------

    def clock(self) -> datetime:
        return self.now

    def documents(self) -> dict[str, Document]:
        return {doc.name: doc for doc in self.store.list_documents()}

    def engine(self) -> SyncEngine:
        self.runs += 1
        return SyncEngine(
            self.store,
            self.kb,
            policy=POLICY,
            concurrency=1,
            lease_seconds=LEASE_SECONDS,
            clock=self.clock,
            rng=random.Random(self.runs),
        )

    def run(self, engine: SyncEngine, doc_ids: list[str]) -> RunReport:
        report = engine.run(doc_ids)
        assert report.store_error is None
        assert not report.interrupted
        for outcome in report.outcomes:
            event(f"outcome: {outcome.action.value}")
            if outcome.action is not Action.SKIPPED:
                self.fresh.discard(outcome.name)
            if outcome.retry_count > 0:
                event("a retry was counted")
        for line in self.engine_log.drain():
            if line.startswith("adopting"):
                event("adopted an unheard create")
            elif "lost the lease" in line:
                event("lost a lease")
        return report

    def push(self, engine: SyncEngine, doc_ids: list[str]) -> list[RunReport]:
        """Push these documents: one run, or under faults one run per document.

        A run takes several documents at once (it claims ahead of its request slots), so which
        document's request meets which seeded fault depends on thread timing. One document per
        run keeps that the same on every replay, so that Hypothesis can shrink a failure.
        """
        if not self.faulty:
            return [self.run(engine, doc_ids)]
        return [self.run(engine, [doc_id]) for doc_id in doc_ids]

    def expect_taken_over(self, reports: list[RunReport], at: datetime) -> None:
        """After a full sync that was not stopped, no lease that had run out is left behind."""
        if any(report.auth_failure is not None for report in reports):
            return
        for doc in self.documents().values():
            if doc.sync_status is SyncStatus.SYNCING:
                assert doc.lease_expires_at is not None
                assert doc.lease_expires_at >= at, (
                    f"{doc.name}: the lease of a dead run ran out at {doc.lease_expires_at}, "
                    f"but the sync at {at} left it `syncing`"
                )

    # -- rules --------------------------------------------------------------------------------

    @initialize(epoch=st.sampled_from(["now", "a day ago"]))
    def start_clock(self, epoch: str) -> None:
        """The machine's clock starts now or a day ago. The store stamps uploads with the wall
        clock, so a day ago makes every lease look run out to an upload, now makes it live."""
        self.ok = False
        if epoch != "now":
            self.now -= timedelta(days=1)
        self.ok = True

    @initialize(batch=batches)
    def first_upload(self, batch: list[tuple[str, str]]) -> None:
        """Every example starts with documents to push."""
        self.upload(batch)

    @rule(batch=batches)
    def upload(self, batch: list[tuple[str, str]]) -> None:
        self.ok = False
        before = self.documents()
        results = self.store.upsert([NewDocument(name, text, None) for name, text in batch])
        for (name, text), result in zip(batch, results, strict=True):
            prior = before.get(name)
            if prior is None:
                expected = UpsertAction.CREATED
            elif prior.content != text:
                expected = UpsertAction.CHANGED
            elif prior.sync_status is SyncStatus.FAILED:
                expected = UpsertAction.RETRY
            else:
                expected = UpsertAction.UNCHANGED
            assert result.action is expected, f"upload of {name}: {result.action} != {expected}"
            event(f"upload: {expected.value}")
            self.contents[name] = text
            if expected in (UpsertAction.CREATED, UpsertAction.CHANGED):
                self.fresh.add(name)
        self.ok = True

    @rule()
    def sync(self) -> None:
        self.ok = False
        at = self.now
        engine = self.engine()
        reports = self.push(engine, engine.due_ids())
        self.expect_taken_over(reports, at)
        self.ok = True

    @rule()
    def sync_with_a_revoked_key(self) -> None:
        self.ok = False
        before = self.documents()
        self.double.api_keys = {REVOKED_KEY}
        try:
            engine = self.engine()
            report = self.run(engine, engine.due_ids())
        finally:
            self.double.api_keys = {API_KEY}
        pushed = [o for o in report.outcomes if o.action in (Action.CREATED, Action.UPDATED)]
        assert not pushed, f"pushed with a revoked key: {pushed}"
        if report.auth_failure is not None:
            event("a revoked key stopped the run")
            # Only the first document to hear "bad key" is marked; the run takes no more.
            auth_failures = [o for o in report.outcomes if o.error_type is ErrorType.AUTH_ERROR]
            assert auth_failures == [report.auth_failure]
            failed = self.store.get(report.auth_failure.id)
            assert failed is not None
            assert failed.sync_status is SyncStatus.FAILED
            assert failed.sync_error_type is ErrorType.AUTH_ERROR
            assert failed.next_attempt_at is None  # waits for retry-failed
            handled = {o.id for o in report.outcomes}
            after = self.documents()
            for name, doc in before.items():
                if doc.id in handled:
                    continue
                # Not reached, or claimed and given back unsent: pending stays pending, and a
                # document taken over from a dead run or a due failure may be given back pending.
                allowed = {doc.sync_status, SyncStatus.PENDING}
                assert after[name].sync_status in allowed, (
                    f"{name} was not handled by the stopped run but moved from "
                    f"{doc.sync_status} to {after[name].sync_status}"
                )
        self.ok = True

    @rule(rate=st.sampled_from([0.0, 0.2, 0.5, 0.9]), seed=st.integers(0, 2**16))
    def set_faults(self, rate: float, seed: int) -> None:
        """Every request to ElevenLabs fails with probability `rate` (0: faults off)."""
        self.ok = False
        self.double.random_faults(rate, kinds=FAULT_KINDS, seed=seed)
        self.faulty = rate > 0
        self.ok = True

    @rule()
    def retry_failed(self) -> None:
        self.ok = False
        before = {
            doc.id for doc in self.documents().values() if doc.sync_status is SyncStatus.FAILED
        }
        reset = self.store.reset_failed()
        assert {doc.id for doc in reset} == before
        for doc in reset:
            assert doc.sync_status is SyncStatus.PENDING
            assert doc.sync_error_type is None
        self.push(self.engine(), [doc.id for doc in reset])
        self.ok = True

    @rule(name=names, landed=st.booleans())
    def crash(self, name: str, landed: bool) -> None:
        """A run claims `name`, maybe gets its push through to ElevenLabs, and dies."""
        self.ok = False
        doc = self.store.get_by_name(name)
        if doc is None:
            self.ok = True
            return
        due = (
            doc.sync_status is SyncStatus.PENDING
            or (
                doc.sync_status is SyncStatus.SYNCING
                and (doc.lease_expires_at is None or doc.lease_expires_at < self.now)
            )
            or (
                doc.sync_status is SyncStatus.FAILED
                and doc.next_attempt_at is not None
                and doc.next_attempt_at <= self.now
            )
        )
        owner = f"dead-run-{len(self.dead_owners)}"
        claim = self.store.claim(doc.id, owner, LEASE_SECONDS, self.now)
        assert (claim is not None) == due, f"claim of {doc.sync_status} {name}: {claim}"
        if claim is None:
            self.ok = True
            return
        event("crash: a run died holding a document")
        self.dead_owners.add(owner)
        self.fresh.discard(name)
        held = claim.document
        if landed and held.elevenlabs_document_id is None and not self.double.docs_named(name):
            # The dead run's create reached ElevenLabs; its answer never reached Firestore.
            self.double.add_document(name, held.content)
            event("crash: after its create landed")
        elif landed and held.elevenlabs_document_id is not None and not self.faulty:
            # The dead run's update reached ElevenLabs (only without faults: it must land).
            self.kb.update(held.elevenlabs_document_id, name, held.content)
            event("crash: after its update landed")
        self.ok = True

    @rule(seconds=st.sampled_from([1.0, 30.0, LEASE_SECONDS + 1]))
    def advance_clock(self, seconds: float) -> None:
        self.ok = False
        self.now += timedelta(seconds=seconds)
        self.ok = True

    # -- invariants ---------------------------------------------------------------------------

    @invariant()
    def consistent(self) -> None:
        self.ok = False
        assert not self.double.errors, self.double.errors
        docs = self.documents()
        remote = self.double.documents
        assert set(docs) == set(self.contents)
        for name, doc in docs.items():
            assert doc.content == self.contents[name]
            copies = [r for r in remote.values() if r.name == name]
            assert len(copies) <= 1, (
                f"{name} is on ElevenLabs {len(copies)} times: "
                f"{[(r.id, r.text) for r in copies]}; Firestore: {doc}"
            )
            if doc.elevenlabs_document_id is not None:
                assert [r.id for r in copies] == [doc.elevenlabs_document_id], (
                    f"{name}: Firestore says {doc.elevenlabs_document_id}, ElevenLabs has "
                    f"{[r.id for r in copies]}"
                )
            if doc.sync_status is SyncStatus.COMPLETED:
                assert doc.elevenlabs_document_id is not None
                remote_text = remote[doc.elevenlabs_document_id].text
                assert remote_text == doc.content, (
                    f"{name} is completed with content {doc.content!r}, "
                    f"but ElevenLabs holds {remote_text!r}"
                )
                assert doc.sync_error_type is None
                assert doc.sync_error_message is None
            elif doc.sync_status is SyncStatus.SYNCING:
                # No run of ours returns with a document still held: only dead runs hold any.
                assert doc.lease_owner in self.dead_owners, f"{name} held by {doc.lease_owner}"
                assert doc.lease_expires_at is not None
            elif doc.sync_status is SyncStatus.FAILED:
                assert doc.sync_error_type in SETTLED_ERRORS, f"{name}: {doc.sync_error_type}"
                assert doc.sync_error_message
            assert doc.sync_retry_count >= 0
            if name in self.fresh:
                assert doc.sync_retry_count == 0, (
                    f"{name}: new content not yet attempted has retry count {doc.sync_retry_count}"
                )
        strays = [r for r in remote.values() if r.name not in self.contents]
        assert not strays, f"on ElevenLabs but never uploaded: {strays}"
        self.ok = True

    # -- the end: everything converges once the trouble is over ---------------------------------

    def teardown(self) -> None:
        if not self.ok:
            return
        self.double.random_faults(0)
        self.faulty = False
        self.double.api_keys = {API_KEY}
        self.now += timedelta(seconds=LEASE_SECONDS + 5)

        reset = self.store.reset_failed()
        self.run(self.engine(), [doc.id for doc in reset])
        for _ in range(2):
            engine = self.engine()
            report = self.run(engine, engine.due_ids())
            assert not report.failed, f"failed with faults off: {report.failed}"

        docs = self.documents()
        remote = self.double.documents
        for name, doc in docs.items():
            assert doc.sync_status is SyncStatus.COMPLETED, f"{name} ended {doc.sync_status}"
            copies = [r for r in remote.values() if r.name == name]
            assert [(r.id, r.text) for r in copies] == [
                (doc.elevenlabs_document_id, doc.content)
            ], f"{name}: ElevenLabs holds {copies}, Firestore {doc}"
        assert len(remote) == len(docs)

        # Converged means quiet: one more sync finds nothing to do and sends nothing.
        requests = len(self.double.requests)
        engine = self.engine()
        assert engine.due_ids() == []
        assert engine.run([]).outcomes == []
        assert len(self.double.requests) == requests


@pytest.fixture
def engine_log() -> Iterator[_EngineLog]:
    handler = _EngineLog()
    logger = logging.getLogger("kbsync.engine")
    previous = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(previous)


def test_document_life_cycle(
    store: FirestoreStore, firestore_emulator: str, engine_log: _EngineLog
) -> None:
    with ElevenLabsDouble(api_keys={API_KEY}, seed=0) as double:
        kb = ElevenLabsKB(API_KEY, double.base_url, timeout=5.0)
        world = World(store, double, kb, firestore_emulator, os.environ["GOOGLE_CLOUD_PROJECT"])
        run_state_machine_as_test(
            lambda: LifecycleMachine(world, engine_log),
            settings=settings(
                max_examples=EXAMPLES,
                stateful_step_count=12,
                deadline=None,
                derandomize=True,
                database=None,
                report_multiple_bugs=False,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
            ),
        )
