"""The sync engine: claim a document, push it, record the outcome.

It gets a `DocumentStore` and a `KnowledgeBase`, decides and records, and never prints: a
`SyncListener` hears about progress. It knows nothing of Typer, Rich, Firestore or HTTP.
"""

from __future__ import annotations

import logging
import queue
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any, Protocol, TypeVar

from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    stop_when_event_set,
)

from kbsync.errors import RemoteError, RemoteNotFound, StoreUnavailable
from kbsync.interfaces import Claim, DocumentStore, KnowledgeBase
from kbsync.models import (
    Action,
    Document,
    ErrorType,
    Failure,
    SyncOutcome,
    SyncStatus,
    content_hash,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

RELEASE_GRACE_SECONDS = 2.0
"""How long a stopped run lets pushes in flight finish before it gives their documents back."""


def utcnow() -> datetime:
    """The current time, timezone-aware, in UTC."""
    return datetime.now(UTC)


@dataclass(frozen=True)
class RetryPolicy:
    """The one retry policy: within a run (per attempt) and across runs (per failed run)."""

    max_attempts: int = 3
    backoff_base: float = 1.0
    backoff_max: float = 30.0
    retry_delay_max: float = 3600.0
    max_failed_runs: int = 8

    def wait_before_retry(
        self, failed_attempts: int, retry_after: float | None, rng: random.Random
    ) -> float:
        """Seconds to wait after `failed_attempts` failures: doubling with jitter, or the
        server's `Retry-After`, never more than `backoff_max`."""
        if retry_after is not None:
            wait = retry_after + rng.uniform(0, self.backoff_base * 0.1)
        else:
            wait = self.backoff_base * 2.0 ** (failed_attempts - 1) * rng.uniform(1.0, 1.5)
        return max(0.0, min(self.backoff_max, wait))

    def retrying(self, rng: random.Random, **hooks: Any) -> Retrying:
        """The tenacity loop of this policy: transient `RemoteError`s only, up to
        `max_attempts`, waiting `wait_before_retry`. `hooks` adds tenacity's own arguments."""

        def wait(state: RetryCallState) -> float:
            error = state.outcome.exception() if state.outcome else None
            retry_after = error.retry_after if isinstance(error, RemoteError) else None
            return self.wait_before_retry(state.attempt_number, retry_after, rng)

        options: dict[str, Any] = {
            "stop": stop_after_attempt(self.max_attempts),
            "wait": wait,
            "retry": retry_if_exception(lambda exc: isinstance(exc, RemoteError) and exc.transient),
            "reraise": True,
        }
        return Retrying(**(options | hooks))

    def call(self, send: Callable[..., T], *args: object) -> T:
        """One request outside a run (agents, prune, doctor), retried as a push would be."""
        return self.retrying(random.Random())(send, *args)

    def next_run_delay(self, failed_runs: int, rng: random.Random) -> float | None:
        """Seconds before a later `sync` tries a document that failed transiently in
        `failed_runs` runs in a row; None once the cap is reached (wait for retry-failed)."""
        if failed_runs >= self.max_failed_runs:
            return None
        delay = self.backoff_base * 2.0 ** (failed_runs - 1) * rng.uniform(1.0, 1.25)
        return min(self.retry_delay_max, delay)


class SyncListener(Protocol):
    """What a run reports while it works; called from worker threads."""

    def started(self, total: int) -> None:
        """The run has `total` documents to look at."""

    def pushing(self, document: Document) -> None:
        """A document was claimed and is being pushed."""

    def retrying(self, document: Document, error: RemoteError, attempt: int, wait: float) -> None:
        """Attempt `attempt` failed transiently; the next starts after `wait` seconds."""

    def finished(self, outcome: SyncOutcome) -> None:
        """A document is done for this run."""


class _Quiet:
    """A listener that ignores everything."""

    def started(self, total: int) -> None:
        pass

    def pushing(self, document: Document) -> None:
        pass

    def retrying(self, document: Document, error: RemoteError, attempt: int, wait: float) -> None:
        pass

    def finished(self, outcome: SyncOutcome) -> None:
        pass


class Throttle:
    """A pause shared by every worker: one 429 slows the whole run, not just one request."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._until = 0.0

    def pause(self, seconds: float) -> None:
        """No worker sends a request for the next `seconds`."""
        with self._lock:
            self._until = max(self._until, time.monotonic() + seconds)

    def paused(self) -> bool:
        """True while a pause is on."""
        with self._lock:
            return self._until > time.monotonic()

    def wait(self, stop: threading.Event) -> None:
        """Block until the pause is over (or the run is stopped)."""
        while not stop.is_set():
            with self._lock:
                remaining = self._until - time.monotonic()
            if remaining <= 0:
                return
            stop.wait(remaining)


class _Stopped(Exception):
    """The run was stopped (or halted) before this document's request could be sent."""


class AdaptiveLimit:
    """How many requests may be in flight at once.

    It starts at the ceiling (`--concurrency`). When ElevenLabs answers 429 for too many
    requests at once, it drops to what was in flight when the server said no; every success
    lets it grow back by about one per round of requests, so kbsync settles at the API's limit.
    """

    def __init__(self, ceiling: int) -> None:
        self.ceiling = max(1, ceiling)
        self.limit = float(self.ceiling)
        self._in_flight = 0
        self._cond = threading.Condition()

    @contextmanager
    def slot(self, stopped: Callable[[], bool]) -> Iterator[None]:
        """Hold one of the slots for the length of a request; `_Stopped` if the run stops."""
        with self._cond:
            while self._in_flight >= int(self.limit) and not stopped():
                self._cond.wait(0.05)
            if stopped():
                raise _Stopped
            self._in_flight += 1
        try:
            yield
        finally:
            with self._cond:
                self._in_flight -= 1
                self._cond.notify()

    def succeeded(self) -> None:
        """A request went through: probe for one more slot, slowly."""
        with self._cond:
            if self.limit < self.ceiling:
                self.limit = min(float(self.ceiling), self.limit + 1 / self.limit)
                self._cond.notify_all()

    def over_limit(self) -> None:
        """The API refused a request for too many at once; called while its slot is held."""
        with self._cond:
            others = self._in_flight - 1
            self.limit = max(1.0, min(self.limit - 1, float(others)))


MAX_OVER_LIMIT = 20
"""Times one request is sent again after "too many at once" before it counts as a failed attempt."""


@dataclass
class RunReport:
    """What one run did."""

    outcomes: list[SyncOutcome] = field(default_factory=list)
    auth_failure: SyncOutcome | None = None
    """Set when ElevenLabs rejected the API key: the run stopped there."""
    interrupted: bool = False
    """Set when the run was stopped from outside (Ctrl-C, SIGTERM)."""
    store_error: StoreUnavailable | None = None
    """Set when Firestore stopped answering: the run stopped there."""

    @property
    def failed(self) -> list[SyncOutcome]:
        """The documents that ended `failed`."""
        return [o for o in self.outcomes if o.status is SyncStatus.FAILED]


@dataclass
class _Push:
    """One document in flight, as the run's bookkeeping sees it."""

    claim: Claim
    remote_id: str | None
    in_doubt: bool
    """A create may have reached ElevenLabs unheard: look before creating again."""
    unheard: RemoteError | None = None
    """This run's own create that the server may still be carrying out (it timed out)."""
    create_in_flight: bool = False
    attempts: int = 0
    recorded: bool = False


@dataclass(frozen=True)
class PushOptions:
    """What a push does besides sending the text."""

    folder_id: str | None = None
    """The ElevenLabs folder new documents are created in."""
    rag_model: str | None = None
    """Start RAG indexing with this model after each push (None: do not)."""
    force_delete: bool = False
    """Delete documents even while agents other than `agent_ids` use them."""
    agent_ids: tuple[str, ...] = ()
    """The agents kbsync keeps in step: their use of a document does not keep it alive."""


class SyncEngine:
    """Pushes documents from the store to the knowledge base, `concurrency` at a time."""

    def __init__(
        self,
        store: DocumentStore,
        kb: KnowledgeBase,
        *,
        policy: RetryPolicy | None = None,
        concurrency: int = 4,
        lease_seconds: float = 300.0,
        listener: SyncListener | None = None,
        clock: Callable[[], datetime] = utcnow,
        rng: random.Random | None = None,
        options: PushOptions | None = None,
    ) -> None:
        self.store = store
        self.kb = kb
        self.options = options or PushOptions()
        self.policy = policy or RetryPolicy()
        self.concurrency = max(1, concurrency)
        self.lease_seconds = lease_seconds
        self.listener: SyncListener = listener or _Quiet()
        self.clock = clock
        self.rng = rng or random.Random()
        self.owner = f"kbsync-{uuid.uuid4().hex[:12]}"
        self.throttle = Throttle()
        self.limit = AdaptiveLimit(self.concurrency)
        self._halt = threading.Event()
        self._report_taken = True
        self._lock = threading.Lock()
        self._held: dict[str, _Push] = {}
        self._adopted_stale: set[str] = set()

    def due_ids(self) -> list[str]:
        """Ids of every document a `sync` should push now."""
        return list(self.store.due(self.clock()))

    def run(
        self,
        doc_ids: Iterable[str],
        stop: threading.Event | None = None,
        *,
        shared: bool = False,
    ) -> RunReport:
        """Push the given documents (those still due when claimed) and report each outcome.

        `stop` set from outside (a signal handler) ends the run within a few seconds: no new
        document is taken and those in flight go back to `pending`.

        `shared`: other runs may be working through the same documents (`sync` from several
        machines). The documents are then taken in an order of this run's own, so that runs
        started together do not all reach for the same ones, and those another run took
        first are left out of the report (each run reports what it did).
        """
        stop = stop or threading.Event()
        ids = list(dict.fromkeys(doc_ids))
        if shared:
            self.rng.shuffle(ids)
        self._report_taken = not shared
        report = RunReport()
        self.listener.started(len(ids))
        if not ids:
            return report
        work: queue.SimpleQueue[str] = queue.SimpleQueue()
        for doc_id in ids:
            work.put(doc_id)
        # Set when the run must stop taking documents: a stop request, a bad key, Firestore gone.
        halt = self._halt = threading.Event()

        def worker() -> None:
            while not (halt.is_set() or stop.is_set()):
                try:
                    doc_id = work.get_nowait()
                except queue.Empty:
                    return
                try:
                    outcome = self._push_one(doc_id, stop, halt, report)
                except StoreUnavailable as exc:
                    with self._lock:
                        report.store_error = report.store_error or exc
                    halt.set()
                    return
                if outcome is not None:
                    with self._lock:
                        report.outcomes.append(outcome)
                    self.listener.finished(outcome)

        threads = [
            threading.Thread(target=worker, name=f"kbsync-push-{n}", daemon=True)
            for n in range(min(self._workers(), len(ids)))
        ]
        for thread in threads:
            thread.start()
        while any(thread.is_alive() for thread in threads):
            if stop.wait(0.05):
                break
        if stop.is_set():
            report.interrupted = True
            halt.set()
            deadline = time.monotonic() + RELEASE_GRACE_SECONDS
            for thread in threads:
                thread.join(max(0.0, deadline - time.monotonic()))
            self._release_held()
        return report

    def _workers(self) -> int:
        """Twice as many workers as request slots, so that the Firestore reads and writes of
        some documents overlap the requests of others and the API's slots never sit idle; but
        `--concurrency 1` is one document at a time, in order, as a user reading it expects."""
        return 1 if self.concurrency == 1 else 2 * self.concurrency + 2

    def _release_held(self) -> None:
        """Give back every document still in flight as `pending`, flagging possible creates."""
        with self._lock:
            held = [push for push in self._held.values() if not push.recorded]
            for push in held:
                push.recorded = True
        for push in held:
            try:
                self.store.release(push.claim, push.in_doubt or push.create_in_flight)
            except StoreUnavailable:
                log.warning(
                    "could not give back %s: Firestore did not answer", push.claim.document.name
                )

    def _push_one(
        self, doc_id: str, stop: threading.Event, halt: threading.Event, report: RunReport
    ) -> SyncOutcome | None:
        """Claim, push and record one document; None when the run stopped before recording."""
        claim = self.store.claim(doc_id, self.owner, self.lease_seconds, self.clock())
        if claim is None:
            if not self._report_taken:
                return None
            current = self.store.get(doc_id)
            if current is None:
                return None
            return _outcome(current, Action.SKIPPED)
        document = claim.document
        push = _Push(claim, document.elevenlabs_document_id, document.create_in_doubt)
        with self._lock:
            self._held[doc_id] = push
        try:
            if stop.is_set() or halt.is_set():
                # The run stopped while this document was being claimed: give it back unsent.
                self._give_back(push)
                return None
            return self._push_claimed(push, stop, halt, report)
        finally:
            with self._lock:
                self._held.pop(doc_id, None)

    def _push_claimed(
        self, push: _Push, stop: threading.Event, halt: threading.Event, report: RunReport
    ) -> SyncOutcome | None:
        document = push.claim.document
        deleting = document.delete_requested
        if not deleting and not document.needs_push and document.elevenlabs_document_id:
            return self._record_success(push, document.elevenlabs_document_id, Action.UNCHANGED)
        self.listener.pushing(document)
        try:
            if deleting:
                self._retrying(push, stop)(self._delete, push, stop)
                return self._record_removal(push)
            remote_id, action = self._retrying(push, stop)(self._attempt, push, stop)
            rag_status = self._index(remote_id, document, stop)
        except _Stopped:
            self._give_back(push)
            return None
        except RemoteError as error:
            return self._record_failure(push, error, stop, halt, report)
        except StoreUnavailable:
            raise
        except Exception as exc:
            # Whatever went wrong, the document must end `failed` with a cause, never `syncing`.
            log.exception("unexpected error pushing %s", document.name)
            cause = f"Unexpected error: {type(exc).__name__}: {exc}"
            unexpected = RemoteError(ErrorType.UNKNOWN, cause)
            return self._record_failure(push, unexpected, stop, halt, report)
        return self._record_success(push, remote_id, action, rag_status)

    def _index(self, remote_id: str, document: Document, stop: threading.Event) -> str | None:
        """Start RAG indexing of what was just pushed; its status, or None when not asked for.

        Indexing is extra: a failure to start it is logged and recorded, the push stands."""
        if self.options.rag_model is None:
            return None
        index = partial(self.kb.compute_rag_index, remote_id, self.options.rag_model)
        try:
            return self._call(stop, index)
        except RemoteError as error:
            log.warning("RAG indexing of %s did not start: %s", document.name, error.message)
            return f"not started ({error.error_type.value})"

    def _delete(self, push: _Push, stop: threading.Event) -> None:
        """One attempt at deleting a document from ElevenLabs (done when it is not there)."""
        document = push.claim.document
        push.attempts += 1
        remote_id = push.remote_id
        if remote_id is None and push.in_doubt:
            remote_id = self._find_own_copy(document, stop)
        if remote_id is None:
            return
        force = self.options.force_delete
        if not force:
            users = self._call(stop, partial(self.kb.dependent_agents, remote_id))
            others = [agent for agent in users if agent not in self.options.agent_ids]
            if others:
                raise RemoteError(
                    ErrorType.VALIDATION,
                    f"Kept: agent(s) {', '.join(others)} use this document on ElevenLabs. "
                    f"`kbsync delete {document.name} --force` removes it from them too.",
                )
            # Only agents kbsync keeps in step use it: deleting also takes it out of them.
            force = bool(users)
        try:
            self._call(stop, partial(self.kb.delete, remote_id, force))
        except RemoteNotFound:
            log.info("%s was already gone from ElevenLabs", document.name)

    def _record_removal(self, push: _Push) -> SyncOutcome | None:
        """The document is gone from ElevenLabs: remove it from Firestore too."""
        with self._lock:
            if push.recorded:
                return None
            push.recorded = True
        document = push.claim.document
        if not self.store.remove(push.claim):
            return self._lost_lease(push, Action.DELETED)
        return SyncOutcome(
            id=document.id,
            name=document.name,
            status=None,
            action=Action.DELETED,
            elevenlabs_document_id=push.remote_id,
            attempts=push.attempts,
            retry_count=document.sync_retry_count,
        )

    def _retrying(self, push: _Push, stop: threading.Event) -> Retrying:
        """The tenacity loop for one document: transient errors only, up to max_attempts."""
        document = push.claim.document
        policy = self.policy
        last_error: RemoteError | None = None

        def before_sleep(state: RetryCallState) -> None:
            nonlocal last_error
            error = state.outcome.exception() if state.outcome else None
            seconds = state.next_action.sleep if state.next_action else 0.0
            if isinstance(error, RemoteError):
                last_error = error
                if error.error_type is ErrorType.RATE_LIMIT:
                    self.throttle.pause(seconds)
                self.listener.retrying(document, error, state.attempt_number, seconds)

        def sleep(seconds: float) -> None:
            # Stopped during the wait: end the push with the last error (the document goes
            # back to pending) instead of sending one more request after the stop.
            if stop.wait(seconds) and last_error is not None:
                raise last_error

        return policy.retrying(
            self.rng,
            stop=stop_after_attempt(policy.max_attempts) | stop_when_event_set(stop),
            before_sleep=before_sleep,
            sleep=sleep,
        )

    def _give_back(self, push: _Push) -> None:
        """Release a claimed document unsent (the run stopped), unless already recorded."""
        with self._lock:
            released, push.recorded = push.recorded, True
        if not released:
            self.store.release(push.claim, push.in_doubt)

    def _call(self, stop: threading.Event, send: Callable[[], T]) -> T:
        """One request: after any shared pause, within the concurrency limit.

        A 429 for too many requests at once lowers the limit and the request is sent again
        (nothing was done, so it is not a failed attempt), up to MAX_OVER_LIMIT times.
        """

        def stopped() -> bool:
            return stop.is_set() or self._halt.is_set()

        refusals = 0
        while True:
            self.throttle.wait(stop)
            with self.limit.slot(stopped):
                if self.throttle.paused():
                    continue  # a pause began while this request waited for its slot
                try:
                    result = send()
                except RemoteError as error:
                    if not error.over_concurrency_limit:
                        raise
                    self.limit.over_limit()
                    refusals += 1
                    if refusals >= MAX_OVER_LIMIT:
                        raise
                else:
                    self.limit.succeeded()
                    return result
            stop.wait(min(self.policy.backoff_max, 0.01 * 2 ** (refusals - 1)))

    def _attempt(self, push: _Push, stop: threading.Event) -> tuple[str, Action]:
        """One attempt: update in place if ElevenLabs has the document, else create it once."""
        document = push.claim.document
        push.attempts += 1
        if push.remote_id is not None:
            update = partial(self.kb.update, push.remote_id, document.name, document.content)
            try:
                self._call(stop, update)
            except RemoteNotFound:
                log.info("%s is gone from ElevenLabs; creating it again", document.name)
                push.remote_id = None
            else:
                return push.remote_id, Action.UPDATED
        if push.in_doubt:
            adopted = self._find_own_copy(document, stop)
            if adopted is not None:
                push.in_doubt = False
                push.remote_id = adopted
                if adopted in self._adopted_stale:
                    # The unheard create sent an older text: bring the copy up to date.
                    self._call(
                        stop,
                        partial(self.kb.update, adopted, document.name, document.content),
                    )
                return adopted, Action.CREATED
            if push.unheard is not None:
                # This run's own create may still be under way on the server (a timeout does
                # not stop it there): never create twice in one run; a later run looks again.
                raise RemoteError(
                    push.unheard.error_type,
                    f"{push.unheard.message} (the document may have been created anyway: "
                    "the next run looks for it before creating it again)",
                    status_code=push.unheard.status_code,
                    ambiguous=True,
                )
        push.create_in_flight = True
        try:
            create = partial(self.kb.create, document.name, document.content)
            if self.options.folder_id is not None:
                create = partial(create, folder_id=self.options.folder_id)
            new_id = self._call(stop, create)
        except RemoteError as error:
            push.in_doubt = push.in_doubt or error.ambiguous
            if error.still_running:
                push.unheard = error
            raise
        finally:
            push.create_in_flight = False
        push.in_doubt = False
        return new_id, Action.CREATED

    def _find_own_copy(self, document: Document, stop: threading.Event) -> str | None:
        """The id of a knowledge-base document with this name and this text, if any: the one
        an unheard create made. Whitespace is not compared, in case the service normalises it.
        A copy of a text such a create sent (`doubt_hashes`), if the content changed since, is
        adopted too and remembered as stale."""
        wanted = _words(document.content)
        for candidate in self._call(stop, partial(self.kb.find_by_name, document.name)):
            try:
                content = self._call(stop, partial(self.kb.get_content, candidate.id))
            except RemoteNotFound:
                continue
            stale = content_hash(content) in document.doubt_hashes
            if _words(content) == wanted or stale:
                log.info("adopting %s already on ElevenLabs as %s", document.name, candidate.id)
                if _words(content) != wanted:
                    with self._lock:
                        self._adopted_stale.add(candidate.id)
                return candidate.id
        return None

    def _record_success(
        self, push: _Push, remote_id: str, action: Action, rag_status: str | None = None
    ) -> SyncOutcome | None:
        with self._lock:
            if push.recorded:
                return None
            push.recorded = True
        written = self.store.record_success(
            push.claim,
            remote_id,
            push.claim.document.content_hash,
            max(0, push.attempts - 1),
            rag_status,
        )
        if written is None:
            return self._lost_lease(push, action)
        return _outcome(written, action, attempts=push.attempts)

    def _record_failure(
        self,
        push: _Push,
        error: RemoteError,
        stop: threading.Event,
        halt: threading.Event,
        report: RunReport,
    ) -> SyncOutcome | None:
        document = push.claim.document
        in_doubt = push.in_doubt
        with self._lock:
            if push.recorded:
                return None
            push.recorded = True
            first_auth_failure = error.error_type is ErrorType.AUTH_ERROR and not halt.is_set()
            if error.error_type is ErrorType.AUTH_ERROR:
                halt.set()
        if (error.error_type is ErrorType.AUTH_ERROR and not first_auth_failure) or (
            stop.is_set() and error.transient
        ):
            # Only the first document to hear "bad key" is marked; a stopped run's transient
            # failure is not the document's fault. Both go back to pending.
            self.store.release(push.claim, in_doubt)
            return None
        retries = max(0, push.attempts - 1)
        next_attempt_at = None
        if error.transient:
            delay = self.policy.next_run_delay(document.failed_runs + 1, self.rng)
            if delay is not None:
                next_attempt_at = self.clock() + timedelta(seconds=delay)
        failure = Failure(error.error_type, error.message)
        written = self.store.record_failure(push.claim, failure, retries, next_attempt_at, in_doubt)
        if written is None:
            return self._lost_lease(push, Action.FAILED)
        outcome = _outcome(written, Action.FAILED, attempts=push.attempts)
        if first_auth_failure:
            with self._lock:
                report.auth_failure = outcome
        return outcome

    def _lost_lease(self, push: _Push, action: Action) -> SyncOutcome | None:
        """Another run took the document over while we pushed: report it as it stands now."""
        current = self.store.get(push.claim.document.id)
        log.warning("lost the lease on %s before recording the outcome", push.claim.document.name)
        if current is None:
            return None
        return _outcome(current, action, attempts=push.attempts)


def _words(text: str) -> list[str]:
    """Text as a list of words, for comparing texts regardless of whitespace."""
    return text.split()


def _outcome(document: Document, action: Action, attempts: int = 0) -> SyncOutcome:
    """The outcome row for a document as it now stands."""
    failed = document.sync_status is SyncStatus.FAILED
    return SyncOutcome(
        id=document.id,
        name=document.name,
        status=document.sync_status,
        action=Action.FAILED if failed and action is not Action.SKIPPED else action,
        elevenlabs_document_id=document.elevenlabs_document_id,
        error_type=document.sync_error_type if failed else None,
        error_message=document.sync_error_message if failed else None,
        attempts=attempts,
        retry_count=document.sync_retry_count,
    )


def would_push(store: DocumentStore, doc_id: str) -> SyncOutcome | None:
    """What a run would do with a document (for `--dry-run`), without touching anything."""
    document = store.get(doc_id)
    if document is None:
        return None
    if not document.needs_push:
        return _outcome(document, Action.UNCHANGED)
    action = Action.UPDATED if document.elevenlabs_document_id else Action.CREATED
    return _outcome(document, action)


def skipped_outcome(document: Document) -> SyncOutcome:
    """The outcome row for a document this run left alone."""
    return _outcome(document, Action.SKIPPED)


def unchanged_outcome(document: Document) -> SyncOutcome:
    """The outcome row for a document whose text ElevenLabs already holds."""
    return _outcome(document, Action.UNCHANGED)
