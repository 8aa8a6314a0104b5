"""kbsync's benchmark: prints throughput, start-up, memory and per-document costs; asserts nothing.

Run it with ``nox -s bench``, or ``python -m tests.support.bench`` from the repository root with
kbsync installed. It starts a Firestore emulator (or uses FIRESTORE_EMULATOR_HOST) and an
in-process ElevenLabs API double, seeds Firestore directly with batched writes, and runs the real
``kbsync`` command as subprocesses. Every figure is a ratio between runs of this one invocation,
so a slow or busy machine moves both sides of each ratio alike.

Data lives in the project ``kbsync-bench`` (emptied between scenarios), never the tests' project.

Push phase: the double stamps every document it creates, so the push phase of a run lasts from
the first create's arrival (its stamp less the latency) to the last create's stamp; the whole
command adds Python's start-up, the Firestore check and the query for due documents.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

# Set before google.auth is imported (it reads NO_GCE_CHECK at import): nothing leaves loopback.
os.environ.setdefault("NO_GCE_CHECK", "true")
os.environ.setdefault("GCE_METADATA_HOST", "127.0.0.1:9")
os.environ.setdefault("GCE_METADATA_IP", "127.0.0.1:9")

from google.api_core import exceptions as api_errors
from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter

from kbsync import __version__
from kbsync.engine import SyncEngine
from kbsync.models import NewDocument, SyncStatus
from kbsync.remote import ElevenLabsKB
from kbsync.store import FirestoreStore
from tests.support.elevenlabs_double import KB_PATH, ElevenLabsDouble
from tests.support.emulator import FirestoreEmulator, clear_emulator

PROJECT = "kbsync-bench"
COLLECTION = "knowledge_documents"
API_KEY = "bench-key"
LATENCY = 0.1
"""Seconds the double spends on every request (L)."""
CAP = 8
"""Requests the double serves at once before it answers 429 concurrent_limit_exceeded (C)."""
IDEAL_RATE = CAP / LATENCY
"""C/L: the most documents per second any client can push through the double."""
THROUGHPUT_DOCS = 400
IDLE_LARGE, IDLE_SMALL = 10_000, 100
MEMORY_LARGE, MEMORY_SMALL = 5_000, 50
MEMORY_DOC_BYTES = 20_000
MEMORY_CONCURRENCY = 16
COUNT_DOCS = 100
RUN_TIMEOUT = 600.0
"""Seconds one kbsync command may take before the bench kills it and reports an error."""
BATCH_DOCS, BATCH_BYTES = 500, 4_000_000
"""A seeding batch commits at 500 documents or 4 MB, well inside Firestore's request limits."""
SCENARIOS = ("throughput", "four", "idle", "memory", "startup", "counts")


# -- results -------------------------------------------------------------------------------------


@dataclass
class Figure:
    """One line of the final table."""

    label: str
    value: str
    goal: str = ""
    met: bool | None = None
    detail: str = ""

    @property
    def verdict(self) -> str:
        """`met`, `NOT met`, or empty for a figure without a goal."""
        if not self.goal:
            return ""
        return "met" if self.met else "NOT met"


@dataclass
class Results:
    """Every figure of the run, and the scenarios that broke."""

    figures: list[Figure] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    single: Throughput | None = None
    """One process at --concurrency 8, for the four processes to be compared with."""

    def add(
        self, label: str, value: str, goal: str = "", met: bool | None = None, detail: str = ""
    ) -> None:
        """Record a figure and print it at once."""
        figure = Figure(label, value, goal, met, detail)
        self.figures.append(figure)
        judged = f" (goal {goal}: {figure.verdict})" if goal else ""
        print(f"  {label}: {value}{judged}" + (f"; {detail}" if detail else ""), flush=True)


# -- kbsync as a subprocess ------------------------------------------------------------------------


@dataclass
class Finished:
    """A kbsync command that ended."""

    returncode: int
    seconds: float
    stdout: str
    stderr: str
    max_rss_kib: int | None
    """Peak resident memory, for a command started with `memory=True`."""
    cpu_seconds: float
    """User and system CPU time of the command."""
    began: float
    """`time.time()` at its start, the clock the double stamps documents with."""
    ended: float

    def summary(self) -> dict[str, int]:
        """The `summary` object of `--json` output."""
        try:
            payload = json.loads(self.stdout)
        except json.JSONDecodeError as error:
            raise BenchError(f"kbsync printed no JSON ({error}):\n{self.describe()}") from error
        return {key: int(value) for key, value in payload["summary"].items()}

    def describe(self) -> str:
        """Exit code and the ends of stdout and stderr, for error messages."""
        return (
            f"exit code {self.returncode}\nstdout: {self.stdout[-1500:]}\n"
            f"stderr: {self.stderr[-3000:]}"
        )


MEMORY_WRAPPER = """
import resource, subprocess, sys
code = subprocess.call(sys.argv[2:])
with open(sys.argv[1], "w") as report:
    report.write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss))
sys.exit(128 - code if code < 0 else code)
"""
"""Runs a command and writes its peak RSS in KiB to a file.

A child started straight from the bench would not do: Linux carries the peak RSS of the
process image a child replaces at exec into its own, and Python starts children with vfork,
so every child would report the bench's own peak (hundreds of MiB once the double holds 100
MB of documents). The wrapper is small (about 10 MiB), so that floor is harmless."""


class Running:
    """A kbsync command under way; `finish()` waits for it."""

    def __init__(
        self, args: Sequence[str], env: dict[str, str], cwd: str, *, memory: bool = False
    ) -> None:
        # Files, not pipes: nothing blocks however much it prints. finish() closes them.
        self._out: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115
        self._err: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115
        self._rss_path: Path | None = None
        command = list(args)
        if memory:
            self._rss_path = Path(cwd) / f"max-rss-{time.monotonic_ns()}"
            command = [sys.executable, "-c", MEMORY_WRAPPER, str(self._rss_path), *command]
        self.started = time.perf_counter()
        self.began = time.time()
        self.process = subprocess.Popen(
            command,
            env=env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=self._out,
            stderr=self._err,
            start_new_session=True,  # so that the watchdog can stop the wrapper and kbsync
        )

    def _kill(self) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)

    def finish(self, timeout: float = RUN_TIMEOUT) -> Finished:
        """Wait for the command, killing it after `timeout` s."""
        watchdog = threading.Timer(timeout, self._kill)
        watchdog.start()
        try:
            _, status, usage = os.wait4(self.process.pid, 0)
        finally:
            watchdog.cancel()
        seconds, ended = time.perf_counter() - self.started, time.time()
        self.process.returncode = os.waitstatus_to_exitcode(status)
        stdout, stderr = (_read_and_close(stream) for stream in (self._out, self._err))
        max_rss = None
        if self._rss_path is not None and self._rss_path.exists():
            max_rss = int(self._rss_path.read_text(encoding="ascii"))  # KiB on Linux
            self._rss_path.unlink()
        # With the wrapper, its children's CPU time is counted in its own rusage too.
        cpu = usage.ru_utime + usage.ru_stime
        return Finished(
            self.process.returncode, seconds, stdout, stderr, max_rss, cpu, self.began, ended
        )


def _read_and_close(stream: IO[bytes]) -> str:
    with stream:
        stream.seek(0)
        return stream.read().decode("utf-8", "replace")


class BenchError(RuntimeError):
    """A scenario could not be measured."""


def _cpu_times() -> tuple[int, int]:
    """Busy and total jiffies of every core since boot (/proc/stat)."""
    with Path("/proc/stat").open(encoding="ascii") as stat:
        values = [int(value) for value in stat.readline().split()[1:9]]
    idle = values[3] + values[4]  # idle and iowait
    return sum(values) - idle, sum(values)


class Watch:
    """While a run goes on: the double's requests in flight, and how busy the machine was."""

    def __init__(self, double: ElevenLabsDouble) -> None:
        self._double = double
        self._samples: list[tuple[float, int]] = []
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, name="bench-watch", daemon=True)
        self._cpu = (0, 0)
        self.busy = 0.0
        """The fraction of all cores' time that was busy (every process, not only kbsync)."""

    def _sample(self) -> None:
        while not self._done.wait(0.005):
            self._samples.append((time.time(), self._double.in_flight))

    def __enter__(self) -> Watch:
        self._cpu = _cpu_times()
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._done.set()
        self._thread.join()
        busy, total = (now - before for now, before in zip(_cpu_times(), self._cpu, strict=True))
        self.busy = busy / total if total else 0.0

    def mean_in_flight(self, start: float, end: float) -> float:
        """The average number of requests in flight between two `time.time()` moments."""
        inside = [count for moment, count in self._samples if start <= moment <= end]
        return statistics.fmean(inside) if inside else 0.0


# -- the environment: emulator, API double, seeding ------------------------------------------------


class Bench:
    """The emulator, the API double and a Firestore client for seeding, shared by every scenario."""

    def __init__(self, emulator_host: str, double: ElevenLabsDouble, workdir: str) -> None:
        self.emulator_host = emulator_host
        self.double = double
        self.workdir = workdir
        self.db = firestore.Client(project=PROJECT)
        self.collection = self.db.collection(COLLECTION)

    def close(self) -> None:
        """Close the seeding client."""
        self.db.close()  # type: ignore[no-untyped-call]

    # -- scenario state -----------------------------------------------------------------------

    def fresh(self, *, latency: float = LATENCY, cap: int | None = CAP) -> None:
        """Empty Firestore (this project only) and the double; set the double's latency and cap."""
        clear_emulator(self.emulator_host, PROJECT)
        self.double.reset()
        self.double.latency = latency
        self.double.concurrency_cap = cap

    def seed(self, count: int, *, completed: bool = False, size: int = 0) -> None:
        """Write `count` documents as `kbsync upload --no-sync` would (or as already pushed)."""
        now = datetime.now(UTC)
        batch, in_batch, in_bytes = self.db.batch(), 0, 0
        for index in range(count):
            new = NewDocument(f"bench/doc-{index:05d}.md", _content(index, size), None)
            fields = _pending_fields(new, now)
            if completed:
                fields |= {
                    "sync_status": SyncStatus.COMPLETED.value,
                    "elevenlabs_document_id": f"bench{index:015d}",
                    "pushed_hash": new.content_hash,
                    "attempted_hash": new.content_hash,
                    "last_sync_attempt": now,
                }
            batch.set(self.collection.document(new.id), fields)
            in_batch += 1
            in_bytes += len(new.content)
            if in_batch >= BATCH_DOCS or in_bytes >= BATCH_BYTES:
                batch.commit()
                batch, in_batch, in_bytes = self.db.batch(), 0, 0
        if in_batch:
            batch.commit()

    def status_counts(self) -> dict[str, int]:
        """Documents per `sync_status`, by aggregation queries."""
        counts = {}
        for status in SyncStatus:
            query = self.collection.where(filter=FieldFilter("sync_status", "==", status.value))
            aggregate: Any = query.count()  # the library's annotations are wrong here
            counts[status.value] = int(aggregate.get()[0][0].value)
        return counts

    # -- kbsync ----------------------------------------------------------------------------------

    def env(self) -> dict[str, str]:
        """The environment of a kbsync command: ours, less any kbsync or ElevenLabs setting."""
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("KBSYNC_", "ELEVENLABS_"))
        }
        return env | {
            "FIRESTORE_EMULATOR_HOST": self.emulator_host,
            "GOOGLE_CLOUD_PROJECT": PROJECT,
            "ELEVENLABS_API_KEY": API_KEY,
            "ELEVENLABS_BASE_URL": self.double.base_url,
            "NO_GCE_CHECK": "true",
            "GCE_METADATA_HOST": "127.0.0.1:9",
            "GCE_METADATA_IP": "127.0.0.1:9",
        }

    def start(self, *args: str, memory: bool = False) -> Running:
        """Start `python -m kbsync ARGS` in an empty directory (no `.env` is read)."""
        command = [sys.executable, "-m", "kbsync", *args]
        return Running(command, self.env(), self.workdir, memory=memory)

    def sync(self, concurrency: int, *, memory: bool = False) -> Finished:
        """`kbsync sync --json --concurrency N`, to its end; exit 0 or 1, else `BenchError`."""
        args = ("sync", "--json", "--concurrency", str(concurrency))
        return checked(self.start(*args, memory=memory).finish())

    # -- what the double saw ---------------------------------------------------------------------

    def push_window(self) -> tuple[float, float]:
        """`time.time()` of the first create's arrival and of the last create's completion."""
        stamps = [document.created_at for document in self.double.documents.values()]
        if not stamps:
            raise BenchError("the double created no document")
        return min(stamps) - self.double.latency, max(stamps)

    def push_phase(self) -> float:
        """Seconds from the first create's arrival to the last create's completion."""
        first, last = self.push_window()
        return last - first

    def phases(self, began: float, ended: float) -> str:
        """Where a run's time went: before the first request, pushing, after the last create."""
        first, last = self.push_window()
        return (
            f"{first - began:.2f} s before the first create, {last - first:.2f} s pushing, "
            f"{ended - last:.2f} s after the last create"
        )

    def pushed_once(self, expected: int) -> tuple[bool, str]:
        """Whether the double holds exactly one copy of each of `expected` documents."""
        names = Counter(document.name for document in self.double.documents.values())
        creates = sum(
            1
            for record in self.double.requests
            if record.method == "POST" and record.path == f"{KB_PATH}/text" and record.status == 200
        )
        twice = sum(1 for count in names.values() if count > 1)
        ok = len(names) == expected and twice == 0 and creates == expected
        detail = f"{creates} creates, {len(names)} names, {twice} pushed more than once"
        return ok, detail

    def rejected(self) -> int:
        """Requests the double answered 429."""
        return sum(1 for record in self.double.requests if record.status == 429)


def checked(run: Finished) -> Finished:
    """The run, if kbsync ended as a sync may (0: all done, 1: some failed)."""
    if run.returncode not in (0, 1):
        raise BenchError(f"kbsync sync failed: {run.describe()}")
    return run


def _content(index: int, size: int) -> str:
    """A document's text: a short note, or about `size` bytes of prose, unique per index."""
    head = f"# Bench document {index}\n\nThis is knowledge document number {index}.\n"
    if size <= len(head):
        return head + "It says what an agent needs to know about one topic.\n"
    filler = f"Paragraph {index}: the agent answers questions from this text, line by line.\n"
    return (head + filler * (size // len(filler) + 1))[:size]


def _pending_fields(new: NewDocument, now: datetime) -> dict[str, Any]:
    """The fields `FirestoreStore.upsert` writes for a new document (see `store._new_fields`)."""
    return {
        "name": new.name,
        "content": new.content,
        "content_hash": new.content_hash,
        "source": None,
        "sync_status": SyncStatus.PENDING.value,
        "elevenlabs_document_id": None,
        "sync_error_type": None,
        "sync_error_message": None,
        "last_sync_attempt": None,
        "sync_retry_count": 0,
        "created_at": now,
        "updated_at": now,
        "pushed_hash": None,
        "attempted_hash": None,
        "create_in_doubt": False,
        "lease_owner": None,
        "lease_expires_at": None,
        "failed_runs": 0,
        "next_attempt_at": None,
    }


# -- scenarios -----------------------------------------------------------------------------------


@dataclass
class Throughput:
    """Timed syncs of THROUGHPUT_DOCS new documents: the medians, and what went wrong in any."""

    rate: float
    """Documents per second over the whole command."""
    push_rate: float
    """Documents per second over the push phase."""
    failed: int = 0
    """The most documents that ended failed in one run."""
    pushed_once: bool = True
    detail: str = ""
    requests_per_doc: float = 0.0


def _throughput_run(bench: Bench, concurrency: int) -> Throughput:
    """One sync of 400 new documents at `concurrency` against L = 100 ms, C = 8."""
    bench.fresh()
    bench.seed(THROUGHPUT_DOCS)
    with Watch(bench.double) as watch:
        run = bench.sync(concurrency)
    summary = run.summary()
    counts = bench.status_counts()
    requests = bench.double.count()
    print(
        f"  [--concurrency {concurrency}] {run.seconds:.2f} s whole command: "
        f"{bench.phases(run.began, run.ended)}; summary {summary}; Firestore {counts}; "
        f"{requests} requests, {bench.rejected()} answered 429, at most "
        f"{bench.double.max_in_flight} in flight, "
        f"{watch.mean_in_flight(*bench.push_window()):.2f} on average while pushing; kbsync "
        f"used {run.cpu_seconds:.2f} CPU-s ({run.cpu_seconds / THROUGHPUT_DOCS * 1000:.1f} ms "
        f"per document), the machine's cores were {watch.busy:.0%} busy",
        flush=True,
    )
    once, detail = bench.pushed_once(THROUGHPUT_DOCS)
    pushed = summary.get("created", 0) + summary.get("updated", 0)
    return Throughput(
        rate=THROUGHPUT_DOCS / run.seconds,
        push_rate=THROUGHPUT_DOCS / bench.push_phase(),
        failed=max(summary.get("failed", 0), counts[SyncStatus.FAILED.value]),
        pushed_once=once,
        detail=detail,
        requests_per_doc=requests / pushed if pushed else float("nan"),
    )


def measure_throughput(
    bench: Bench, results: Results, concurrency: int, repeats: int = 1
) -> Throughput:
    """Median docs/s of `repeats` syncs at `concurrency`; failures and duplicates of any run."""
    runs = [_throughput_run(bench, concurrency) for _ in range(repeats)]
    label = f"--concurrency {concurrency}"
    medians = Throughput(
        rate=statistics.median(run.rate for run in runs),
        push_rate=statistics.median(run.push_rate for run in runs),
        failed=max(run.failed for run in runs),
        pushed_once=all(run.pushed_once for run in runs),
        detail="; ".join(dict.fromkeys(run.detail for run in runs)),
        requests_per_doc=max(run.requests_per_doc for run in runs),
    )
    goal = {8: 0.85, 32: 0.75}.get(concurrency)
    times = "one run" if repeats == 1 else f"median of {repeats} runs"
    for what, value, each in (
        ("whole command", medians.rate, [run.rate for run in runs]),
        ("push phase", medians.push_rate, [run.push_rate for run in runs]),
    ):
        fraction = value / IDEAL_RATE
        shown = "" if repeats == 1 else f" ({', '.join(f'{rate:.1f}' for rate in each)})"
        results.add(
            f"{label}: fraction of C/L, {what}",
            f"{fraction:.2f}",
            "" if goal is None else f">= {goal:.2f}",
            None if goal is None else fraction >= goal,
            f"{value:.1f} docs/s, {times}{shown}",
        )
    failed = medians.failed
    results.add(f"{label}: failed documents", str(failed), "0", failed == 0, f"most in {times}")
    once = medians.pushed_once
    results.add(f"{label}: each document pushed once", str(once), "True", once, medians.detail)
    if concurrency == CAP:
        results.add(
            f"{label}: API requests per pushed document",
            f"{medians.requests_per_doc:.2f}",
            detail=f"most in {times}",
        )
    return medians


def scenario_throughput(bench: Bench, results: Results) -> None:
    """--concurrency 8 and 32 (3 runs each), and 1 (the seed plan's one at a time, the baseline)."""
    at8 = results.single = measure_throughput(bench, results, 8, repeats=3)
    measure_throughput(bench, results, 32, repeats=3)
    at1 = measure_throughput(bench, results, 1)
    for what, fast, slow in (
        ("whole command", at8.rate, at1.rate),
        ("push phase", at8.push_rate, at1.push_rate),
    ):
        results.add(
            f"--concurrency 8 against one at a time (baseline), {what}",
            f"{fast / slow:.1f}x",
            detail=f"{fast:.1f} against {slow:.1f} docs/s",
        )


def scenario_four(bench: Bench, results: Results) -> None:
    """Four `kbsync sync --concurrency 2` at once on one collection (8 in all = C)."""
    bench.fresh()
    bench.seed(THROUGHPUT_DOCS)
    started, began = time.perf_counter(), time.time()
    with Watch(bench.double) as watch, ThreadPoolExecutor(4) as pool:
        runs = [bench.start("sync", "--json", "--concurrency", "2") for _ in range(4)]
        finished = [checked(run) for run in pool.map(lambda running: running.finish(), runs)]
    wall = time.perf_counter() - started
    ended = max(run.ended for run in finished)
    summaries = [run.summary() for run in finished]
    push = bench.push_phase()
    counts = bench.status_counts()
    print(
        f"  [four processes] {wall:.2f} s from start to the last one's end: "
        f"{bench.phases(began, ended)}; Firestore {counts}; {bench.double.count()} requests, "
        f"{bench.rejected()} answered 429, at most {bench.double.max_in_flight} in flight, "
        f"{watch.mean_in_flight(*bench.push_window()):.2f} on average while pushing; the "
        f"machine's cores were {watch.busy:.0%} busy",
        flush=True,
    )
    for number, (run, summary) in enumerate(zip(finished, summaries, strict=True), 1):
        print(
            f"    process {number}: {run.seconds:.2f} s, ended {ended - run.ended:.2f} s before "
            f"the last, {run.cpu_seconds:.2f} CPU-s; summary {summary}",
            flush=True,
        )
    single = results.single
    for what, seconds, alone in (
        ("start to last end", wall, single.rate if single else None),
        ("push phase", push, single.push_rate if single else None),
    ):
        rate = THROUGHPUT_DOCS / seconds
        against = f", {rate / alone:.2f} of one process at --concurrency 8" if alone else ""
        results.add(
            f"four processes x --concurrency 2: fraction of C/L, {what}",
            f"{rate / IDEAL_RATE:.2f}",
            ">= 0.85",
            rate / IDEAL_RATE >= 0.85,
            f"{rate:.1f} docs/s{against}",
        )
    once, detail = bench.pushed_once(THROUGHPUT_DOCS)
    results.add("four processes: each document pushed once", str(once), "True", once, detail)
    created = [summary.get("created", 0) for summary in summaries]
    shared = all(count > 0 for count in created) and sum(created) == THROUGHPUT_DOCS
    results.add(
        "four processes: work shared (each created some)",
        str(shared),
        "True",
        shared,
        f"created {' + '.join(map(str, created))} = {sum(created)}",
    )
    failed = counts[SyncStatus.FAILED.value]
    results.add("four processes: failed documents", str(failed), "0", failed == 0)


def _median_sync(bench: Bench, runs: int) -> tuple[float, list[float]]:
    """Median seconds of `runs` syncs with nothing to do (after one warm-up run)."""
    bench.sync(8)
    seconds = []
    for _ in range(runs):
        run = bench.sync(8)
        summary = run.summary()
        if any(summary.values()):
            raise BenchError(f"a sync with nothing to do did something: {summary}")
        seconds.append(run.seconds)
    return statistics.median(seconds), seconds


def scenario_idle(bench: Bench, results: Results) -> None:
    """A sync with nothing to do over 10,000 completed documents against one over 100."""
    medians = {}
    for count in (IDLE_LARGE, IDLE_SMALL):
        bench.fresh()
        bench.seed(count, completed=True)
        median, seconds = _median_sync(bench, 5)
        medians[count] = median
        shown = ", ".join(f"{value:.2f}" for value in seconds)
        print(f"  [{count} completed] runs: {shown} s; {bench.double.count()} requests", flush=True)
        results.add(
            f"nothing to do over {count:,} completed documents",
            f"{median:.2f} s",
            detail=f"median of 5; {bench.double.count()} API requests",
        )
    ratio = medians[IDLE_LARGE] / medians[IDLE_SMALL]
    results.add(
        f"nothing to do: {IDLE_LARGE:,} documents against {IDLE_SMALL}",
        f"{ratio:.2f}",
        "<= 1.5",
        ratio <= 1.5,
    )


def scenario_memory(bench: Bench, results: Results) -> None:
    """Peak RSS of a sync of 5,000 documents of 20 KB against one of 50."""
    peaks = {}
    for count in (MEMORY_LARGE, MEMORY_SMALL):
        bench.fresh(latency=0.0, cap=None)
        bench.seed(count, size=MEMORY_DOC_BYTES)
        run = bench.sync(MEMORY_CONCURRENCY, memory=True)
        if run.max_rss_kib is None:
            raise BenchError(f"the memory wrapper reported nothing: {run.describe()}")
        summary = run.summary()
        once, detail = bench.pushed_once(count)
        peaks[count] = peak = run.max_rss_kib / 1024
        print(
            f"  [{count} x 20 KB] {run.seconds:.1f} s ({count / run.seconds:.0f} docs/s), "
            f"peak RSS {peak:.1f} MiB, {run.cpu_seconds:.1f} CPU-s; summary {summary}; "
            f"pushed once: {once} ({detail})",
            flush=True,
        )
        results.add(
            f"peak memory syncing {count:,} documents of 20 KB",
            f"{peak:.1f} MiB",
            detail=f"--concurrency 16, {run.seconds:.1f} s, each pushed once: {once}",
        )
    ratio = peaks[MEMORY_LARGE] / peaks[MEMORY_SMALL]
    results.add(
        f"peak memory: {MEMORY_LARGE:,} documents against {MEMORY_SMALL}",
        f"{ratio:.2f}",
        "<= 1.5",
        ratio <= 1.5,
    )


def _time_command(args: Sequence[str], cwd: str) -> float:
    started = time.perf_counter()
    subprocess.run(
        list(args), cwd=cwd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    return time.perf_counter() - started


def scenario_startup(bench: Bench, results: Results) -> None:
    """`kbsync --help` against `python -c "import typer"`, medians of 10 interleaved runs."""
    commands = {
        "help": [sys.executable, "-m", "kbsync", "--help"],
        "typer": [sys.executable, "-c", "import typer"],
    }
    times: dict[str, list[float]] = {name: [] for name in commands}
    for args in commands.values():
        _time_command(args, bench.workdir)  # warm the file cache
    for _ in range(10):
        for name, args in commands.items():
            times[name].append(_time_command(args, bench.workdir))
    help_s, typer_s = (statistics.median(times[name]) for name in ("help", "typer"))
    results.add("kbsync --help", f"{help_s * 1000:.0f} ms", detail="median of 10")
    results.add('python -c "import typer"', f"{typer_s * 1000:.0f} ms", detail="median of 10")
    ratio = help_s / typer_s
    results.add("start-up: kbsync --help against import typer", f"{ratio:.2f}", "<= 2", ratio <= 2)


@dataclass
class FirestoreCalls:
    """What a Firestore client sent: counted at the RPC, so only what reached Firestore."""

    commits: int = 0
    """Commits Firestore accepted."""
    writes: int = 0
    """Document writes in the accepted commits."""
    refused: int = 0
    """Commits Firestore refused (a precondition failed: another writer was first)."""
    gets: int = 0
    documents_read: int = 0
    queries: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def snapshot(self) -> FirestoreCalls:
        """A copy of the counts so far."""
        with self.lock:
            return FirestoreCalls(
                self.commits,
                self.writes,
                self.refused,
                self.gets,
                self.documents_read,
                self.queries,
            )


def counting_client(calls: FirestoreCalls) -> firestore.Client:
    """A Firestore client whose RPCs are counted in `calls`."""
    client = firestore.Client(project=PROJECT)
    api = client._firestore_api

    def request_of(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        return kwargs.get("request", args[0] if args else None)

    def field_len(request: Any, name: str) -> int:
        value = request.get(name) if isinstance(request, dict) else getattr(request, name, None)
        return len(value or ())

    def commit(original: Callable[..., Any]) -> Callable[..., Any]:
        def counted(*args: Any, **kwargs: Any) -> Any:
            writes = field_len(request_of(args, kwargs), "writes")
            try:
                response = original(*args, **kwargs)
            except api_errors.GoogleAPIError:
                with calls.lock:
                    calls.refused += 1
                raise
            with calls.lock:
                calls.commits += 1
                calls.writes += writes
            return response

        return counted

    def batch_get(original: Callable[..., Any]) -> Callable[..., Any]:
        def counted(*args: Any, **kwargs: Any) -> Any:
            with calls.lock:
                calls.gets += 1
                calls.documents_read += field_len(request_of(args, kwargs), "documents")
            return original(*args, **kwargs)

        return counted

    def query(original: Callable[..., Any]) -> Callable[..., Any]:
        def counted(*args: Any, **kwargs: Any) -> Any:
            with calls.lock:
                calls.queries += 1
            return original(*args, **kwargs)

        return counted

    api.commit = commit(api.commit)
    api.batch_get_documents = batch_get(api.batch_get_documents)
    api.run_query = query(api.run_query)
    api.run_aggregation_query = query(api.run_aggregation_query)
    if hasattr(api, "batch_write"):
        api.batch_write = commit(api.batch_write)
    return client


def _sync_in_process(bench: Bench, client: firestore.Client, concurrency: int) -> Counter[str]:
    """One sync as `kbsync sync` does it, on `client`: the actions it reports."""
    store = FirestoreStore(COLLECTION, project=PROJECT, client=client)
    kb = ElevenLabsKB(API_KEY, base_url=bench.double.base_url)
    engine = SyncEngine(store, kb, concurrency=concurrency)
    due = list(store.due(datetime.now(UTC)))
    report = engine.run(due, threading.Event(), shared=True)
    return Counter(outcome.action.value for outcome in report.outcomes)


def _engine_pass(
    bench: Bench, calls: FirestoreCalls, clients: Sequence[firestore.Client], concurrency: int
) -> tuple[FirestoreCalls, int, dict[str, int]]:
    """Syncs at once, one per client: the Firestore calls and API requests added, the actions."""
    before, requests = calls.snapshot(), bench.double.count()
    with ThreadPoolExecutor(len(clients)) as pool:
        passes = list(
            pool.map(lambda client: _sync_in_process(bench, client, concurrency), clients)
        )
    after = calls.snapshot()
    added = FirestoreCalls(
        after.commits - before.commits,
        after.writes - before.writes,
        after.refused - before.refused,
        after.gets - before.gets,
        after.documents_read - before.documents_read,
        after.queries - before.queries,
    )
    return added, bench.double.count() - requests, dict(sum(passes, Counter[str]()))


def _report_costs(
    results: Results, label: str, added: FirestoreCalls, requests: int, pushed: int
) -> None:
    results.add(
        f"Firestore writes per pushed document{label}",
        f"{added.writes / pushed:.2f}",
        detail=f"{added.writes} writes in {added.commits} commits, {added.refused} "
        f"refused as someone wrote first, {pushed} pushed (in process)",
    )
    results.add(
        f"Firestore document reads per pushed document{label}",
        f"{added.documents_read / pushed:.2f}",
        detail=f"{added.documents_read} in {added.gets} gets, plus {added.queries} queries",
    )
    results.add(
        f"API requests per pushed document{label}",
        f"{requests / pushed:.2f}",
        detail=f"{requests} requests (in process)",
    )


def scenario_counts(bench: Bench, results: Results) -> None:
    """Firestore writes and reads and API requests per pushed document, in process."""
    calls = FirestoreCalls()
    clients = [counting_client(calls) for _ in range(4)]
    try:
        bench.fresh()
        bench.seed(COUNT_DOCS)
        added, requests, actions = _engine_pass(bench, calls, clients[:1], CAP)
        pushed = actions.get("created", 0) + actions.get("updated", 0)
        print(f"  [{COUNT_DOCS} pending, one run] actions {actions}; Firestore {added}", flush=True)
        if not pushed:
            raise BenchError(f"the in-process sync pushed nothing: {actions}")
        _report_costs(results, "", added, requests, pushed)
        added, requests, actions = _engine_pass(bench, calls, clients[:1], CAP)
        print(f"  [{COUNT_DOCS} completed, one run] actions {actions}; Firestore {added}")
        results.add(
            "unchanged set: Firestore writes, API requests",
            f"{added.writes}, {requests}",
            "0, 0",
            added.writes == 0 and requests == 0,
            f"{COUNT_DOCS} completed documents; {added.queries} queries, "
            f"{added.documents_read} documents read",
        )
        bench.fresh()
        bench.seed(COUNT_DOCS)
        added, requests, actions = _engine_pass(bench, calls, clients, 2)
        pushed = actions.get("created", 0) + actions.get("updated", 0)
        print(f"  [{COUNT_DOCS} pending, four runs] actions {actions}; Firestore {added}")
        if not pushed:
            raise BenchError(f"the four in-process syncs pushed nothing: {actions}")
        _report_costs(results, ", four runs at once", added, requests, pushed)
    finally:
        for client in clients:
            client.close()  # type: ignore[no-untyped-call]


# -- running it all --------------------------------------------------------------------------------


@contextmanager
def firestore_host() -> Iterator[str]:
    """FIRESTORE_EMULATOR_HOST if set, else a fresh emulator's host; exported for our clients."""
    preset = os.environ.get("FIRESTORE_EMULATOR_HOST")
    if preset:
        yield preset
        return
    print("starting the Firestore emulator...", flush=True)
    with FirestoreEmulator() as emulator:
        os.environ["FIRESTORE_EMULATOR_HOST"] = emulator.host
        try:
            yield emulator.host
        finally:
            os.environ.pop("FIRESTORE_EMULATOR_HOST", None)


RUNNERS: dict[str, Callable[[Bench, Results], None]] = {
    "throughput": scenario_throughput,
    "four": scenario_four,
    "idle": scenario_idle,
    "memory": scenario_memory,
    "startup": scenario_startup,
    "counts": scenario_counts,
}


def print_table(results: Results) -> None:
    """The final table: every figure, its goal and whether it is met."""
    header = Figure("figure", "value", "goal", None, "detail")
    rows = [header, *results.figures]
    widths = [max(len(getattr(row, key)) for row in rows) for key in ("label", "value", "goal")]
    print("\n" + "=" * 100)
    print("kbsync benchmark: every figure of this run")
    print("=" * 100)
    for row in rows:
        verdict = "verdict" if row is header else row.verdict
        cells = zip((row.label, row.value, row.goal), widths, strict=True)
        line = "  ".join(f"{cell:<{width}}" for cell, width in cells)
        print(f"{line}  {verdict:<7}  {row.detail}".rstrip())
    judged = [figure for figure in results.figures if figure.goal]
    met = sum(1 for figure in judged if figure.met)
    print(f"\ngoals met: {met} of {len(judged)}")
    if results.errors:
        print(f"scenarios that broke: {', '.join(results.errors)}")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the scenarios, print the figures; exit 1 if a scenario broke (never for a goal)."""
    parser = argparse.ArgumentParser(prog="python -m tests.support.bench", description=__doc__)
    parser.add_argument(
        "--only", action="append", choices=SCENARIOS, help="run only this scenario (repeatable)"
    )
    chosen = parser.parse_args(argv).only or list(SCENARIOS)
    began = time.perf_counter()
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    print(
        f"kbsync {__version__} benchmark on {os.cpu_count()} cores (load average {load}), "
        f"Python {sys.version.split()[0]}; L = {LATENCY * 1000:.0f} ms, C = {CAP}, "
        f"C/L = {IDEAL_RATE:.0f} docs/s.\nEvery figure is from this one run; compare ratios, "
        "not absolute times (the machine is shared and noisy).",
        flush=True,
    )
    results = Results()
    with ExitStack() as stack:
        host = stack.enter_context(firestore_host())
        double = stack.enter_context(ElevenLabsDouble(api_keys=[API_KEY]))
        workdir = stack.enter_context(tempfile.TemporaryDirectory(prefix="kbsync-bench-"))
        print(f"Firestore emulator {host} (project {PROJECT}), API double {double.base_url}")
        bench = Bench(host, double, workdir)
        for name in chosen:
            print(f"\n== {name}: {(RUNNERS[name].__doc__ or '').strip()}", flush=True)
            started = time.perf_counter()
            try:
                RUNNERS[name](bench, results)
            except Exception:  # noqa: BLE001 - a broken scenario is reported, the others still run
                traceback.print_exc()
                results.errors.append(name)
                print(f"  {name} BROKE (see above)", flush=True)
            print(f"  ({time.perf_counter() - started:.0f} s)", flush=True)
        clear_emulator(host, PROJECT)
        bench.close()
    print_table(results)
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    print(
        f"\nthe benchmark took {time.perf_counter() - began:.0f} s; load average at the end "
        f"{load} on {os.cpu_count()} cores. Figures are from this one run: compare the ratios."
    )
    return 1 if results.errors else 0


if __name__ == "__main__":
    sys.exit(main())
