"""Everything kbsync shows a person: progress, tables, the live status view, plain lines.

A terminal gets colour, progress bars and tables; anything else (cron, a pipe) gets one plain
line per document and a summary, with no control sequences. `--json` output is built here too.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from rich.console import Console, Group, RenderableType
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table
from rich.text import Text

from kbsync.errors import RemoteError
from kbsync.models import Document, SyncOutcome, SyncStatus

if TYPE_CHECKING:
    from kbsync.agents import AgentChange
    from kbsync.prune import PruneResult

log = logging.getLogger("kbsync")

STATUS_STYLES: Mapping[SyncStatus, str] = {
    SyncStatus.PENDING: "dark_orange",
    SyncStatus.SYNCING: "blue",
    SyncStatus.COMPLETED: "green",
    SyncStatus.FAILED: "red",
}

SUMMARY_KEYS = ("created", "updated", "unchanged", "failed", "skipped", "deleted")


def status_text(status: SyncStatus) -> Text:
    """A status word in its colour."""
    return Text(status.value, style=STATUS_STYLES[status])


def when(moment: datetime | None) -> str:
    """A timestamp as a person reads it, in UTC."""
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC") if moment else "-"


def iso(moment: datetime | None) -> str | None:
    """A timestamp as JSON carries it: ISO 8601 in UTC."""
    return moment.isoformat().replace("+00:00", "Z") if moment else None


class RunView:
    """Shows a run (sync, upload, retry-failed) as it goes: a progress bar or plain lines.

    It is the engine's `SyncListener`; its methods are called from worker threads.
    """

    def __init__(self, console: Console, *, enabled: bool = True, label: str = "Pushing") -> None:
        self.console = console
        self.enabled = enabled
        self.label = label
        self._lock = threading.Lock()
        self._progress: Progress | None = None
        self._task: Any = None
        self._shown: set[str] = set()

    @property
    def live(self) -> bool:
        """True when progress bars are shown (a terminal, not --json)."""
        return self.enabled and self.console.is_terminal

    def __enter__(self) -> RunView:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the progress bar, leaving its last state on screen."""
        with self._lock:
            if self._progress is not None:
                self._progress.stop()
                self._progress = None

    def started(self, total: int) -> None:
        if not self.live or total == 0:
            return
        with self._lock:
            self._progress = Progress(
                SpinnerColumn(),
                TextColumn("[progress.description]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=self.console,
                transient=False,
            )
            self._task = self._progress.add_task(self.label, total=total)
            self._progress.start()

    def pushing(self, document: Document) -> None:
        pass

    def retrying(self, document: Document, error: RemoteError, attempt: int, wait: float) -> None:
        log.info(
            "retrying %s after attempt %d failed (%s: %s); waiting %.1f s",
            document.name,
            attempt,
            error.error_type.value,
            error.message,
            wait,
        )

    def finished(self, outcome: SyncOutcome) -> None:
        if not self.enabled:
            return
        with self._lock:
            if self._progress is not None:
                self._progress.advance(self._task)
        self._line(outcome)

    def _line(self, outcome: SyncOutcome) -> None:
        """One line per document, printed once: coloured above the progress bar on a
        terminal, plain and never wrapped elsewhere (logs are grepped)."""
        with self._lock:
            if outcome.id in self._shown:
                return
            self._shown.add(outcome.id)
            if self.console.is_terminal:
                console = self._progress.console if self._progress else self.console
                console.print(outcome_line(outcome, markup=True))
                return
        line = outcome_line(outcome, markup=False)
        self.console.print(line, markup=False, highlight=False, soft_wrap=True)

    def conclude(self, outcomes: Sequence[SyncOutcome], summary: Mapping[str, int]) -> None:
        """The end of a run: the lines not yet shown, the failure table and the summary."""
        self.close()
        if not self.enabled:
            return
        for outcome in outcomes:
            self._line(outcome)
        failed = [o for o in outcomes if o.status is SyncStatus.FAILED]
        if failed:
            self.console.print(failures_table(failed))
        self.console.print(summary_line(summary), markup=False, highlight=False)


def outcome_line(outcome: SyncOutcome, *, markup: bool) -> str:
    """One line for one document: status, action, name, id or error."""
    tail = outcome.elevenlabs_document_id or ""
    if outcome.error_type:
        tail = f"{outcome.error_type.value}: {outcome.error_message or ''}"
    status = outcome.status.value if outcome.status else "gone"
    line = f"{status:<9} {outcome.action.value:<9} {outcome.name}"
    if tail:
        line += f"  {tail}"
    if markup:
        style = STATUS_STYLES[outcome.status] if outcome.status else "magenta"
        return f"[{style}]{escape(line)}[/{style}]"
    return line


def summarize(outcomes: Iterable[SyncOutcome], extra_skipped: int = 0) -> dict[str, int]:
    """The `summary` of a run: how many documents got each action."""
    counts = Counter(outcome.action.value for outcome in outcomes)
    summary = {key: counts.get(key, 0) for key in SUMMARY_KEYS}
    summary["skipped"] += extra_skipped
    return summary


def summary_line(summary: Mapping[str, int]) -> str:
    """`2 created, 1 updated, 0 unchanged, 1 failed, 0 skipped`."""
    shown = [key for key in SUMMARY_KEYS if key != "deleted" or summary.get(key)]
    return ", ".join(f"{summary[key]} {key}" for key in shown)


def failures_table(outcomes: Sequence[SyncOutcome]) -> Table:
    """The table of what failed and why, shown at the end of a run."""
    table = Table(title="Failed documents", title_style="bold red", expand=False)
    table.add_column("name", overflow="fold")
    table.add_column("error type", style="red", no_wrap=True)
    table.add_column("message", overflow="fold")
    table.add_column("attempts", justify="right")
    for outcome in outcomes:
        table.add_row(
            outcome.name,
            outcome.error_type.value if outcome.error_type else "-",
            outcome.error_message or "-",
            str(outcome.retry_count + 1),
        )
    return table


def render_plan(
    console: Console, planned: Sequence[SyncOutcome], summary: Mapping[str, int]
) -> None:
    """`sync --dry-run`: one line per document that would be pushed, and what would happen."""
    for outcome in planned:
        line = f"would {outcome.action.value:<9} {outcome.name}"
        console.print(line, markup=False, highlight=False, soft_wrap=True)
    console.print(f"dry run: {summary_line(summary)}", markup=False, highlight=False)


def documents_table(documents: Iterable[Document]) -> Table:
    """`kbsync list`: one row per document."""
    table = Table(expand=False)
    table.add_column("name", overflow="fold")
    table.add_column("status", no_wrap=True)
    table.add_column("ElevenLabs id", overflow="fold")
    table.add_column("last attempt", no_wrap=True)
    table.add_column("retries", justify="right")
    for document in documents:
        table.add_row(
            document.name,
            status_text(document.sync_status),
            document.elevenlabs_document_id or "-",
            when(document.last_sync_attempt),
            str(document.sync_retry_count),
        )
    return table


def status_view(
    counts: Mapping[SyncStatus, int],
    failed: Sequence[Document],
    rag: Mapping[str, int] | None = None,
) -> RenderableType:
    """`kbsync status`: counts per status and the failed documents with their causes."""
    summary = Text()
    for index, status in enumerate(SyncStatus):
        if index:
            summary.append("   ")
        summary.append(f"{status.value} ", style=STATUS_STYLES[status])
        summary.append(str(counts.get(status, 0)), style="bold")
    parts: list[RenderableType] = [summary]
    if rag is not None:
        index_line = Text("RAG index: ")
        index_line.append(
            "   ".join(f"{state} {count}" for state, count in sorted(rag.items())) or "none yet"
        )
        parts.append(index_line)
    if failed:
        table = Table(title="Failed documents", title_style="bold red", expand=False)
        table.add_column("name", overflow="fold")
        table.add_column("error type", style="red", no_wrap=True)
        table.add_column("message", overflow="fold")
        table.add_column("last attempt", no_wrap=True)
        table.add_column("retries", justify="right")
        for document in failed:
            table.add_row(
                document.name,
                document.sync_error_type.value if document.sync_error_type else "-",
                document.sync_error_message or "-",
                when(document.last_sync_attempt),
                str(document.sync_retry_count),
            )
        parts.append(table)
    return Group(*parts)


def outcome_json(outcome: SyncOutcome) -> dict[str, Any]:
    """One entry of `documents` in the JSON of upload, sync and retry-failed."""
    return {
        "name": outcome.name,
        "id": outcome.id,
        "status": outcome.status.value if outcome.status else None,
        "action": outcome.action.value,
        "elevenlabs_document_id": outcome.elevenlabs_document_id,
        "error_type": outcome.error_type.value if outcome.error_type else None,
        "error_message": outcome.error_message,
    }


def document_json(document: Document) -> dict[str, Any]:
    """One entry of `documents` in the JSON of `list`."""
    return {
        "name": document.name,
        "id": document.id,
        "sync_status": document.sync_status.value,
        "elevenlabs_document_id": document.elevenlabs_document_id,
        "sync_error_type": document.sync_error_type.value if document.sync_error_type else None,
        "sync_error_message": document.sync_error_message,
        "last_sync_attempt": iso(document.last_sync_attempt),
        "sync_retry_count": document.sync_retry_count,
    }


def status_json(
    counts: Mapping[SyncStatus, int],
    failed: Sequence[Document],
    rag: Mapping[str, int] | None = None,
) -> dict[str, Any]:
    """The JSON of `status` (`rag` only with KBSYNC_RAG)."""
    payload: dict[str, Any] = {
        "counts": {status.value: counts.get(status, 0) for status in SyncStatus},
        "failed": [
            {
                "name": document.name,
                "sync_error_type": (
                    document.sync_error_type.value if document.sync_error_type else None
                ),
                "sync_error_message": document.sync_error_message,
                "last_sync_attempt": iso(document.last_sync_attempt),
                "sync_retry_count": document.sync_retry_count,
            }
            for document in failed
        ],
    }
    if rag is not None:
        payload["rag"] = dict(rag)
    return payload


def run_json(outcomes: Sequence[SyncOutcome], summary: Mapping[str, int]) -> dict[str, Any]:
    """The JSON of upload, sync and retry-failed."""
    return {"documents": [outcome_json(o) for o in outcomes], "summary": dict(summary)}


def render_agents(console: Console, changes: Sequence[AgentChange]) -> None:
    """One line per agent kept in step: what was added and removed, or why it failed."""
    for change in changes:
        if change.error is not None:
            line = f"agent {change.agent_id}: not updated: {change.error.message}"
            console.print(line, style="red", markup=False, highlight=False, soft_wrap=True)
            continue
        line = f"agent {change.agent_id}: {len(change.added)} added, {len(change.removed)} removed"
        console.print(line, markup=False, highlight=False, soft_wrap=True)


def agent_json(change: AgentChange) -> dict[str, Any]:
    """One entry of `agents` in the JSON of a run."""
    return {
        "agent_id": change.agent_id,
        "added": change.added,
        "removed": change.removed,
        "error_message": change.error.message if change.error else None,
    }


def render_prune(console: Console, result: PruneResult) -> None:
    """`kbsync prune`: one line per orphaned document, then a summary."""
    for item in result.items:
        line = f"{item.action.value:<12} {item.name}  {item.id}"
        if item.reason:
            line += f"  ({item.reason})"
        console.print(line, markup=False, highlight=False, soft_wrap=True)
    counts = Counter(item.action.value for item in result.items)
    summary = ", ".join(f"{count} {action}" for action, count in sorted(counts.items()))
    console.print(summary or "Nothing to prune.", markup=False, highlight=False)


def prune_json(result: PruneResult) -> dict[str, Any]:
    """The JSON of `prune`."""
    from kbsync.prune import PruneAction  # noqa: PLC0415  keeps tenacity out of list/status

    counts = Counter(item.action.value for item in result.items)
    return {
        "documents": [
            {
                "name": item.name,
                "elevenlabs_document_id": item.id,
                "action": item.action.value,
                "reason": item.reason,
            }
            for item in result.items
        ],
        "summary": {action.value: counts.get(action.value, 0) for action in PruneAction},
    }
