"""The sync engine against the real Firestore store (emulator) and a mocked knowledge base.

Each test puts documents into Firestore with `store.upsert`, runs a `SyncEngine` whose
`KnowledgeBase` is a pytest-mock autospec, and checks what a user would notice: the Firestore
document after the run, the run report, and the calls that reached ElevenLabs.
"""

from __future__ import annotations

import contextlib
import random
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pytest_mock import MockerFixture

from kbsync import engine as engine_module
from kbsync.engine import RetryPolicy, SyncEngine, Throttle, utcnow
from kbsync.errors import RemoteError, RemoteNotFound
from kbsync.interfaces import DocumentStore, KnowledgeBase, RemoteDocument, UpsertAction
from kbsync.models import Action, Document, ErrorType, NewDocument, SyncOutcome, SyncStatus

FAST = RetryPolicy(max_attempts=3, backoff_base=0.005, backoff_max=0.05, retry_delay_max=60.0)
"""Tiny waits so that retries cost milliseconds."""

FAR_FUTURE = timedelta(days=3650)


# --------------------------------------------------------------------------- helpers


class Recorder:
    """A `SyncListener` that remembers what it heard (from any worker thread)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.total: int | None = None
        self.pushed: list[str] = []
        self.retries: list[tuple[str, ErrorType, int, float]] = []
        self.outcomes: list[SyncOutcome] = []
        self.on_retry: Callable[[Document, RemoteError], None] | None = None

    def started(self, total: int) -> None:
        self.total = total

    def pushing(self, document: Document) -> None:
        with self.lock:
            self.pushed.append(document.name)

    def retrying(self, document: Document, error: RemoteError, attempt: int, wait: float) -> None:
        with self.lock:
            self.retries.append((document.name, error.error_type, attempt, wait))
        if self.on_retry is not None:
            self.on_retry(document, error)

    def finished(self, outcome: SyncOutcome) -> None:
        with self.lock:
            self.outcomes.append(outcome)


@pytest.fixture
def kb(mocker: MockerFixture) -> Any:
    """A mocked knowledge base: creates succeed with id `el-<name>`, nothing is found."""
    mock = mocker.create_autospec(KnowledgeBase, instance=True)
    mock.create.side_effect = lambda name, text: f"el-{name}"
    mock.update.return_value = None
    mock.find_by_name.return_value = []
    return mock


@pytest.fixture
def listener() -> Recorder:
    return Recorder()


@pytest.fixture
def make_engine(store: DocumentStore, kb: Any, listener: Recorder) -> Callable[..., SyncEngine]:
    """Build an engine over the emulator store and the mocked knowledge base."""

    def build(**overrides: Any) -> SyncEngine:
        options: dict[str, Any] = {
            "policy": FAST,
            "concurrency": 1,
            "listener": listener,
            "rng": random.Random(0),
        }
        options.update(overrides)
        return SyncEngine(store, kb, **options)

    return build


@pytest.fixture(autouse=True)
def _no_stray_workers() -> Iterator[None]:
    """Fail loudly if a test leaves a push thread running into the next test."""
    yield
    deadline = time.monotonic() + 10
    for thread in threading.enumerate():
        if thread.name.startswith("kbsync-push-"):
            thread.join(max(0.0, deadline - time.monotonic()))
            assert not thread.is_alive(), f"{thread.name} still running after the test"


def put(store: DocumentStore, name: str, content: str) -> str:
    """Write one document into Firestore (as `kbsync upload --no-sync` does); its id."""
    [result] = store.upsert([NewDocument(name, content, f"docs/{name}")])
    return result.document.id


def get(store: DocumentStore, doc_id: str) -> Document:
    document = store.get(doc_id)
    assert document is not None
    return document


def remote_error(error_type: ErrorType, attempt: int = 1, **kwargs: Any) -> RemoteError:
    status = {
        ErrorType.RATE_LIMIT: 429,
        ErrorType.AUTH_ERROR: 401,
        ErrorType.VALIDATION: 422,
        ErrorType.SERVER_ERROR: 503,
    }.get(error_type)
    return RemoteError(
        error_type, f"{error_type.value} on attempt {attempt}", status_code=status, **kwargs
    )


def assert_released(document: Document) -> None:
    """Back to `pending`, held by nobody."""
    assert document.sync_status is SyncStatus.PENDING
    assert document.lease_owner is None
    assert document.lease_expires_at is None


def assert_no_second_copy(kb: Any) -> None:
    names = [c.args[0] for c in kb.create.call_args_list]
    assert len(names) == len(set(names)), f"created twice: {names}"


# --------------------------------------------------------------------------- 1. success


def test_success_creates_once_and_completes(
    store: DocumentStore, kb: Any, make_engine: Any, listener: Recorder
) -> None:
    doc_id = put(store, "faq.md", "# FAQ\nOpening hours: 9-5.")
    before = utcnow()

    report = make_engine().run([doc_id])

    kb.create.assert_called_once_with("faq.md", "# FAQ\nOpening hours: 9-5.")
    kb.update.assert_not_called()
    kb.find_by_name.assert_not_called()
    document = get(store, doc_id)
    assert document.sync_status is SyncStatus.COMPLETED
    assert document.elevenlabs_document_id == "el-faq.md"
    assert document.sync_error_type is None
    assert document.sync_error_message is None
    assert document.sync_retry_count == 0
    assert document.last_sync_attempt is not None
    assert before - timedelta(seconds=1) <= document.last_sync_attempt <= utcnow()
    assert document.lease_owner is None
    assert document.create_in_doubt is False
    assert [(o.name, o.status, o.action) for o in report.outcomes] == [
        ("faq.md", SyncStatus.COMPLETED, Action.CREATED)
    ]
    assert report.outcomes[0].elevenlabs_document_id == "el-faq.md"
    assert report.failed == []
    assert report.auth_failure is None
    assert not report.interrupted
    assert listener.total == 1
    assert listener.pushed == ["faq.md"]
    assert listener.retries == []
    assert listener.outcomes == report.outcomes
    assert doc_id not in list(store.due(utcnow() + FAR_FUTURE))


def test_success_after_failure_clears_the_error(
    store: DocumentStore, kb: Any, make_engine: Any
) -> None:
    doc_id = put(store, "a.md", "alpha")
    kb.create.side_effect = [remote_error(ErrorType.VALIDATION)]
    make_engine().run([doc_id])
    assert get(store, doc_id).sync_error_type is ErrorType.VALIDATION

    store.reset_failed(["a.md"])
    kb.create.side_effect = None
    kb.create.return_value = "el-1"
    report = make_engine().run([doc_id])

    document = get(store, doc_id)
    assert document.sync_status is SyncStatus.COMPLETED
    assert document.elevenlabs_document_id == "el-1"
    assert document.sync_error_type is None
    assert document.sync_error_message is None
    assert report.outcomes[0].error_type is None


def test_due_ids_lists_what_needs_pushing(store: DocumentStore, kb: Any, make_engine: Any) -> None:
    done = put(store, "done.md", "done")
    make_engine().run([done])
    waiting = put(store, "waiting.md", "waiting")

    assert make_engine().due_ids() == [waiting]


def test_empty_run_reports_nothing(kb: Any, make_engine: Any, listener: Recorder) -> None:
    report = make_engine().run([])

    assert report.outcomes == []
    assert listener.total == 0
    assert kb.method_calls == []


# --------------------------------------------------------------------------- 2. transient errors


@pytest.mark.parametrize(
    "error_type", [ErrorType.RATE_LIMIT, ErrorType.SERVER_ERROR, ErrorType.NETWORK]
)
@pytest.mark.parametrize("max_attempts", [3, 4])
def test_transient_error_retried_then_failed(
    *,
    store: DocumentStore,
    kb: Any,
    make_engine: Any,
    listener: Recorder,
    error_type: ErrorType,
    max_attempts: int,
) -> None:
    doc_id = put(store, "doc.md", "text")
    attempts = iter(range(1, 100))

    def create(name: str, text: str) -> str:
        raise remote_error(error_type, next(attempts))

    kb.create.side_effect = create
    policy = RetryPolicy(
        max_attempts=max_attempts, backoff_base=0.005, backoff_max=0.05, retry_delay_max=60.0
    )
    now = utcnow()

    report = make_engine(policy=policy, clock=lambda: now).run([doc_id])

    assert kb.create.call_count == max_attempts
    assert all(c.args == ("doc.md", "text") for c in kb.create.call_args_list)
    document = get(store, doc_id)
    assert document.sync_status is SyncStatus.FAILED
    assert document.sync_error_type is error_type
    assert document.sync_error_message == f"{error_type.value} on attempt {max_attempts}"
    assert document.sync_retry_count == max_attempts - 1
    assert document.elevenlabs_document_id is None
    assert document.lease_owner is None
    assert document.next_attempt_at is not None
    assert now < document.next_attempt_at <= now + timedelta(seconds=policy.retry_delay_max)
    assert doc_id not in list(store.due(now))
    later = now + timedelta(seconds=policy.retry_delay_max + 1)
    assert doc_id in list(store.due(later))
    assert [(r[1], r[2]) for r in listener.retries] == [
        (error_type, n) for n in range(1, max_attempts)
    ]
    [outcome] = report.outcomes
    assert outcome.status is SyncStatus.FAILED
    assert outcome.action is Action.FAILED
    assert outcome.error_type is error_type
    assert outcome.attempts == max_attempts
    assert outcome.retry_count == max_attempts - 1
    assert report.failed == [outcome]
    assert report.auth_failure is None


def test_single_attempt_policy_never_retries(
    store: DocumentStore, kb: Any, make_engine: Any
) -> None:
    doc_id = put(store, "doc.md", "text")
    kb.create.side_effect = [remote_error(ErrorType.SERVER_ERROR)]

    make_engine(policy=RetryPolicy(max_attempts=1, backoff_base=0.005)).run([doc_id])

    assert kb.create.call_count == 1
    document = get(store, doc_id)
    assert document.sync_status is SyncStatus.FAILED
    assert document.sync_retry_count == 0


def test_next_attempt_never_beyond_retry_delay_max(
    store: DocumentStore, kb: Any, make_engine: Any
) -> None:
    doc_id = put(store, "doc.md", "text")
    kb.create.side_effect = remote_error(ErrorType.NETWORK)
    policy = RetryPolicy(max_attempts=2, backoff_base=5.0, backoff_max=0.01, retry_delay_max=2.5)
    now = utcnow()

    make_engine(policy=policy, clock=lambda: now).run([doc_id])

    assert get(store, doc_id).next_attempt_at == now + timedelta(seconds=2.5)


def test_failed_runs_back_off_then_wait_for_retry_failed(
    store: DocumentStore, kb: Any, make_engine: Any
) -> None:
    """Each failed run doubles the delay before the next `sync`; past the cap it waits."""
    doc_id = put(store, "doc.md", "text")
    kb.create.side_effect = remote_error(ErrorType.SERVER_ERROR)
    policy = RetryPolicy(
        max_attempts=2,
        backoff_base=10.0,
        backoff_max=0.01,
        retry_delay_max=1000.0,
        max_failed_runs=3,
    )
    start = utcnow()
    delays = []
    now = start
    for _ in range(2):
        assert doc_id in list(store.due(now))
        make_engine(policy=policy, clock=lambda now=now: now).run([doc_id])
        document = get(store, doc_id)
        assert document.sync_status is SyncStatus.FAILED
        assert document.next_attempt_at is not None
        delays.append((document.next_attempt_at - now).total_seconds())
        assert doc_id not in list(store.due(now))
        now = document.next_attempt_at + timedelta(seconds=1)

    assert 10.0 <= delays[0] <= 12.5
    assert 20.0 <= delays[1] <= 25.0

    make_engine(policy=policy, clock=lambda: now).run([doc_id])
    document = get(store, doc_id)
    assert document.sync_status is SyncStatus.FAILED
    assert document.next_attempt_at is None
    assert doc_id not in list(store.due(now + FAR_FUTURE))
    assert kb.create.call_count == 6
    # every retry of this content counts, across runs too
    assert document.sync_retry_count == 5


# --------------------------------------------------------------------------- 3. transient then ok


@pytest.mark.parametrize("error_type", [ErrorType.RATE_LIMIT, ErrorType.SERVER_ERROR])
def test_one_transient_error_then_success(
    store: DocumentStore, kb: Any, make_engine: Any, error_type: ErrorType
) -> None:
    doc_id = put(store, "doc.md", "text")
    kb.create.side_effect = [remote_error(error_type), "el-1"]

    report = make_engine().run([doc_id])

    assert kb.create.call_count == 2
    document = get(store, doc_id)
    assert document.sync_status is SyncStatus.COMPLETED
    assert document.elevenlabs_document_id == "el-1"
    assert document.sync_retry_count == 1
    assert document.sync_error_type is None
    assert document.sync_error_message is None
    [outcome] = report.outcomes
    assert outcome.action is Action.CREATED
    assert outcome.attempts == 2
    assert outcome.retry_count == 1


# --------------------------------------------------------------------------- 4. permanent errors


def test_auth_error_is_never_retried(store: DocumentStore, kb: Any, make_engine: Any) -> None:
    doc_id = put(store, "doc.md", "text")
    kb.create.side_effect = remote_error(ErrorType.AUTH_ERROR)

    report = make_engine().run([doc_id])

    assert kb.create.call_count == 1
    document = get(store, doc_id)
    assert document.sync_status is SyncStatus.FAILED
    assert document.sync_error_type is ErrorType.AUTH_ERROR
    assert document.sync_error_message == "auth_error on attempt 1"
    assert document.sync_retry_count == 0
    assert document.next_attempt_at is None
    assert doc_id not in list(store.due(utcnow() + FAR_FUTURE))
    assert report.auth_failure is not None
    assert report.auth_failure.id == doc_id
    assert report.auth_failure.error_type is ErrorType.AUTH_ERROR


def test_validation_error_waits_for_retry_failed(
    store: DocumentStore, kb: Any, make_engine: Any, listener: Recorder
) -> None:
    doc_id = put(store, "doc.md", "text")
    kb.create.side_effect = RemoteError(ErrorType.VALIDATION, "422: text too long", status_code=422)

    report = make_engine().run([doc_id])

    assert kb.create.call_count == 1
    assert listener.retries == []
    document = get(store, doc_id)
    assert document.sync_status is SyncStatus.FAILED
    assert document.sync_error_type is ErrorType.VALIDATION
    assert document.sync_error_message == "422: text too long"
    assert document.next_attempt_at is None
    assert document.sync_retry_count == 0
    assert doc_id not in list(store.due(utcnow() + FAR_FUTURE))
    assert report.auth_failure is None
    assert [o.error_type for o in report.failed] == [ErrorType.VALIDATION]

    # retry-failed puts it back, and then it is pushed again
    store.reset_failed(["doc.md"])
    assert doc_id in list(store.due(utcnow()))
    kb.create.side_effect = None
    kb.create.return_value = "el-1"
    make_engine().run([doc_id])
    assert get(store, doc_id).sync_status is SyncStatus.COMPLETED


def test_validation_failure_does_not_stop_the_run(
    store: DocumentStore, kb: Any, make_engine: Any
) -> None:
    bad = put(store, "bad.md", "bad")
    good = put(store, "good.md", "good")

    def create(name: str, text: str) -> str:
        if name == "bad.md":
            raise remote_error(ErrorType.VALIDATION)
        return f"el-{name}"

    kb.create.side_effect = create

    report = make_engine().run([bad, good])

    assert get(store, bad).sync_status is SyncStatus.FAILED
    assert get(store, good).sync_status is SyncStatus.COMPLETED
    assert len(report.outcomes) == 2


# --------------------------------------------------------------------------- 5. rejected key


def test_rejected_key_stops_the_run(store: DocumentStore, kb: Any, make_engine: Any) -> None:
    ids = [put(store, f"doc-{n}.md", f"text {n}") for n in range(5)]
    kb.create.side_effect = remote_error(ErrorType.AUTH_ERROR)

    report = make_engine(concurrency=1).run(ids)

    assert kb.create.call_count == 1
    documents = [get(store, doc_id) for doc_id in ids]
    # Workers outnumber request slots, so whichever was sent first is the one marked.
    failed = [d for d in documents if d.sync_status is SyncStatus.FAILED]
    assert len(failed) == 1
    assert failed[0].sync_error_type is ErrorType.AUTH_ERROR
    for document in documents:
        if document.id != failed[0].id:
            assert_released(document)
            assert document.sync_error_type is None
    assert report.auth_failure is not None
    assert report.auth_failure.id == failed[0].id
    assert [o.id for o in report.failed] == [failed[0].id]


def test_rejected_key_with_concurrency_marks_only_one(
    store: DocumentStore, kb: Any, make_engine: Any
) -> None:
    ids = [put(store, f"doc-{n}.md", f"text {n}") for n in range(10)]
    gate = threading.Barrier(4, timeout=2)

    def create(name: str, text: str) -> str:
        # let the four workers hold a document each before the first hears "bad key"
        with contextlib.suppress(threading.BrokenBarrierError):
            gate.wait()
        raise remote_error(ErrorType.AUTH_ERROR)

    kb.create.side_effect = create

    report = make_engine(concurrency=4).run(ids)

    documents = [get(store, doc_id) for doc_id in ids]
    failed = [d for d in documents if d.sync_status is SyncStatus.FAILED]
    assert len(failed) == 1
    assert failed[0].sync_error_type is ErrorType.AUTH_ERROR
    for document in documents:
        if document.id != failed[0].id:
            assert_released(document)
    assert report.auth_failure is not None
    assert report.auth_failure.id == failed[0].id
    assert [o.id for o in report.failed] == [failed[0].id]
    assert kb.create.call_count == 4  # the four in flight; nothing is sent after the bad key


# --------------------------------------------------------------------------- 6. Retry-After


def test_retry_after_is_honoured(
    store: DocumentStore, kb: Any, make_engine: Any, listener: Recorder
) -> None:
    doc_id = put(store, "doc.md", "text")
    kb.create.side_effect = [remote_error(ErrorType.RATE_LIMIT, retry_after=0.2), "el-1"]
    policy = RetryPolicy(max_attempts=3, backoff_base=0.005, backoff_max=0.5)

    started = time.monotonic()
    make_engine(policy=policy).run([doc_id])
    elapsed = time.monotonic() - started

    [(_, error_type, attempt, wait)] = listener.retries
    assert error_type is ErrorType.RATE_LIMIT
    assert attempt == 1
    assert 0.2 <= wait <= 0.5
    assert elapsed >= 0.2
    assert get(store, doc_id).sync_status is SyncStatus.COMPLETED


def test_retry_after_is_capped_by_backoff_max(
    store: DocumentStore, kb: Any, make_engine: Any, listener: Recorder
) -> None:
    doc_id = put(store, "doc.md", "text")
    kb.create.side_effect = [remote_error(ErrorType.RATE_LIMIT, retry_after=3600.0), "el-1"]
    policy = RetryPolicy(max_attempts=3, backoff_base=0.005, backoff_max=0.1)

    started = time.monotonic()
    make_engine(policy=policy).run([doc_id])

    assert time.monotonic() - started < 5
    assert [r[3] for r in listener.retries] == [0.1]


def test_waits_double_between_attempts(
    store: DocumentStore, kb: Any, make_engine: Any, listener: Recorder
) -> None:
    doc_id = put(store, "doc.md", "text")
    kb.create.side_effect = remote_error(ErrorType.SERVER_ERROR)
    policy = RetryPolicy(max_attempts=4, backoff_base=0.01, backoff_max=1.0)

    make_engine(policy=policy).run([doc_id])

    waits = [r[3] for r in listener.retries]
    assert len(waits) == 3
    for n, wait in enumerate(waits):
        assert 0.01 * 2**n <= wait <= 0.015 * 2**n


class TestRetryPolicy:
    def test_doubles_with_jitter(self) -> None:
        policy = RetryPolicy(backoff_base=1.0, backoff_max=1000.0)
        rng = random.Random(0)
        for failed in range(1, 8):
            wait = policy.wait_before_retry(failed, None, rng)
            assert 2 ** (failed - 1) <= wait <= 1.5 * 2 ** (failed - 1)

    def test_jitter_varies(self) -> None:
        policy = RetryPolicy(backoff_base=1.0, backoff_max=1000.0)
        rng = random.Random(0)
        waits = {policy.wait_before_retry(1, None, rng) for _ in range(20)}
        assert len(waits) > 1

    def test_same_seed_same_waits(self) -> None:
        policy = RetryPolicy()
        first = [policy.wait_before_retry(n, None, random.Random(7)) for n in range(1, 5)]
        again = [policy.wait_before_retry(n, None, random.Random(7)) for n in range(1, 5)]
        assert first == again

    def test_capped_by_backoff_max(self) -> None:
        policy = RetryPolicy(backoff_base=1.0, backoff_max=30.0)
        assert policy.wait_before_retry(20, None, random.Random(0)) == 30.0
        assert policy.wait_before_retry(1000, None, random.Random(0)) == 30.0

    def test_retry_after_wins_over_backoff(self) -> None:
        policy = RetryPolicy(backoff_base=1.0, backoff_max=30.0)
        wait = policy.wait_before_retry(1, 7.0, random.Random(0))
        assert 7.0 <= wait <= 7.1
        assert policy.wait_before_retry(5, 0.0, random.Random(0)) <= 0.1

    def test_retry_after_capped_by_backoff_max(self) -> None:
        policy = RetryPolicy(backoff_base=1.0, backoff_max=30.0)
        assert policy.wait_before_retry(1, 120.0, random.Random(0)) == 30.0

    @given(
        failed=st.integers(min_value=1, max_value=60),
        retry_after=st.none() | st.floats(min_value=0, max_value=1e6),
        base=st.floats(min_value=0.001, max_value=10),
        cap=st.floats(min_value=0.001, max_value=100),
        seed=st.integers(min_value=0, max_value=2**32),
    )
    def test_wait_bounds(
        self, failed: int, retry_after: float | None, base: float, cap: float, seed: int
    ) -> None:
        policy = RetryPolicy(backoff_base=base, backoff_max=cap)
        wait = policy.wait_before_retry(failed, retry_after, random.Random(seed))
        assert 0 <= wait <= cap
        if retry_after is not None:
            assert wait >= min(cap, retry_after)
        else:
            assert wait >= min(cap, base * 2.0 ** (failed - 1))

    def test_next_run_delay_doubles_with_jitter(self) -> None:
        policy = RetryPolicy(backoff_base=1.0, retry_delay_max=10_000.0, max_failed_runs=8)
        rng = random.Random(0)
        for runs in range(1, 8):
            delay = policy.next_run_delay(runs, rng)
            assert delay is not None
            assert 2 ** (runs - 1) <= delay <= 1.25 * 2 ** (runs - 1)

    def test_next_run_delay_capped(self) -> None:
        policy = RetryPolicy(backoff_base=1.0, retry_delay_max=5.0, max_failed_runs=8)
        assert policy.next_run_delay(7, random.Random(0)) == 5.0

    def test_next_run_delay_none_at_the_cap(self) -> None:
        policy = RetryPolicy(backoff_base=1.0, max_failed_runs=3)
        assert policy.next_run_delay(2, random.Random(0)) is not None
        assert policy.next_run_delay(3, random.Random(0)) is None
        assert policy.next_run_delay(4, random.Random(0)) is None


# --------------------------------------------------------------------------- 7. throttle


class FakeTime:
    """A monotonic clock that only moves when someone waits."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


class FakeStop:
    """A stop event whose `wait` moves the fake clock instead of sleeping.

    Each wait lasts at most `step` seconds (an early wake-up); the event is set after
    `set_after` waits, if given.
    """

    def __init__(
        self, clock: FakeTime, step: float = float("inf"), set_after: int | None = None
    ) -> None:
        self.clock = clock
        self.step = step
        self.set_after = set_after
        self.waited: list[float] = []

    def is_set(self) -> bool:
        return self.set_after is not None and len(self.waited) >= self.set_after

    def wait(self, timeout: float | None = None) -> bool:
        assert timeout is not None
        assert timeout > 0
        slept = min(timeout, self.step)
        self.waited.append(slept)
        self.clock.now += slept
        return self.is_set()


@pytest.fixture
def fake_time(monkeypatch: pytest.MonkeyPatch) -> FakeTime:
    clock = FakeTime()
    monkeypatch.setattr(engine_module, "time", clock)
    return clock


class TestThrottle:
    def test_no_pause_no_wait(self, fake_time: FakeTime) -> None:
        stop = FakeStop(fake_time)
        Throttle().wait(stop)  # type: ignore[arg-type]
        assert stop.waited == []

    def test_wait_blocks_for_the_pause(self, fake_time: FakeTime) -> None:
        throttle = Throttle()
        throttle.pause(0.2)
        start = fake_time.now
        throttle.wait(FakeStop(fake_time))  # type: ignore[arg-type]
        assert fake_time.now - start == pytest.approx(0.2)

    def test_early_wake_up_waits_on(self, fake_time: FakeTime) -> None:
        throttle = Throttle()
        throttle.pause(0.2)
        start = fake_time.now
        stop = FakeStop(fake_time, step=0.03)
        throttle.wait(stop)  # type: ignore[arg-type]
        assert fake_time.now - start == pytest.approx(0.2)
        assert len(stop.waited) == 7

    def test_shorter_pause_does_not_cut_a_longer_one(self, fake_time: FakeTime) -> None:
        throttle = Throttle()
        throttle.pause(5.0)
        throttle.pause(0.1)
        start = fake_time.now
        throttle.wait(FakeStop(fake_time))  # type: ignore[arg-type]
        assert fake_time.now - start == pytest.approx(5.0)

    def test_longer_pause_extends(self, fake_time: FakeTime) -> None:
        throttle = Throttle()
        throttle.pause(1.0)
        throttle.pause(3.0)
        start = fake_time.now
        throttle.wait(FakeStop(fake_time))  # type: ignore[arg-type]
        assert fake_time.now - start == pytest.approx(3.0)

    def test_pause_over_means_no_wait(self, fake_time: FakeTime) -> None:
        throttle = Throttle()
        throttle.pause(1.0)
        fake_time.now += 1.5
        stop = FakeStop(fake_time)
        throttle.wait(stop)  # type: ignore[arg-type]
        assert stop.waited == []

    def test_stop_ends_the_wait(self, fake_time: FakeTime) -> None:
        throttle = Throttle()
        throttle.pause(60.0)
        stop = FakeStop(fake_time, step=0.5, set_after=1)
        throttle.wait(stop)  # type: ignore[arg-type]
        assert stop.waited == [0.5]

    def test_real_wait_blocks_and_stop_interrupts(self) -> None:
        throttle = Throttle()
        throttle.pause(0.2)
        started = time.monotonic()
        throttle.wait(threading.Event())
        assert time.monotonic() - started >= 0.15

        throttle.pause(60.0)
        stop = threading.Event()
        timer = threading.Timer(0.05, stop.set)
        timer.start()
        started = time.monotonic()
        throttle.wait(stop)
        assert time.monotonic() - started < 5
        timer.join()


def test_rate_limit_pauses_every_worker(
    store: DocumentStore, kb: Any, make_engine: Any, listener: Recorder
) -> None:
    """One 429 holds back the other worker's next request until the pause is over."""
    limited_id = put(store, "limited.md", "a")
    other_id = put(store, "other.md", "b")
    heard_429 = threading.Event()
    times: dict[str, list[float]] = {"limited.md": [], "other.md": []}
    limited_at: list[float] = []

    def on_retry(document: Document, error: RemoteError) -> None:
        if error.error_type is ErrorType.RATE_LIMIT:
            heard_429.set()

    listener.on_retry = on_retry

    def create(name: str, text: str) -> str:
        times[name].append(time.monotonic())
        if name == "limited.md" and len(times[name]) == 1:
            limited_at.append(time.monotonic())
            raise remote_error(ErrorType.RATE_LIMIT, retry_after=0.3)
        if name == "other.md" and len(times[name]) == 1:
            assert heard_429.wait(5)
            raise remote_error(ErrorType.SERVER_ERROR)
        return f"el-{name}"

    kb.create.side_effect = create
    policy = RetryPolicy(max_attempts=3, backoff_base=0.005, backoff_max=1.0)

    make_engine(policy=policy, concurrency=2).run([limited_id, other_id])

    assert get(store, limited_id).sync_status is SyncStatus.COMPLETED
    assert get(store, other_id).sync_status is SyncStatus.COMPLETED
    pause = next(r[3] for r in listener.retries if r[1] is ErrorType.RATE_LIMIT)
    assert pause >= 0.3
    # the other worker's own backoff is ~5 ms; it had to wait for the whole 429 pause
    assert len(times["other.md"]) == 2
    assert times["other.md"][1] >= limited_at[0] + pause


# --------------------------------------------------------------------------- 8. update in place


def test_changed_content_is_updated_in_place(
    store: DocumentStore, kb: Any, make_engine: Any
) -> None:
    doc_id = put(store, "faq.md", "v1")
    make_engine().run([doc_id])
    assert get(store, doc_id).elevenlabs_document_id == "el-faq.md"

    [result] = store.upsert([NewDocument("faq.md", "v2", "docs/faq.md")])
    assert result.action is UpsertAction.CHANGED
    assert doc_id in list(store.due(utcnow()))
    report = make_engine().run([doc_id])

    kb.update.assert_called_once_with("el-faq.md", "faq.md", "v2")
    kb.create.assert_called_once()  # only the first run's create
    document = get(store, doc_id)
    assert document.sync_status is SyncStatus.COMPLETED
    assert document.elevenlabs_document_id == "el-faq.md"
    assert document.content == "v2"
    assert document.sync_retry_count == 0
    assert [o.action for o in report.outcomes] == [Action.UPDATED]


def test_unchanged_content_is_never_sent(store: DocumentStore, kb: Any, make_engine: Any) -> None:
    doc_id = put(store, "faq.md", "v1")
    make_engine().run([doc_id])
    kb.reset_mock()

    [result] = store.upsert([NewDocument("faq.md", "v1", "docs/faq.md")])
    assert result.action is UpsertAction.UNCHANGED
    assert doc_id not in list(store.due(utcnow()))
    report = make_engine().run([doc_id])

    assert kb.method_calls == []
    document = get(store, doc_id)
    assert document.sync_status is SyncStatus.COMPLETED
    assert document.elevenlabs_document_id == "el-faq.md"
    assert [o.status for o in report.outcomes] == [SyncStatus.COMPLETED]
    assert report.failed == []


def test_content_changed_back_is_not_sent_again(
    store: DocumentStore, kb: Any, make_engine: Any
) -> None:
    doc_id = put(store, "faq.md", "v1")
    make_engine().run([doc_id])
    kb.reset_mock()

    store.upsert([NewDocument("faq.md", "v2", "docs/faq.md")])
    store.upsert([NewDocument("faq.md", "v1", "docs/faq.md")])
    report = make_engine().run([doc_id])

    assert kb.method_calls == []
    document = get(store, doc_id)
    assert document.sync_status is SyncStatus.COMPLETED
    assert document.elevenlabs_document_id == "el-faq.md"
    assert [o.action for o in report.outcomes] == [Action.UNCHANGED]


def test_update_transient_error_is_retried(store: DocumentStore, kb: Any, make_engine: Any) -> None:
    doc_id = put(store, "faq.md", "v1")
    make_engine().run([doc_id])
    store.upsert([NewDocument("faq.md", "v2", "docs/faq.md")])
    kb.update.side_effect = [remote_error(ErrorType.SERVER_ERROR), None]

    make_engine().run([doc_id])

    assert kb.update.call_count == 2
    assert kb.create.call_count == 1
    document = get(store, doc_id)
    assert document.sync_status is SyncStatus.COMPLETED
    assert document.elevenlabs_document_id == "el-faq.md"
    assert document.sync_retry_count == 1


# --------------------------------------------------------------------------- 9. gone remotely


def test_update_of_a_deleted_document_creates_it_again(
    store: DocumentStore, kb: Any, make_engine: Any
) -> None:
    doc_id = put(store, "faq.md", "v1")
    make_engine().run([doc_id])
    store.upsert([NewDocument("faq.md", "v2", "docs/faq.md")])
    kb.reset_mock()
    kb.update.side_effect = RemoteNotFound(ErrorType.VALIDATION, "404: not found", status_code=404)
    kb.create.side_effect = ["el-new"]

    report = make_engine().run([doc_id])

    kb.update.assert_called_once_with("el-faq.md", "faq.md", "v2")
    kb.create.assert_called_once_with("faq.md", "v2")
    document = get(store, doc_id)
    assert document.sync_status is SyncStatus.COMPLETED
    assert document.elevenlabs_document_id == "el-new"
    assert document.sync_error_type is None
    assert [o.action for o in report.outcomes] == [Action.CREATED]

    # and the next change updates the new one
    store.upsert([NewDocument("faq.md", "v3", "docs/faq.md")])
    kb.update.side_effect = None
    make_engine().run([doc_id])
    assert kb.update.call_args.args == ("el-new", "faq.md", "v3")
    assert get(store, doc_id).elevenlabs_document_id == "el-new"


# --------------------------------------------------------------------------- 10. unknown outcome


def test_ambiguous_create_adopts_the_copy_it_made(
    store: DocumentStore, kb: Any, make_engine: Any
) -> None:
    doc_id = put(store, "doc.md", "the text")
    kb.create.side_effect = [
        RemoteError(ErrorType.NETWORK, "read timed out", ambiguous=True),
        "el-second",
    ]
    kb.find_by_name.return_value = [
        RemoteDocument("el-other", "doc.md"),
        RemoteDocument("el-first", "doc.md"),
    ]
    kb.get_content.side_effect = lambda remote_id: {
        "el-other": "an older text",
        "el-first": "the text",
    }[remote_id]

    report = make_engine().run([doc_id])

    assert kb.create.call_count == 1
    kb.find_by_name.assert_called_once_with("doc.md")
    document = get(store, doc_id)
    assert document.sync_status is SyncStatus.COMPLETED
    assert document.elevenlabs_document_id == "el-first"
    assert document.create_in_doubt is False
    assert document.sync_retry_count == 1
    assert [o.action for o in report.outcomes] == [Action.CREATED]


def test_ambiguous_create_not_found_creates_again(
    store: DocumentStore, kb: Any, make_engine: Any
) -> None:
    doc_id = put(store, "doc.md", "the text")
    kb.create.side_effect = [
        RemoteError(ErrorType.SERVER_ERROR, "500", status_code=500, ambiguous=True),
        "el-second",
    ]
    kb.find_by_name.return_value = [RemoteDocument("el-other", "doc.md")]
    kb.get_content.return_value = "someone else's text"

    make_engine().run([doc_id])

    assert kb.create.call_count == 2
    kb.find_by_name.assert_called_once_with("doc.md")
    document = get(store, doc_id)
    assert document.sync_status is SyncStatus.COMPLETED
    assert document.elevenlabs_document_id == "el-second"
    assert document.create_in_doubt is False


def test_a_create_the_server_may_still_be_running_is_not_repeated_in_that_run(
    store: DocumentStore, kb: Any, make_engine: Any
) -> None:
    doc_id = put(store, "doc.md", "the text")
    timed_out = RemoteError(
        ErrorType.NETWORK, "No answer within 30 s", ambiguous=True, still_running=True
    )
    kb.create.side_effect = [timed_out, "el-never"]
    kb.find_by_name.return_value = []

    make_engine().run([doc_id])

    assert kb.create.call_count == 1, "the timed-out create may still land: not created twice"
    assert kb.find_by_name.call_count == 2, "the other attempts only look for it"
    document = get(store, doc_id)
    assert document.sync_status is SyncStatus.FAILED
    assert document.sync_error_type is ErrorType.NETWORK
    assert document.create_in_doubt
    assert "may have been created anyway" in (document.sync_error_message or "")

    # It landed meanwhile: the next run finds it and adopts it, still without a second create.
    kb.find_by_name.return_value = [RemoteDocument("el-landed", "doc.md")]
    kb.get_content.return_value = "the text"
    store.reset_failed(["doc.md"])
    make_engine().run([doc_id])

    assert kb.create.call_count == 1
    document = get(store, doc_id)
    assert document.sync_status is SyncStatus.COMPLETED
    assert document.elevenlabs_document_id == "el-landed"


def test_clear_failure_does_not_look_before_retrying(
    store: DocumentStore, kb: Any, make_engine: Any
) -> None:
    doc_id = put(store, "doc.md", "the text")
    kb.create.side_effect = [remote_error(ErrorType.RATE_LIMIT), "el-1"]

    make_engine().run([doc_id])

    kb.find_by_name.assert_not_called()
    assert kb.create.call_count == 2
    assert get(store, doc_id).elevenlabs_document_id == "el-1"


def test_doubt_is_remembered_across_runs(store: DocumentStore, kb: Any, make_engine: Any) -> None:
    """A run that ended after an unheard create leaves `create_in_doubt`; the next one looks."""
    doc_id = put(store, "doc.md", "the text")
    kb.create.side_effect = RemoteError(ErrorType.NETWORK, "connection reset", ambiguous=True)
    now = utcnow()
    one_try = RetryPolicy(max_attempts=1, backoff_base=0.005, retry_delay_max=60.0)

    make_engine(policy=one_try, clock=lambda: now).run([doc_id])

    document = get(store, doc_id)
    assert document.sync_status is SyncStatus.FAILED
    assert document.sync_error_type is ErrorType.NETWORK
    assert document.create_in_doubt is True
    kb.find_by_name.assert_not_called()

    # a later sync: the first create had reached ElevenLabs after all
    kb.reset_mock()
    kb.find_by_name.return_value = [RemoteDocument("el-first", "doc.md")]
    kb.get_content.return_value = "the text"
    later = now + timedelta(seconds=61)
    assert doc_id in list(store.due(later))
    make_engine(clock=lambda: later).run([doc_id])

    kb.create.assert_not_called()
    kb.find_by_name.assert_called_once_with("doc.md")
    document = get(store, doc_id)
    assert document.sync_status is SyncStatus.COMPLETED
    assert document.elevenlabs_document_id == "el-first"
    assert document.create_in_doubt is False


def test_doubt_survives_retry_failed(store: DocumentStore, kb: Any, make_engine: Any) -> None:
    doc_id = put(store, "doc.md", "the text")
    kb.create.side_effect = RemoteError(ErrorType.NETWORK, "timed out", ambiguous=True)
    make_engine(policy=RetryPolicy(max_attempts=1, backoff_base=0.005)).run([doc_id])
    assert get(store, doc_id).create_in_doubt is True

    store.reset_failed(["doc.md"])
    kb.reset_mock()
    kb.find_by_name.return_value = []
    kb.create.side_effect = None
    kb.create.return_value = "el-new"
    make_engine().run([doc_id])

    kb.find_by_name.assert_called_once_with("doc.md")
    kb.create.assert_called_once_with("doc.md", "the text")
    assert kb.method_calls.index(("find_by_name", ("doc.md",), {})) < kb.method_calls.index(
        ("create", ("doc.md", "the text"), {})
    )
    document = get(store, doc_id)
    assert document.elevenlabs_document_id == "el-new"
    assert document.create_in_doubt is False


def test_looking_fails_transiently_then_finds(
    store: DocumentStore, kb: Any, make_engine: Any
) -> None:
    doc_id = put(store, "doc.md", "the text")
    kb.create.side_effect = [RemoteError(ErrorType.NETWORK, "timed out", ambiguous=True)]
    kb.find_by_name.side_effect = [
        remote_error(ErrorType.SERVER_ERROR),
        [RemoteDocument("el-first", "doc.md")],
    ]
    kb.get_content.return_value = "the text"

    make_engine(policy=RetryPolicy(max_attempts=4, backoff_base=0.005, backoff_max=0.05)).run(
        [doc_id]
    )

    assert kb.create.call_count == 1
    assert kb.find_by_name.call_count == 2
    assert get(store, doc_id).elevenlabs_document_id == "el-first"


# --------------------------------------------------------------------------- 11. stop


def test_stop_during_a_create_gives_the_document_back(
    store: DocumentStore, kb: Any, make_engine: Any
) -> None:
    doc_id = put(store, "doc.md", "text")
    other_id = put(store, "other.md", "text")
    in_create = threading.Event()
    unblock = threading.Event()
    sent: list[str] = []

    def create(name: str, text: str) -> str:
        sent.append(name)
        in_create.set()
        unblock.wait(30)
        return f"el-{name}"

    kb.create.side_effect = create
    stop = threading.Event()

    def stopper() -> None:
        if in_create.wait(10):
            stop.set()

    threading.Thread(target=stopper, daemon=True).start()
    try:
        started = time.monotonic()
        report = make_engine(concurrency=1).run([doc_id, other_id], stop)
        elapsed = time.monotonic() - started
    finally:
        unblock.set()

    assert elapsed < 5
    assert report.interrupted
    assert report.failed == []
    assert kb.create.call_count == 1
    # Either document may be the one whose create was under way (workers outnumber slots).
    if sent == ["other.md"]:
        doc_id, other_id = other_id, doc_id
    document = get(store, doc_id)
    assert_released(document)
    assert document.create_in_doubt is True
    assert document.elevenlabs_document_id is None
    assert_released(get(store, other_id))
    assert get(store, other_id).create_in_doubt is False, "never sent: not in doubt"
    # the late answer of the create in flight does not overwrite the release
    for thread in threading.enumerate():
        if thread.name.startswith("kbsync-push-"):
            thread.join(5)
    document = get(store, doc_id)
    assert document.sync_status is SyncStatus.PENDING
    assert document.create_in_doubt is True

    # the next run looks before creating again
    kb.reset_mock()
    kb.find_by_name.return_value = [RemoteDocument("el-doc.md", "doc.md")]
    kb.get_content.return_value = "text"
    kb.create.side_effect = lambda name, text: f"el-{name}"
    make_engine().run([doc_id])
    assert [c.args[0] for c in kb.create.call_args_list] == []
    assert get(store, doc_id).elevenlabs_document_id == "el-doc.md"


def test_stop_during_a_retry_wait_leaves_the_document_pending(
    store: DocumentStore, kb: Any, make_engine: Any, listener: Recorder
) -> None:
    doc_id = put(store, "doc.md", "text")
    kb.create.side_effect = remote_error(ErrorType.SERVER_ERROR)
    stop = threading.Event()
    listener.on_retry = lambda document, error: stop.set()
    slow = RetryPolicy(max_attempts=5, backoff_base=30.0, backoff_max=30.0)

    started = time.monotonic()
    report = make_engine(policy=slow).run([doc_id], stop)

    assert time.monotonic() - started < 5
    assert report.interrupted
    assert report.failed == []
    assert kb.create.call_count == 1  # nothing is sent once the run is stopped
    document = get(store, doc_id)
    assert_released(document)
    assert document.sync_error_type is None


def test_stop_before_the_push_sends_nothing(
    store: DocumentStore, kb: Any, make_engine: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A document claimed just as the run is stopped is given back, not pushed."""
    doc_id = put(store, "doc.md", "text")
    stop = threading.Event()
    real_claim = store.claim

    def claim(*args: Any, **kwargs: Any) -> Any:
        claimed = real_claim(*args, **kwargs)
        stop.set()
        return claimed

    monkeypatch.setattr(store, "claim", claim)
    report = make_engine().run([doc_id], stop)

    assert report.interrupted
    kb.create.assert_not_called()
    assert_released(get(store, doc_id))


def test_already_stopped_run_takes_nothing(store: DocumentStore, kb: Any, make_engine: Any) -> None:
    doc_id = put(store, "doc.md", "text")
    stop = threading.Event()
    stop.set()

    report = make_engine().run([doc_id], stop)

    assert report.interrupted
    assert kb.method_calls == []
    assert_released(get(store, doc_id))


# --------------------------------------------------------------------------- 12. unexpected


def test_unexpected_exception_ends_failed_unknown(
    store: DocumentStore, kb: Any, make_engine: Any
) -> None:
    doc_id = put(store, "doc.md", "text")
    other_id = put(store, "other.md", "text")

    def create(name: str, text: str) -> str:
        if name == "doc.md":
            raise ValueError("boom")
        return f"el-{name}"

    kb.create.side_effect = create

    report = make_engine().run([doc_id, other_id])

    document = get(store, doc_id)
    assert document.sync_status is SyncStatus.FAILED
    assert document.sync_error_type is ErrorType.UNKNOWN
    assert document.sync_error_message is not None
    assert "ValueError" in document.sync_error_message
    assert "boom" in document.sync_error_message
    assert document.lease_owner is None
    assert sum(1 for c in kb.create.call_args_list if c.args[0] == "doc.md") == 1
    assert get(store, other_id).sync_status is SyncStatus.COMPLETED
    assert [o.error_type for o in report.failed] == [ErrorType.UNKNOWN]
    assert list(store.list_documents(SyncStatus.SYNCING)) == []


def test_error_message_is_capped(store: DocumentStore, kb: Any, make_engine: Any) -> None:
    doc_id = put(store, "doc.md", "text")
    kb.create.side_effect = ValueError("x" * 10_000)

    make_engine().run([doc_id])

    message = get(store, doc_id).sync_error_message
    assert message is not None
    assert len(message) <= 2000


# --------------------------------------------------------------------------- 13. concurrency


def test_concurrency_bounds_creates_in_flight(
    store: DocumentStore, kb: Any, make_engine: Any
) -> None:
    ids = [put(store, f"doc-{n:02}.md", f"text {n}") for n in range(12)]
    lock = threading.Condition()
    in_flight = 0
    peak = 0

    def create(name: str, text: str) -> str:
        nonlocal in_flight, peak
        with lock:
            in_flight += 1
            peak = max(peak, in_flight)
            lock.notify_all()
            # hold on until four are in flight at once (or give up after a while)
            lock.wait_for(lambda: peak >= 4, timeout=2)
        time.sleep(0.02)
        with lock:
            in_flight -= 1
        return f"el-{name}"

    kb.create.side_effect = create

    report = make_engine(concurrency=4).run(ids)

    assert peak == 4
    assert kb.create.call_count == 12
    assert_no_second_copy(kb)
    for doc_id in ids:
        document = get(store, doc_id)
        assert document.sync_status is SyncStatus.COMPLETED
        assert document.elevenlabs_document_id == f"el-{document.name}"
    assert sorted(o.id for o in report.outcomes) == sorted(ids)
    assert all(o.action is Action.CREATED for o in report.outcomes)


def test_two_runs_at_once_push_each_document_once(
    store: DocumentStore, kb: Any, make_engine: Any
) -> None:
    ids = [put(store, f"doc-{n}.md", f"text {n}") for n in range(8)]

    def create(name: str, text: str) -> str:
        time.sleep(0.01)
        return f"el-{name}"

    kb.create.side_effect = create
    reports = []

    def run() -> None:
        reports.append(make_engine(concurrency=3).run(ids))

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    assert kb.create.call_count == 8
    assert_no_second_copy(kb)
    for doc_id in ids:
        assert get(store, doc_id).sync_status is SyncStatus.COMPLETED
    created = [o for r in reports for o in r.outcomes if o.action is Action.CREATED]
    assert sorted(o.id for o in created) == sorted(ids)


def test_expired_lease_is_taken_over(store: DocumentStore, kb: Any, make_engine: Any) -> None:
    """A run that died while `syncing` leaves nothing stuck: a later run takes over."""
    doc_id = put(store, "doc.md", "text")
    now = utcnow()
    assert store.claim(doc_id, "kbsync-dead", 300, now) is not None

    make_engine(clock=lambda: now + timedelta(seconds=10)).run([doc_id])
    kb.create.assert_not_called()
    assert get(store, doc_id).sync_status is SyncStatus.SYNCING

    later = now + timedelta(seconds=301)
    assert doc_id in list(store.due(later))
    make_engine(clock=lambda: later).run([doc_id])

    kb.create.assert_called_once_with("doc.md", "text")
    document = get(store, doc_id)
    assert document.sync_status is SyncStatus.COMPLETED
    assert document.lease_owner is None


def test_late_answer_after_a_takeover_does_not_overwrite(
    store: DocumentStore, kb: Any, make_engine: Any
) -> None:
    doc_id = put(store, "doc.md", "text")
    now = utcnow()
    in_create = threading.Event()
    unblock = threading.Event()

    def slow_create(name: str, text: str) -> str:
        in_create.set()
        unblock.wait(30)
        return "el-slow"

    kb.create.side_effect = slow_create
    slow_reports = []
    slow_run = threading.Thread(
        target=lambda: slow_reports.append(make_engine(clock=lambda: now).run([doc_id]))
    )
    slow_run.start()
    try:
        assert in_create.wait(10)
        kb.create.side_effect = None
        kb.create.return_value = "el-fast"
        later = now + timedelta(seconds=301)
        make_engine(clock=lambda: later).run([doc_id])
        assert get(store, doc_id).elevenlabs_document_id == "el-fast"
    finally:
        unblock.set()
        slow_run.join(10)

    document = get(store, doc_id)
    assert document.sync_status is SyncStatus.COMPLETED
    assert document.elevenlabs_document_id == "el-fast"
    [outcome] = slow_reports[0].outcomes
    assert outcome.elevenlabs_document_id == "el-fast"


# --------------------------------------------------------------------------- 14. edited meanwhile


def test_content_changed_during_a_push_stays_pending(
    store: DocumentStore, kb: Any, make_engine: Any
) -> None:
    doc_id = put(store, "doc.md", "v1")

    def create(name: str, text: str) -> str:
        store.upsert([NewDocument("doc.md", "v2", "docs/doc.md")])
        return "el-1"

    kb.create.side_effect = create

    make_engine().run([doc_id])

    kb.create.assert_called_once_with("doc.md", "v1")
    document = get(store, doc_id)
    assert document.sync_status is SyncStatus.PENDING
    assert document.content == "v2"
    assert doc_id in list(store.due(utcnow()))

    # ElevenLabs holds v1 under el-1: the next run updates it rather than making a copy
    kb.create.side_effect = None
    make_engine().run([doc_id])
    kb.update.assert_called_once_with("el-1", "doc.md", "v2")
    assert kb.create.call_count == 1
    document = get(store, doc_id)
    assert document.sync_status is SyncStatus.COMPLETED
    assert document.elevenlabs_document_id == "el-1"


def test_adaptive_limit_drops_to_what_the_server_took_and_grows_back() -> None:
    from kbsync.engine import AdaptiveLimit  # noqa: PLC0415

    limit = AdaptiveLimit(8)
    never = lambda: False  # noqa: E731
    with limit.slot(never), limit.slot(never), limit.slot(never):
        limit.over_limit()  # refused while two others were in flight
        assert int(limit.limit) == 2
    successes = 0
    while limit.limit < 8 and successes < 1000:
        limit.succeeded()
        successes += 1
    # about one more slot per round of requests: 2 + 3 + ... + 7 successes
    assert 20 <= successes <= 40
    for _ in range(50):
        limit.succeeded()
    assert limit.limit == 8, "never above --concurrency"
    with limit.slot(never):
        limit.over_limit()
    assert limit.limit == 1, "never below one request at a time"


def test_a_dead_runs_copy_of_an_older_text_is_adopted_and_updated(
    store: DocumentStore, kb: Any, make_engine: Any
) -> None:
    """Found by the life-cycle state machine: a run died after its create of "alpha" landed,
    the user then changed the text to "beta"; the next run must not make a second copy."""
    doc_id = put(store, "doc.md", "alpha")
    now = utcnow()
    assert store.claim(doc_id, "kbsync-dead", 300, now) is not None
    store.upsert([NewDocument("doc.md", "beta", None)])  # while the dead run's lease is live
    kb.find_by_name.return_value = [RemoteDocument("el-alpha", "doc.md")]
    kb.get_content.return_value = "alpha"

    make_engine(clock=lambda: now + timedelta(seconds=301)).run([doc_id])

    kb.create.assert_not_called()
    kb.update.assert_called_once_with("el-alpha", "doc.md", "beta")
    document = get(store, doc_id)
    assert document.sync_status is SyncStatus.COMPLETED
    assert document.elevenlabs_document_id == "el-alpha"
    assert document.doubt_hashes == ()
