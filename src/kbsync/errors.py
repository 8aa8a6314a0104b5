"""kbsync's exceptions: one base class, each subclass carrying the exit code it ends with.

`cli.py` is the only place that turns these into a message and an exit code.
"""

from __future__ import annotations

from dataclasses import dataclass

from kbsync.models import MAX_ERROR_MESSAGE, ErrorType


class ExitCode:
    """The exit codes of the contract."""

    OK = 0
    FAILED = 1
    USAGE = 2
    ENVIRONMENT = 3
    INTERRUPTED = 130


class KbsyncError(Exception):
    """An error the user should see as one readable message and an exit code."""

    exit_code: int = ExitCode.FAILED

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


@dataclass(frozen=True)
class InputProblem:
    """One bad input: the path (or argument) and what is wrong with it."""

    path: str
    reason: str


class InputError(KbsyncError):
    """One or more inputs are bad; nothing was written (exit 2)."""

    exit_code = ExitCode.USAGE

    def __init__(self, problems: list[InputProblem]) -> None:
        super().__init__(f"{len(problems)} input problem(s); nothing was written")
        self.problems = problems


class UsageError(KbsyncError):
    """The command was called wrongly (exit 2)."""

    exit_code = ExitCode.USAGE


class ConfigError(KbsyncError):
    """The configuration is missing or invalid (exit 3)."""

    exit_code = ExitCode.ENVIRONMENT


class StoreUnavailable(KbsyncError):
    """Firestore cannot be reached or refused us (exit 3)."""

    exit_code = ExitCode.ENVIRONMENT


class RemoteError(Exception):
    """A failed request to the knowledge base, classified for the contract.

    Raised by the knowledge-base adapter for every failure, so that nothing above it sees the
    SDK's or the HTTP library's exceptions.
    """

    def __init__(
        self,
        error_type: ErrorType,
        message: str,
        *,
        status_code: int | None = None,
        retry_after: float | None = None,
        ambiguous: bool = False,
        still_running: bool = False,
        code: str | None = None,
    ) -> None:
        message = message[:MAX_ERROR_MESSAGE]
        super().__init__(message)
        self.error_type = error_type
        self.message = message
        self.status_code = status_code
        self.retry_after = retry_after
        """Seconds the server asked us to wait (Retry-After), if it said."""
        self.ambiguous = ambiguous
        """The request may have been carried out although it failed (e.g. a dropped response)."""
        self.still_running = still_running
        """Ambiguous, and the server may still be working on it: kbsync stopped waiting (a
        timeout) or a gateway did (502, 504). A look right away may not find it yet."""
        self.code = code
        """The API's own error code, when it gave one (e.g. `concurrent_limit_exceeded`)."""

    @property
    def transient(self) -> bool:
        """True when the same request may succeed if tried again."""
        return self.error_type.transient

    @property
    def over_concurrency_limit(self) -> bool:
        """A 429 for too many requests at once: nothing was done; send fewer at a time."""
        return self.status_code == 429 and self.code in CONCURRENCY_LIMIT_CODES


CONCURRENCY_LIMIT_CODES = frozenset({"concurrent_limit_exceeded", "too_many_concurrent_requests"})
"""The codes ElevenLabs gives a 429 that is about requests in flight, not requests per time."""


class RemoteNotFound(RemoteError):
    """The knowledge-base document does not exist (404 on a document that kbsync knew)."""
