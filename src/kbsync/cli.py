"""The `kbsync` command: parse, build the pieces, call the engine, render, exit.

This is the only module that turns an exception into a message and an exit code. Firestore
and ElevenLabs libraries are imported only when a command needs them, so `--help` stays quick.
"""

from __future__ import annotations

import functools
import json
import logging
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from enum import StrEnum
from types import FrameType
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, ParamSpec, TypeVar

import typer

from kbsync import __version__
from kbsync.errors import ExitCode, InputError, InputProblem, KbsyncError, StoreUnavailable
from kbsync.models import SyncOutcome, SyncStatus

if TYPE_CHECKING:
    from rich.console import Console

    from kbsync import render
    from kbsync.config import Settings
    from kbsync.engine import RunReport, SyncEngine
    from kbsync.interfaces import DocumentStore

app = typer.Typer(
    name="kbsync",
    help="Keep a Firestore knowledge base in step with the ElevenLabs knowledge base.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # Plain help: Typer's rich help formatter imports ~100 ms of modules on every --help.
    rich_markup_mode=None,
)

P = ParamSpec("P")
R = TypeVar("R")

JsonFlag = Annotated[
    bool, typer.Option("--json", help="Print one JSON object on stdout and nothing else there.")
]
Verbose = Annotated[
    bool, typer.Option("--verbose", "-v", help="Log every retry to stderr with its cause and wait.")
]


class StatusChoice(StrEnum):
    """The statuses `list --status` accepts."""

    pending = "pending"
    syncing = "syncing"
    completed = "completed"
    failed = "failed"


def _version(value: bool) -> None:
    if value:
        typer.echo(f"kbsync {__version__}")
        raise typer.Exit


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Show the version."),
    ] = False,
) -> None:
    """Keep a Firestore knowledge base in step with the ElevenLabs knowledge base."""


def _settings(**overrides: object) -> Settings:
    """The settings; pydantic is imported here, not at start-up, so --help stays quick."""
    from kbsync.config import load_settings

    return load_settings(**overrides)


def _console(*, stderr: bool = False) -> Console:
    """A Rich console; Rich is imported when something is shown, not at start-up."""
    from rich.console import Console

    return Console(stderr=stderr)


def _err_console() -> Console:
    return _console(stderr=True)


def _fail(exc: KbsyncError) -> NoReturn:
    """The one boundary where an error becomes a message on stderr and an exit code."""
    console = _err_console()
    if isinstance(exc, InputError):
        for problem in exc.problems:
            console.print(f"{problem.path}: {problem.reason}", markup=False, highlight=False)
        console.print(f"Error: {exc.message}", style="red", markup=False, highlight=False)
    else:
        console.print(f"Error: {exc.message}", style="red", markup=False, highlight=False)
    if exc.hint:
        console.print(exc.hint, markup=False, highlight=False)
    raise typer.Exit(exc.exit_code)


def _command(name: str | None = None) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Register a command whose KbsyncErrors end as a message and the error's exit code."""

    def register(func: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(func)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            try:
                return func(*args, **kwargs)
            except KbsyncError as exc:
                _fail(exc)

        app.command(name=name or func.__name__.replace("_", "-"))(wrapper)
        return wrapper

    return register


def _setup_logging(verbose: bool) -> None:
    """Logs and retries go to stderr; with --verbose each retry is logged."""
    logger = logging.getLogger("kbsync")
    logger.handlers.clear()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO if verbose else logging.WARNING)
    logger.propagate = False


def _open_store(settings: Settings) -> DocumentStore:
    """The Firestore store, checked to answer (exit 3 if it does not)."""
    settings.export_emulator_host()
    from kbsync.store import FirestoreStore

    store = FirestoreStore(
        settings.collection, project=settings.project, database=settings.database
    )
    store.check()
    return store


def _engine(settings: Settings, store: DocumentStore, view: render.RunView) -> SyncEngine:
    """The sync engine wired to Firestore and ElevenLabs."""
    from kbsync.engine import RetryPolicy, SyncEngine
    from kbsync.remote import ElevenLabsKB

    kb = ElevenLabsKB(
        settings.require_api_key(), base_url=settings.base_url, timeout=settings.request_timeout
    )
    policy = RetryPolicy(
        max_attempts=settings.max_attempts,
        backoff_base=settings.backoff_base,
        backoff_max=settings.backoff_max,
        retry_delay_max=settings.retry_delay_max,
        max_failed_runs=settings.max_failed_runs,
    )
    return SyncEngine(
        store,
        kb,
        policy=policy,
        concurrency=settings.concurrency,
        lease_seconds=settings.lease_seconds,
        listener=view,
    )


@contextmanager
def _stop_on_signals() -> Iterator[threading.Event]:
    """An event set by Ctrl-C or SIGTERM while a run is under way."""
    stop = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def handler(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _print_json(payload: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(payload, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def _finish_run(
    view: render.RunView,
    report: RunReport,
    outcomes: Sequence[SyncOutcome],
    *,
    extra_skipped: int = 0,
) -> NoReturn:
    """Render a run's result and exit with the contract's code."""
    from kbsync import render

    summary = render.summarize(outcomes, extra_skipped)
    if view.enabled:
        view.conclude(outcomes, summary)
    else:
        _print_json(render.run_json(outcomes, summary))
    err = _err_console()
    if report.store_error is not None:
        _fail(report.store_error)
    if report.auth_failure is not None:
        err.print(
            f"Error: ElevenLabs rejected the API key while pushing {report.auth_failure.name!r}: "
            f"{report.auth_failure.error_message}",
            style="red",
            markup=False,
            highlight=False,
        )
        err.print(
            "Check ELEVENLABS_API_KEY, then run `kbsync retry-failed`. "
            "The documents not yet pushed are still pending.",
            markup=False,
            highlight=False,
        )
        raise typer.Exit(ExitCode.ENVIRONMENT)
    if report.interrupted:
        err.print(
            "Stopped: documents not yet pushed are pending and will go with the next run.",
            markup=False,
            highlight=False,
        )
        raise typer.Exit(ExitCode.INTERRUPTED)
    if any(outcome.status is SyncStatus.FAILED for outcome in outcomes):
        raise typer.Exit(ExitCode.FAILED)
    raise typer.Exit(ExitCode.OK)


def _push(
    settings: Settings,
    store: DocumentStore,
    doc_ids: Sequence[str],
    view: render.RunView,
    *,
    shared: bool = False,
) -> RunReport:
    """Run the engine over `doc_ids`, shown by `view`, stopping on Ctrl-C or SIGTERM."""
    engine = _engine(settings, store, view)
    with _stop_on_signals() as stop:
        return engine.run(doc_ids, stop, shared=shared)


def _run_view(as_json: bool, label: str) -> render.RunView:
    """Progress and results on stdout; nothing but the JSON there with --json."""
    from kbsync import render

    return render.RunView(_console(), enabled=not as_json, label=label)


@_command()
def upload(
    paths: Annotated[
        list[str],
        typer.Argument(help="Files or directories to upload; `-` reads standard input."),
    ],
    name: Annotated[
        str | None,
        typer.Option("--name", help="The document's name (one file, or `-`)."),
    ] = None,
    no_sync: Annotated[
        bool, typer.Option("--no-sync", help="Write to Firestore only; push later with sync.")
    ] = False,
    as_json: JsonFlag = False,
    verbose: Verbose = False,
) -> None:
    """Write files into Firestore, then push them to ElevenLabs and wait for the result."""
    from kbsync.engine import skipped_outcome, unchanged_outcome
    from kbsync.ingest import read_inputs
    from kbsync.interfaces import UpsertAction

    _setup_logging(verbose)
    inputs = read_inputs(paths, name)
    settings = _settings()
    if not no_sync:
        settings.require_api_key()
    store = _open_store(settings)
    results = store.upsert(inputs.documents)
    order = [result.document.id for result in results]
    outcomes: dict[str, SyncOutcome] = {}
    to_push: list[str] = []
    for result in results:
        document = result.document
        current = result.action is UpsertAction.UNCHANGED and not document.needs_push
        if current and document.sync_status is SyncStatus.COMPLETED:
            outcomes[document.id] = unchanged_outcome(document)
        elif no_sync:
            outcomes[document.id] = skipped_outcome(document)
        else:
            to_push.append(document.id)
    view = _run_view(as_json, "Uploading")
    report: RunReport
    if to_push:
        report = _push(settings, store, to_push, view)
    else:
        from kbsync.engine import RunReport

        report = RunReport()
    for outcome in report.outcomes:
        outcomes[outcome.id] = outcome
    for doc_id in order:
        if doc_id not in outcomes and (left := store.get(doc_id)) is not None:
            outcomes[doc_id] = skipped_outcome(left)
    ordered = [outcomes[doc_id] for doc_id in order if doc_id in outcomes]
    _finish_run(view, report, ordered, extra_skipped=len(inputs.skipped))


@_command()
def sync(
    concurrency: Annotated[
        int | None,
        typer.Option(
            "--concurrency", min=1, max=256, help="Documents pushed at once [KBSYNC_CONCURRENCY]."
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show what would be pushed; push nothing.")
    ] = False,
    as_json: JsonFlag = False,
    verbose: Verbose = False,
) -> None:
    """Push every document that needs it. Made to be run by cron."""
    from kbsync import render

    _setup_logging(verbose)
    settings = _settings(concurrency=concurrency)
    if not dry_run:
        settings.require_api_key()
    store = _open_store(settings)
    from kbsync.engine import utcnow, would_push

    due = list(store.due(utcnow()))
    if dry_run:
        planned = [outcome for doc_id in due if (outcome := would_push(store, doc_id))]
        summary = render.summarize(planned)
        if as_json:
            _print_json(render.run_json(planned, summary))
        else:
            render.render_plan(_console(), planned, summary)
        raise typer.Exit(ExitCode.OK)
    if not due and not as_json:
        _console().print("Nothing to sync.", markup=False, highlight=False)
    view = _run_view(as_json, "Syncing")
    report = _push(settings, store, due, view, shared=True)
    outcomes = sorted(report.outcomes, key=lambda outcome: outcome.name)
    _finish_run(view, report, outcomes)


@_command()
def retry_failed(
    names: Annotated[
        list[str] | None,
        typer.Argument(help="Names of failed documents to retry; none: every failed document."),
    ] = None,
    as_json: JsonFlag = False,
    verbose: Verbose = False,
) -> None:
    """Put failed documents (all, or those named) back to pending and push them now."""
    from kbsync.engine import skipped_outcome

    _setup_logging(verbose)
    settings = _settings()
    settings.require_api_key()
    store = _open_store(settings)
    named = list(dict.fromkeys(names or []))
    found = {name: store.get_by_name(name) for name in named}
    missing = [name for name, document in found.items() if document is None]
    if missing:
        raise InputError([InputProblem(name, "no document with this name") for name in missing])
    not_failed = [
        skipped_outcome(document)
        for document in found.values()
        if document is not None and document.sync_status is not SyncStatus.FAILED
    ]
    reset = store.reset_failed(named or None)
    view = _run_view(as_json, "Retrying")
    report = _push(settings, store, [document.id for document in reset], view)
    outcomes = sorted([*report.outcomes, *not_failed], key=lambda outcome: outcome.name)
    _finish_run(view, report, outcomes)


@_command(name="list")
def list_documents(
    status: Annotated[
        StatusChoice | None, typer.Option("--status", help="Only documents with this status.")
    ] = None,
    as_json: JsonFlag = False,
    verbose: Verbose = False,
) -> None:
    """A table of the documents: name, status, ElevenLabs id, last attempt, retries."""
    from kbsync import render

    _setup_logging(verbose)
    store = _open_store(_settings())
    wanted = SyncStatus(status.value) if status else None
    documents = store.list_documents(wanted)
    if as_json:
        _print_json({"documents": [render.document_json(document) for document in documents]})
        return
    _console().print(render.documents_table(documents))


@_command()
def status(
    watch: Annotated[
        bool, typer.Option("--watch", help="Keep the view live until Ctrl-C.")
    ] = False,
    interval: Annotated[
        float,
        typer.Option("--interval", min=0.1, help="Seconds between refreshes with --watch."),
    ] = 2.0,
    as_json: JsonFlag = False,
    verbose: Verbose = False,
) -> None:
    """Counts per status and the failed documents with their error type and message."""
    from kbsync import render

    _setup_logging(verbose)
    if watch and as_json:
        raise InputError([InputProblem("--json", "cannot be combined with --watch")])
    store = _open_store(_settings())

    def snapshot() -> tuple[dict[SyncStatus, int], list[Any]]:
        return store.count_by_status(), list(store.list_documents(SyncStatus.FAILED))

    if as_json:
        _print_json(render.status_json(*snapshot()))
        return
    console = _console()
    if not watch:
        console.print(render.status_view(*snapshot()))
        return
    _watch(console, snapshot, interval)


def _watch(
    console: Console,
    snapshot: Callable[[], tuple[dict[SyncStatus, int], list[Any]]],
    interval: float,
) -> None:
    """Redraw the status view every `interval` seconds until Ctrl-C (exit 0)."""
    from rich.live import Live

    from kbsync import render

    try:
        if console.is_terminal:
            with Live(render.status_view(*snapshot()), console=console, auto_refresh=False) as live:
                while True:
                    time.sleep(interval)
                    live.update(render.status_view(*snapshot()), refresh=True)
        else:
            while True:
                console.print(render.status_view(*snapshot()))
                console.file.flush()
                time.sleep(interval)
    except KeyboardInterrupt:
        return
    except StoreUnavailable as exc:
        _fail(exc)


def main() -> None:
    """The console script."""
    app()
