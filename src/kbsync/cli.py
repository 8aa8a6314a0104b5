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
from kbsync.errors import (
    ConfigError,
    ExitCode,
    InputError,
    InputProblem,
    KbsyncError,
    StoreUnavailable,
)
from kbsync.models import Document, NewDocument, SyncOutcome, SyncStatus

if TYPE_CHECKING:
    from rich.console import Console

    from kbsync import render
    from kbsync.agents import AgentChange
    from kbsync.config import Settings
    from kbsync.engine import RetryPolicy, RunReport, SyncEngine
    from kbsync.interfaces import DocumentStore, KnowledgeBase

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


AgentIds = Annotated[
    list[str] | None,
    typer.Option(
        "--agent-id",
        help="An agent whose knowledge base to keep in step (repeatable) [KBSYNC_AGENT_ID].",
    ),
]
Rag = Annotated[
    bool,
    typer.Option("--rag", help="Start RAG indexing after each push and record it [KBSYNC_RAG]."),
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


def _kb(settings: Settings) -> KnowledgeBase:
    """The ElevenLabs knowledge base, through the official SDK."""
    from kbsync.remote import ElevenLabsKB

    return ElevenLabsKB(
        settings.require_api_key(), base_url=settings.base_url, timeout=settings.request_timeout
    )


def _policy(settings: Settings) -> RetryPolicy:
    from kbsync.engine import RetryPolicy

    return RetryPolicy(
        max_attempts=settings.max_attempts,
        backoff_base=settings.backoff_base,
        backoff_max=settings.backoff_max,
        retry_delay_max=settings.retry_delay_max,
        max_failed_runs=settings.max_failed_runs,
    )


def _engine(
    settings: Settings,
    store: DocumentStore,
    kb: KnowledgeBase,
    view: render.RunView,
    *,
    force_delete: bool = False,
) -> SyncEngine:
    """The sync engine wired to Firestore and ElevenLabs."""
    from kbsync.engine import PushOptions, SyncEngine

    options = PushOptions(
        folder_id=settings.folder_id,
        rag_model=settings.rag_model if settings.rag else None,
        force_delete=force_delete,
        agent_ids=settings.agent_ids,
    )
    return SyncEngine(
        store,
        kb,
        policy=_policy(settings),
        concurrency=settings.concurrency,
        lease_seconds=settings.lease_seconds,
        listener=view,
        options=options,
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
    agents: Sequence[AgentChange] | None = None,
) -> NoReturn:
    """Render a run's result and exit with the contract's code."""
    from kbsync import render

    summary = render.summarize(outcomes, extra_skipped)
    if view.enabled:
        view.conclude(outcomes, summary)
        render.render_agents(view.console, agents or [])
    else:
        payload = render.run_json(outcomes, summary)
        if agents is not None:
            payload["agents"] = [render.agent_json(change) for change in agents]
        _print_json(payload)
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
    if any(change.error is not None for change in agents or []):
        raise typer.Exit(ExitCode.FAILED)
    raise typer.Exit(ExitCode.OK)


def _push(
    settings: Settings,
    store: DocumentStore,
    doc_ids: Sequence[str],
    view: render.RunView,
    *,
    shared: bool = False,
    force_delete: bool = False,
) -> tuple[RunReport, list[AgentChange] | None]:
    """Run the engine over `doc_ids`, shown by `view`, stopping on Ctrl-C or SIGTERM; then
    keep the configured agents in step (None when there are none)."""
    kb = _kb(settings)
    engine = _engine(settings, store, kb, view, force_delete=force_delete)
    with _stop_on_signals() as stop:
        report = engine.run(doc_ids, stop, shared=shared)
    return report, _keep_agents(settings, store, kb, report)


def _keep_agents(
    settings: Settings, store: DocumentStore, kb: KnowledgeBase, report: RunReport | None = None
) -> list[AgentChange] | None:
    """Bring every configured agent in step, unless the run was cut short."""
    if not settings.agent_ids:
        return None
    if report and (report.interrupted or report.auth_failure or report.store_error):
        return []
    from kbsync.agents import keep_agents_in_step

    return keep_agents_in_step(
        store,
        kb,
        settings.agent_ids,
        usage_mode=settings.agent_usage_mode,
        folder_id=settings.folder_id,
        policy=_policy(settings),
    )


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
    include: Annotated[
        list[str] | None,
        typer.Option("--include", help="In directories, only files matching this glob."),
    ] = None,
    exclude: Annotated[
        list[str] | None,
        typer.Option("--exclude", help="In directories, never files matching this glob."),
    ] = None,
    delete_missing: Annotated[
        bool,
        typer.Option(
            "--delete-missing",
            help="Delete documents uploaded from these directories whose file is gone.",
        ),
    ] = False,
    agent_id: AgentIds = None,
    rag: Rag = False,
    as_json: JsonFlag = False,
    verbose: Verbose = False,
) -> None:
    """Write files into Firestore, then push them to ElevenLabs and wait for the result."""
    from kbsync.engine import skipped_outcome, unchanged_outcome
    from kbsync.ingest import Selection, read_inputs

    _setup_logging(verbose)
    selection = Selection(tuple(include or ()), tuple(exclude or ()))
    inputs = read_inputs(paths, name, selection=selection)
    settings = _settings(agent_ids=tuple(agent_id) if agent_id else None, rag=rag or None)
    if not no_sync:
        settings.require_api_key()
    store = _open_store(settings)
    results = store.upsert(inputs.documents)
    gone = _missing_from(store, paths, inputs.documents) if delete_missing else []
    order = [result.document.id for result in results] + [document.id for document in gone]
    outcomes: dict[str, SyncOutcome] = {}
    to_push: list[str] = []
    for document in [result.document for result in results] + gone:
        current = not document.needs_push and not document.delete_requested
        if current and document.sync_status is SyncStatus.COMPLETED:
            outcomes[document.id] = unchanged_outcome(document)
        elif no_sync:
            outcomes[document.id] = skipped_outcome(document)
        else:
            to_push.append(document.id)
    view = _run_view(as_json, "Uploading")
    report: RunReport
    agents: list[AgentChange] | None = None
    if to_push:
        report, agents = _push(settings, store, to_push, view)
    else:
        from kbsync.engine import RunReport

        report = RunReport()
    for outcome in report.outcomes:
        outcomes[outcome.id] = outcome
    for doc_id in order:
        if doc_id not in outcomes and (left := store.get(doc_id)) is not None:
            outcomes[doc_id] = skipped_outcome(left)
    ordered = [outcomes[doc_id] for doc_id in order if doc_id in outcomes]
    _finish_run(view, report, ordered, extra_skipped=len(inputs.skipped), agents=agents)


def _missing_from(
    store: DocumentStore, paths: Sequence[str], uploaded: Sequence[NewDocument]
) -> list[Document]:
    """Mark for deletion the documents uploaded before from these directories whose file is
    gone (or no longer selected); returns them as marked."""
    from pathlib import Path

    present = {document.id for document in uploaded}
    missing: list[str] = []
    for given in paths:
        directory = Path(given)
        if given == "-" or not directory.is_dir():
            continue
        prefix = str(directory.resolve())
        missing += [d.id for d in store.from_directory(prefix) if d.id not in present]
    return store.request_deletion(missing)


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
    agent_id: AgentIds = None,
    rag: Rag = False,
    as_json: JsonFlag = False,
    verbose: Verbose = False,
) -> None:
    """Push every document that needs it. Made to be run by cron."""
    from kbsync import render

    _setup_logging(verbose)
    settings = _settings(
        concurrency=concurrency,
        agent_ids=tuple(agent_id) if agent_id else None,
        rag=rag or None,
    )
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
    report, agents = _push(settings, store, due, view, shared=True)
    outcomes = sorted(report.outcomes, key=lambda outcome: outcome.name)
    _finish_run(view, report, outcomes, agents=agents)


@_command()
def retry_failed(
    names: Annotated[
        list[str] | None,
        typer.Argument(help="Names of failed documents to retry; none: every failed document."),
    ] = None,
    agent_id: AgentIds = None,
    rag: Rag = False,
    as_json: JsonFlag = False,
    verbose: Verbose = False,
) -> None:
    """Put failed documents (all, or those named) back to pending and push them now."""
    from kbsync.engine import skipped_outcome

    _setup_logging(verbose)
    settings = _settings(agent_ids=tuple(agent_id) if agent_id else None, rag=rag or None)
    settings.require_api_key()
    store = _open_store(settings)
    found = _named(store, names or [])
    not_failed = [
        skipped_outcome(document)
        for document in found
        if document.sync_status is not SyncStatus.FAILED
    ]
    reset = store.reset_failed([document.name for document in found] or None)
    view = _run_view(as_json, "Retrying")
    report, agents = _push(settings, store, [document.id for document in reset], view)
    outcomes = sorted([*report.outcomes, *not_failed], key=lambda outcome: outcome.name)
    _finish_run(view, report, outcomes, agents=agents)


def _named(store: DocumentStore, names: Sequence[str]) -> list[Document]:
    """The documents with these names; exit 2, naming each, if any does not exist."""
    found = {name: store.get_by_name(name) for name in dict.fromkeys(names)}
    missing = [name for name, document in found.items() if document is None]
    if missing:
        raise InputError([InputProblem(name, "no document with this name") for name in missing])
    return [document for document in found.values() if document is not None]


@_command()
def delete(
    names: Annotated[list[str], typer.Argument(help="Names of the documents to delete.")],
    force: Annotated[
        bool,
        typer.Option("--force", help="Also remove them from agents that use them."),
    ] = False,
    keep_remote: Annotated[
        bool,
        typer.Option(
            "--keep-remote",
            help="Remove them from Firestore only, keeping their ElevenLabs copies.",
        ),
    ] = False,
    agent_id: AgentIds = None,
    as_json: JsonFlag = False,
    verbose: Verbose = False,
) -> None:
    """Delete documents from ElevenLabs, then from Firestore."""
    _setup_logging(verbose)
    settings = _settings(agent_ids=tuple(agent_id) if agent_id else None)
    if not keep_remote:
        settings.require_api_key()
    store = _open_store(settings)
    marked = store.request_deletion(document.id for document in _named(store, names))
    view = _run_view(as_json, "Deleting")
    if keep_remote:
        _finish_run(view, *_forget(settings, store, [d.id for d in marked], view))
    report, agents = _push(settings, store, [d.id for d in marked], view, force_delete=force)
    outcomes = sorted(report.outcomes, key=lambda outcome: outcome.name)
    _finish_run(view, report, outcomes, agents=agents)


def _forget(
    settings: Settings, store: DocumentStore, doc_ids: Sequence[str], view: render.RunView
) -> tuple[RunReport, list[SyncOutcome]]:
    """Remove documents from Firestore only (`delete --keep-remote`), each under a claim."""
    from kbsync.engine import RunReport, skipped_outcome, utcnow
    from kbsync.models import Action

    report = RunReport()
    owner = "kbsync-delete-keep-remote"
    for doc_id in doc_ids:
        claim = store.claim(doc_id, owner, settings.lease_seconds, utcnow())
        if claim is None or not store.remove(claim):
            current = store.get(doc_id)
            if current is not None:
                report.outcomes.append(skipped_outcome(current))
            continue
        document = claim.document
        outcome = SyncOutcome(
            id=document.id,
            name=document.name,
            status=None,
            action=Action.DELETED,
            elevenlabs_document_id=document.elevenlabs_document_id,
        )
        report.outcomes.append(outcome)
        view.finished(outcome)
    kept = [o.elevenlabs_document_id for o in report.outcomes if o.elevenlabs_document_id]
    if kept:
        _err_console().print(
            f"Kept on ElevenLabs: {', '.join(kept)}. `kbsync prune` removes such copies when "
            "they are in KBSYNC_FOLDER_ID.",
            markup=False,
            highlight=False,
        )
    return report, report.outcomes


@_command()
def prune(
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="List what would be deleted; delete nothing.")
    ] = False,
    max_delete: Annotated[
        int,
        typer.Option(
            "--max-delete", min=0, help="Stop, deleting nothing, if more would go than this."
        ),
    ] = 20,
    as_json: JsonFlag = False,
    verbose: Verbose = False,
) -> None:
    """Delete ElevenLabs documents kbsync made that no Firestore document points to any more."""
    from kbsync import render
    from kbsync.prune import PruneRefused, prune_orphans

    _setup_logging(verbose)
    settings = _settings()
    if not settings.folder_id:
        raise ConfigError(
            "KBSYNC_FOLDER_ID is not set: prune only ever deletes documents in kbsync's own "
            "ElevenLabs folder.",
            hint="Create a folder in the ElevenLabs knowledge base, set KBSYNC_FOLDER_ID to its "
            "id; documents kbsync creates from then on go there.",
        )
    store = _open_store(settings)
    kb = _kb(settings)
    try:
        result = prune_orphans(
            store,
            kb,
            settings.folder_id,
            policy=_policy(settings),
            min_age_seconds=settings.lease_seconds,
            agent_ids=settings.agent_ids,
            max_delete=max_delete,
            dry_run=dry_run,
        )
    except PruneRefused as refused:
        if as_json:
            _print_json(render.prune_json(refused.result))
        else:
            render.render_prune(_console(), refused.result)
        raise KbsyncError(refused.message, hint=refused.hint) from None
    agents = None if dry_run else _keep_agents(settings, store, kb)
    if as_json:
        payload = render.prune_json(result)
        if agents is not None:
            payload["agents"] = [render.agent_json(change) for change in agents]
        _print_json(payload)
    else:
        console = _console()
        render.render_prune(console, result)
        render.render_agents(console, agents or [])
    failed = result.failed or any(change.error for change in agents or [])
    raise typer.Exit(ExitCode.FAILED if failed else ExitCode.OK)


@_command()
def doctor(
    agent_id: AgentIds = None,
    verbose: Verbose = False,
) -> None:
    """Check the configuration, Firestore, the API key, the folder and the agents."""
    from kbsync.doctor import run_checks

    _setup_logging(verbose)
    console = _console()
    ok = True
    for check in run_checks(
        lambda: _settings(agent_ids=tuple(agent_id) if agent_id else None),
        open_store=_open_store,
        open_kb=_kb,
    ):
        ok = ok and check.ok
        mark = "[green]ok  [/green]" if check.ok else "[red]FAIL[/red]"
        console.print(f"{mark} ", end="")
        console.print(f"{check.name}: {check.detail}", markup=False, highlight=False)
        if not check.ok and check.fix:
            console.print(f"     {check.fix}", markup=False, highlight=False)
    raise typer.Exit(ExitCode.OK if ok else ExitCode.ENVIRONMENT)


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
    settings = _settings()
    store = _open_store(settings)

    def snapshot() -> tuple[dict[SyncStatus, int], list[Any], dict[str, int] | None]:
        rag = store.rag_counts() if settings.rag else None
        return store.count_by_status(), list(store.list_documents(SyncStatus.FAILED)), rag

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
    snapshot: Callable[[], tuple[dict[SyncStatus, int], list[Any], dict[str, int] | None]],
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
