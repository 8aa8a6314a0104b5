"""Reliability of the real `kbsync` command under concurrency, crashes and a failing API.

Every test runs kbsync as real processes (`python -m kbsync`) against the Firestore emulator
and the local ElevenLabs API double, and checks what a user would notice: every document ends
`completed`, ElevenLabs holds exactly one copy of each, Firestore records the id of that copy,
and nothing is sent that did not need sending.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from kbsync.models import Document, NewDocument, SyncStatus
from kbsync.store import FirestoreStore
from tests.support.elevenlabs_double import ElevenLabsDouble, Fault, RequestRecord

KEY = "sk-reliability-9e41c07d2b5a"
CREATE = ("POST", "/v1/convai/knowledge-base/text")
UPDATE = ("PATCH", "/v1/convai/knowledge-base/{id}")

PROCESS_TIMEOUT = 90.0
"""Seconds any one kbsync process may take before the test gives up on it."""


# --- fixtures and helpers ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def double_server() -> Iterator[ElevenLabsDouble]:
    with ElevenLabsDouble(api_keys={KEY}) as server:
        yield server


@pytest.fixture
def double(double_server: ElevenLabsDouble) -> Iterator[ElevenLabsDouble]:
    """The API double, emptied, accepting KEY only, with no latency, cap or faults."""
    double_server.reset()
    double_server.api_keys.clear()
    double_server.api_keys.add(KEY)
    double_server.latency = 0.0
    double_server.concurrency_cap = None
    yield double_server
    double_server.reset()  # releases any hold a failed test left parked
    double_server.latency = 0.0
    assert double_server.errors == [], "the API double itself failed"


@pytest.fixture
def env(
    store: FirestoreStore,
    double: ElevenLabsDouble,
    firestore_env: dict[str, str],
) -> dict[str, str]:
    """The whole environment of a kbsync process pointed at the emulator and the double."""
    return {
        **os.environ,
        **firestore_env,
        "ELEVENLABS_API_KEY": KEY,
        "ELEVENLABS_BASE_URL": double.base_url,
        "KBSYNC_COLLECTION": "knowledge_documents",
        "KBSYNC_BACKOFF_BASE": "0.01",
        "KBSYNC_BACKOFF_MAX": "0.2",
        "KBSYNC_REQUEST_TIMEOUT": "10",
        "KBSYNC_CONCURRENCY": "4",
        "KBSYNC_MAX_ATTEMPTS": "3",
        "KBSYNC_LEASE_SECONDS": "300",
        "NO_COLOR": "1",
        "COLUMNS": "200",
    }


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[str]]]:
    """Every kbsync process a test starts; any still running at the end is killed."""
    started: list[subprocess.Popen[str]] = []
    try:
        yield started
    finally:
        for proc in started:
            if proc.poll() is None:
                proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired, ValueError):
                proc.communicate(timeout=10)


class Kbsync:
    """Starts `python -m kbsync` processes in a working folder with a given environment."""

    def __init__(
        self, env: dict[str, str], cwd: Path, processes: list[subprocess.Popen[str]]
    ) -> None:
        self.env = env
        self.cwd = cwd
        self.processes = processes

    def start(self, *args: str, **extra_env: str) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            [sys.executable, "-m", "kbsync", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
            env={**self.env, **extra_env},
            cwd=self.cwd,
        )
        self.processes.append(proc)
        return proc

    def run(self, *args: str, **extra_env: str) -> subprocess.CompletedProcess[str]:
        return finish(self.start(*args, **extra_env))


def finish(
    proc: subprocess.Popen[str], timeout: float = PROCESS_TIMEOUT
) -> subprocess.CompletedProcess[str]:
    """Wait for a kbsync process; kill it if it overstays. No traceback, no key in the output."""
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        stdout, stderr = proc.communicate(timeout=10)
        pytest.fail(f"kbsync {proc.args[3:]} ran over {timeout} s\n{stdout}\n{stderr}")
    assert "Traceback" not in stderr, stderr
    assert KEY not in stdout + stderr
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


@pytest.fixture
def kbsync(env: dict[str, str], tmp_path: Path, processes: list[subprocess.Popen[str]]) -> Kbsync:
    return Kbsync(env, tmp_path, processes)


def name_of(n: int) -> str:
    return f"doc-{n:03}.md"


def text_of(n: int) -> str:
    return f"# Document {n}\nWhat the agent should know, item {n}.\n"


def seed(store: FirestoreStore, count: int) -> list[str]:
    """`count` pending documents written straight into Firestore; their names."""
    store.upsert(NewDocument(name_of(n), text_of(n), None) for n in range(count))
    return [name_of(n) for n in range(count)]


def documents(store: FirestoreStore) -> dict[str, Document]:
    return {document.name: document for document in store.list_documents()}


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"gave up after {timeout} s waiting for {what}")
        time.sleep(0.01)


def wait_until_quiet(double: ElevenLabsDouble, timeout: float = 15.0) -> None:
    """Until every request the double received has been processed (late commits landed)."""
    wait_for(lambda: double.in_flight == 0, timeout, "the double to finish every request")


def created_names(stdout: str) -> list[str]:
    """Names on the plain `completed created NAME ID` lines of a run's output."""
    names = []
    for line in stdout.splitlines():
        words = line.split()
        if len(words) >= 3 and words[0] == "completed" and words[1] == "created":
            names.append(words[2])
    return names


def create_name(record: RequestRecord) -> str | None:
    """The document name a create request carried."""
    try:
        payload = json.loads(record.body)
    except (ValueError, UnicodeDecodeError):
        return None
    name = payload.get("name") if isinstance(payload, dict) else None
    return name if isinstance(name, str) else None


def request_log(double: ElevenLabsDouble, limit: int) -> list[str]:
    """The first requests the double got, as `METHOD path -> status [fault]`."""
    return [
        f"{record.method} {record.path} -> {record.status} [{record.fault}]"
        for record in double.requests[:limit]
    ]


def assert_each_held_once(
    store: FirestoreStore, double: ElevenLabsDouble, names: list[str]
) -> dict[str, Document]:
    """Every document `completed`, ElevenLabs holds exactly one copy with its text, and
    Firestore records that copy's id. Returns the documents by name."""
    stored = documents(store)
    assert sorted(stored) == sorted(names)
    statuses = Counter(document.sync_status for document in stored.values())
    assert statuses == {SyncStatus.COMPLETED: len(names)}, statuses
    copies = {name: double.docs_named(name) for name in names}
    duplicated = {name: len(held) for name, held in copies.items() if len(held) != 1}
    assert duplicated == {}, (
        f"documents not held exactly once on ElevenLabs: {duplicated}; "
        f"requests: {request_log(double, 40)}"
    )
    for name, document in stored.items():
        (held,) = copies[name]
        assert document.elevenlabs_document_id == held.id, name
        assert held.text == document.content, name
    assert len(double.documents) == len(names)
    return stored


# --- 1. several syncs at once -----------------------------------------------------------------


def test_four_syncs_at_once_push_every_document_exactly_once(
    kbsync: Kbsync, store: FirestoreStore, double: ElevenLabsDouble
) -> None:
    names = seed(store, 200)
    double.latency = 0.02

    procs = [kbsync.start("sync") for _ in range(4)]
    results = [finish(proc) for proc in procs]

    for result in results:
        assert result.returncode == 0, result.stdout + result.stderr
    assert_each_held_once(store, double, names)
    assert double.count(*CREATE) == 200, "a document was pushed more than once"
    created_by = [created_names(result.stdout) for result in results]
    everything = Counter(name for created in created_by for name in created)
    assert sorted(everything) == sorted(names)
    assert {name: n for name, n in everything.items() if n > 1} == {}
    workers = sum(1 for created in created_by if created)
    assert workers >= 2, f"one process did all the work: {[len(c) for c in created_by]}"


# --- 2. a run killed mid-way ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("latency", "kill_after"),
    [(0.05, 5), (0.05, 40), (0.05, 80), (0.3, 12)],
    ids=["early", "midway", "late", "creates-in-flight"],
)
def test_a_killed_sync_leaves_nothing_stuck_and_no_duplicate(
    kbsync: Kbsync,
    store: FirestoreStore,
    double: ElevenLabsDouble,
    latency: float,
    kill_after: int,
) -> None:
    names = seed(store, 100)
    double.latency = latency
    lease = {"KBSYNC_LEASE_SECONDS": "2"}

    proc = kbsync.start("sync", "--concurrency", "4", **lease)
    wait_for(
        lambda: double.count(*CREATE) >= kill_after or proc.poll() is not None,
        60,
        f"{kill_after} creates",
    )
    if proc.poll() is not None:
        ended = finish(proc)
        pytest.fail(f"sync ended before it could be killed: {ended}")
    proc.kill()
    proc.wait(timeout=10)
    held_at_kill = len(double.documents)
    assert proc.returncode != 0

    wait_until_quiet(double)
    counts = store.count_by_status()
    assert counts[SyncStatus.SYNCING] >= 1, "the kill left no document mid-push"
    assert counts[SyncStatus.COMPLETED] < 100
    if latency >= 0.3:
        # Requests the dead process had sent were committed by ElevenLabs after it died.
        assert len(double.documents) > held_at_kill
    time.sleep(2.5)  # the dead run's leases run out

    double.latency = 0.0
    again = kbsync.run("sync", **lease)

    assert again.returncode == 0, again.stdout + again.stderr
    assert store.count_by_status()[SyncStatus.SYNCING] == 0
    assert_each_held_once(store, double, names)


# --- 3. a create whose answer was lost --------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "timeout"),
    [
        (Fault.commit_then_drop(), "10"),
        (Fault.commit_then_status(500), "10"),
        (Fault.slow(1.5), "0.5"),
    ],
    ids=["commit-then-drop", "commit-then-500", "commit-after-timeout"],
)
def test_a_create_whose_answer_was_lost_leaves_one_copy(
    kbsync: Kbsync,
    store: FirestoreStore,
    double: ElevenLabsDouble,
    tmp_path: Path,
    fault: Fault,
    timeout: str,
) -> None:
    (tmp_path / "guide.md").write_text("# Guide\nexactly this text\n", encoding="utf-8")
    double.script(*CREATE, fault)

    result = kbsync.run("upload", "guide.md", KBSYNC_REQUEST_TIMEOUT=timeout)
    wait_until_quiet(double)  # a slow create lands after the client gave up on it

    assert double.pending_faults() == 0
    if fault.label.startswith("slow"):
        # The server may still be creating it: that run must not create it again, and says so.
        assert result.returncode == 1, result.stdout + result.stderr
        assert "may have been created anyway" in result.stdout
        assert len(double.docs_named("guide.md")) == 1
        later = kbsync.run("sync")
        assert later.returncode == 0, later.stdout + later.stderr
    else:
        assert result.returncode == 0, result.stdout + result.stderr
    assert_each_held_once(store, double, ["guide.md"])


# --- 4. a flaky API ---------------------------------------------------------------------------


def test_random_transient_faults_end_with_every_document_once_and_retries_counted(
    kbsync: Kbsync, store: FirestoreStore, double: ElevenLabsDouble
) -> None:
    names = seed(store, 300)
    double.random_faults(0.3, kinds=("429", "500", "503", "drop", "commit_then_drop"), seed=7)

    # A failed document is due again after a delay that starts at KBSYNC_BACKOFF_BASE and
    # doubles per failed run: kept under half a second, and never parked for retry-failed.
    # Retry-After (0 or 1 s on the random 429s) is capped by KBSYNC_BACKOFF_MAX: kept short.
    settings = {
        "KBSYNC_RETRY_DELAY_MAX": "0.5",
        "KBSYNC_MAX_FAILED_RUNS": "50",
        "KBSYNC_BACKOFF_MAX": "0.05",
    }
    runs = 0
    while runs < 12:
        runs += 1
        result = kbsync.run("sync", "--concurrency", "8", **settings)
        assert result.returncode in (0, 1), result.stdout + result.stderr
        wait_until_quiet(double)
        counts = store.count_by_status()
        assert counts[SyncStatus.SYNCING] == counts[SyncStatus.PENDING] == 0, counts
        if counts[SyncStatus.COMPLETED] == 300:
            break
        due = [d.next_attempt_at for d in store.list_documents(SyncStatus.FAILED)]
        assert all(when is not None for when in due), "a transient failure waits for retry-failed"
        latest = max((when for when in due if when is not None), default=datetime.now(UTC))
        time.sleep(min(1.0, max(0.0, (latest - datetime.now(UTC)).total_seconds())))

    stored = assert_each_held_once(store, double, names)
    faulted_creates: Counter[str] = Counter()
    creates: Counter[str] = Counter()
    for record in double.requests:
        if (record.method, record.path) == CREATE and (name := create_name(record)):
            creates[name] += 1
            if record.fault is not None:
                faulted_creates[name] += 1
    assert sum(faulted_creates.values()) > 0, "the faults never hit a create"
    retries = {name: document.sync_retry_count for name, document in stored.items()}
    assert sum(retries.values()) > 0
    assert max(retries.values()) >= 1
    for name in names:
        if creates[name] == 1 and faulted_creates[name] == 0:
            # One clean create and nothing else: the faults never touched this document.
            assert retries[name] == 0, name
        # Each failed create was an attempt that had to be tried again.
        assert retries[name] >= faulted_creates[name], name
    print(f"converged after {runs} runs; {sum(retries.values())} retries counted")


# --- 5. what is sent again --------------------------------------------------------------------


def test_reupload_sends_nothing_when_unchanged_and_one_update_when_changed(
    kbsync: Kbsync, store: FirestoreStore, double: ElevenLabsDouble, tmp_path: Path
) -> None:
    path = tmp_path / "guide.md"
    path.write_text("first text\n", encoding="utf-8")
    assert kbsync.run("upload", "guide.md").returncode == 0
    first = store.get_by_name("guide.md")
    assert first is not None
    assert first.sync_status is SyncStatus.COMPLETED
    requests_before = double.count()

    unchanged = kbsync.run("upload", "guide.md")

    assert unchanged.returncode == 0, unchanged.stdout + unchanged.stderr
    assert double.count() == requests_before
    same = store.get_by_name("guide.md")
    assert same is not None
    assert same.updated_at == first.updated_at, "unchanged content was written again"

    path.write_text("second text\n", encoding="utf-8")
    creates_before = double.count(*CREATE)
    changed = kbsync.run("upload", "guide.md")

    assert changed.returncode == 0, changed.stdout + changed.stderr
    assert double.count(*UPDATE) == 1
    assert double.count(*CREATE) == creates_before
    document = store.get_by_name("guide.md")
    assert document is not None
    assert document.sync_status is SyncStatus.COMPLETED
    assert document.elevenlabs_document_id == first.elevenlabs_document_id
    (held,) = double.docs_named("guide.md")
    assert held.id == first.elevenlabs_document_id
    assert held.text == "second text\n"


# --- 6. content edited while it is being pushed ------------------------------------------------


def test_content_changed_during_a_push_is_pushed_by_the_next_sync(
    kbsync: Kbsync, store: FirestoreStore, double: ElevenLabsDouble
) -> None:
    store.upsert([NewDocument("guide.md", "old text\n", None)])
    hold = double.hold(*CREATE, timeout=30)

    proc = kbsync.start("sync")
    try:
        wait_for(
            lambda: hold.arrived.is_set() or proc.poll() is not None,
            60,
            "the create to reach ElevenLabs",
        )
        assert hold.arrived.is_set(), "sync ended before its create reached ElevenLabs"
        store.upsert([NewDocument("guide.md", "new text\n", None)])
    finally:
        hold.release()
    first = finish(proc)

    assert first.returncode == 0, first.stdout + first.stderr
    document = store.get_by_name("guide.md")
    assert document is not None
    assert document.sync_status is SyncStatus.PENDING, "completed with the old text"
    assert document.content == "new text\n"
    assert document.elevenlabs_document_id is not None
    (old,) = double.docs_named("guide.md")
    assert old.id == document.elevenlabs_document_id
    assert old.text == "old text\n"

    second = kbsync.run("sync")

    assert second.returncode == 0, second.stdout + second.stderr
    assert double.count(*CREATE) == 1
    assert double.count(*UPDATE) == 1
    assert_each_held_once(store, double, ["guide.md"])
    (held,) = double.docs_named("guide.md")
    assert held.id == old.id
    assert held.text == "new text\n"


# --- 7. a 429 pauses the whole run -------------------------------------------------------------


class Timeline:
    """Watches the double's request log from a thread: when each request arrived and when it
    was answered (the double records no times itself)."""

    def __init__(self, double: ElevenLabsDouble) -> None:
        self.double = double
        self.arrived: dict[int, float] = {}
        self.answered: dict[int, float] = {}
        self.records: list[RequestRecord] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def __enter__(self) -> Timeline:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._look()

    def _look(self) -> None:
        now = time.monotonic()
        self.records = self.double.requests
        for index, record in enumerate(self.records):
            self.arrived.setdefault(index, now)
            if record.status is not None:
                self.answered.setdefault(index, now)

    def _watch(self) -> None:
        while not self._stop.is_set():
            self._look()
            time.sleep(0.002)


def test_a_429_pauses_every_worker_for_its_retry_after(
    kbsync: Kbsync, store: FirestoreStore, double: ElevenLabsDouble
) -> None:
    names = seed(store, 12)
    double.latency = 0.2
    double.script(*CREATE, Fault.status(429, headers={"Retry-After": "1"}))

    with Timeline(double) as timeline:
        result = kbsync.run("sync", "--concurrency", "4", KBSYNC_BACKOFF_MAX="5")

    assert result.returncode == 0, result.stdout + result.stderr
    assert_each_held_once(store, double, names)
    creates = [
        (timeline.arrived[index], record)
        for index, record in enumerate(timeline.records)
        if (record.method, record.path) == CREATE
    ]
    assert len(creates) == 13  # 12 documents, one of them twice
    (limited,) = [
        index for index, record in enumerate(timeline.records) if record.fault == "status:429"
    ]
    answered = timeline.answered[limited]
    later = [round(at - answered, 3) for at, _ in creates if at > answered]
    # A request already on its way when the 429 came back may still arrive just after it (the
    # grace, well under the double's 0.2 s latency); after that nothing for the rest of the
    # second the server asked for.
    grace = 0.1
    during_pause = [delay for delay in later if grace < delay < grace + 0.8]
    assert during_pause == [], f"creates sent during the pause, s after the 429: {later}"
    # At most one create per request slot (4) before the 429 was answered and one per slot
    # within the grace: the rest waited for the pause to end.
    after_pause = [delay for delay in later if delay >= grace + 0.8]
    assert len(after_pause) >= 13 - 4 - 4, f"creates after the 429, s: {later}"
    document = store.get_by_name(create_name(timeline.records[limited]) or "")
    assert document is not None
    assert document.sync_retry_count == 1
