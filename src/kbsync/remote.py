"""The ElevenLabs knowledge base behind the `KnowledgeBase` Protocol, through the official SDK.

The only module that imports `elevenlabs` or `httpx`: every failure leaves it as a classified
`RemoteError`, so nothing above it depends on the SDK's or the HTTP library's exceptions.
"""

from __future__ import annotations

import email.utils
import functools
import http
import json
import math
import re
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final, TypeVar, cast

import httpx
from elevenlabs.client import ElevenLabs
from elevenlabs.conversational_ai.knowledge_base.client import KnowledgeBaseClient
from elevenlabs.conversational_ai.knowledge_base.documents.client import DocumentsClient
from elevenlabs.core.api_error import ApiError
from elevenlabs.core.parse_error import ParsingError
from elevenlabs.core.request_options import RequestOptions

from kbsync.errors import RemoteError, RemoteNotFound
from kbsync.interfaces import AgentDocument, RemoteDocument
from kbsync.models import MAX_ERROR_MESSAGE, ErrorType

if TYPE_CHECKING:
    # Only named for mypy: importing the agents client costs about half a second, so it is
    # loaded (by the SDK itself) the first time an agent is read or written.
    from elevenlabs.conversational_ai.agents.client import AgentsClient
    from elevenlabs.conversational_ai.knowledge_base.document.client import DocumentClient
    from elevenlabs.types import ConversationalConfig

__all__ = [
    "DEFAULT_BASE_URL",
    "MUTATING_OPERATIONS",
    "PAGE_SIZE",
    "ElevenLabsKB",
    "classify",
    "parse_retry_after",
]

DEFAULT_BASE_URL: Final = "https://api.elevenlabs.io"
PAGE_SIZE: Final = 100
"""The largest page the list endpoint serves: fewest round trips for a full scan."""

MUTATING_OPERATIONS: Final = frozenset(
    {"create", "update", "delete", "set_agent_documents", "compute_rag_index"}
)
"""Operations that change something at ElevenLabs: only these can leave an outcome in doubt."""
_NOT_FOUND_SUBJECTS: Final[Mapping[str, str]] = {
    "update": "document",
    "get_content": "document",
    "delete": "document",
    "dependent_agents": "document",
    "compute_rag_index": "document",
    "list_folder": "folder",
    "folder_exists": "folder",
    "agent_documents": "agent",
    "set_agent_documents": "agent",
}
"""Operations on something kbsync names by id, and what: a 404 there means it does not exist
(`RemoteNotFound`). Elsewhere a 404 is more likely a wrong base URL."""

_T = TypeVar("_T")


class ElevenLabsKB:
    """`KnowledgeBase` over the ElevenLabs SDK, with the SDK's own retries off.

    The caller (the sync engine) owns retrying: one method call is exactly one HTTP request per
    page, so attempts never multiply. Safe to share between threads (one httpx connection pool).
    """

    def __init__(
        self, api_key: str, base_url: str = DEFAULT_BASE_URL, timeout: float = 30.0
    ) -> None:
        self._api_key = api_key
        self._base_url = base_url.rstrip("/")
        self._timeout = timeout
        # api_key is always explicit: the SDK's default reads the environment at import time.
        self._client = ElevenLabs(api_key=api_key, base_url=self._base_url, timeout=timeout)
        # The SDK's lazy sub-client properties are untyped: name the types so mypy checks calls.
        self._kb: KnowledgeBaseClient = self._client.conversational_ai.knowledge_base
        self._documents: DocumentsClient = self._kb.documents
        self._document: DocumentClient = self._kb.document
        # The SDK types timeout_in_seconds as int, but hands it to httpx, which takes a float.
        self._options = cast(RequestOptions, {"max_retries": 0, "timeout_in_seconds": timeout})

    def __repr__(self) -> str:
        return f"ElevenLabsKB(base_url={self._base_url!r}, timeout={self._timeout!r})"

    @property
    def _agents(self) -> AgentsClient:
        """The SDK's agents client, imported (by the SDK) on first use."""
        return cast("AgentsClient", self._client.conversational_ai.agents)

    def create(self, name: str, text: str, folder_id: str | None = None) -> str:
        """Create a text document (inside `folder_id` when given); returns its id."""
        request = functools.partial(
            self._documents.create_from_text, text=text, name=name, request_options=self._options
        )
        if folder_id is not None:  # otherwise not even a null parent_folder_id: the root
            request = functools.partial(request, parent_folder_id=folder_id)
        response = self._call("create", request)
        document_id = getattr(response, "id", None)
        if not isinstance(document_id, str) or not document_id:
            # It answered 2xx, so the document may exist: the engine must look before re-creating.
            raise RemoteError(
                ErrorType.UNKNOWN,
                "ElevenLabs accepted the document but its answer held no document id",
                ambiguous=True,
            )
        return document_id

    def update(self, document_id: str, name: str, text: str) -> None:
        """Replace a text document's content in place (same id); `RemoteNotFound` if gone."""
        self._call(
            "update",
            lambda: self._documents.update(
                document_id, name=name, content=text, request_options=self._options
            ),
        )

    def get_content(self, document_id: str) -> str:
        """The text a document holds."""
        return self._call(
            "get_content",
            lambda: self._documents.get_content(document_id, request_options=self._options),
        )

    def find_by_name(self, name: str) -> list[RemoteDocument]:
        """Every document with exactly this name, over the full (paged) listing.

        The list endpoint's `search` filter is not trusted to return every match, so this scans
        everything and compares names exactly.
        """
        return [doc for doc in self._pages("find_by_name") if doc.name == name]

    def list_documents(self) -> Iterator[RemoteDocument]:
        """Every document in the knowledge base (folders excluded), page by page."""
        return self._pages("list")

    def delete(self, document_id: str, force: bool = False) -> None:
        """Delete a document; `force` also removes it from agents that use it.

        `RemoteNotFound` when it is already gone. Without `force`, ElevenLabs refuses to delete
        a document an agent uses (an HTTP error, classified like any other).
        """
        self._call(
            "delete",
            lambda: self._documents.delete(document_id, force=force, request_options=self._options),
        )

    def dependent_agents(self, document_id: str) -> list[str]:
        """Ids (or names, where the API gives no id) of the agents that use a document.

        Every page of `GET .../{id}/dependent-agents`; `RemoteNotFound` if the document is gone.
        """
        agents: list[str] = []
        items = self._follow(
            "dependent_agents",
            "agents",
            lambda cursor: self._documents.get_agents(
                document_id, page_size=PAGE_SIZE, cursor=cursor, request_options=self._options
            ),
        )
        for item in items:
            ident = _field(item, "id")
            if not isinstance(ident, str) or not ident:
                ident = _field(item, "name")
            if isinstance(ident, str) and ident and ident not in agents:
                agents.append(ident)
        return agents

    def list_folder(self, folder_id: str) -> Iterator[RemoteDocument]:
        """Every document directly inside a folder, page by page (folders left out)."""
        return self._pages("list_folder", parent_folder_id=folder_id)

    def folder_exists(self, folder_id: str) -> bool:
        """True when `folder_id` is a knowledge-base folder; False when there is no such thing
        (or it is a document, not a folder)."""
        try:
            entry = self._call(
                "folder_exists",
                lambda: self._documents.get(folder_id, request_options=self._options),
            )
        except RemoteNotFound:
            return False
        return bool(_field(entry, "type") == "folder")

    def check_key(self) -> None:
        """One cheap request that needs a valid key (a one-item listing); `RemoteError`
        (auth_error) if ElevenLabs refuses the key."""
        self._call(
            "check_key",
            lambda: self._kb.list(page_size=1, request_options=self._options),
        )

    def agent_documents(self, agent_id: str) -> list[AgentDocument]:
        """The knowledge base of an agent (`conversation_config.agent.prompt.knowledge_base`);
        `RemoteNotFound` when there is no such agent. Missing parts read as an empty list."""
        agent = self._call(
            "agent_documents",
            lambda: self._agents.get(agent_id, request_options=self._options),
        )
        node: Any = agent
        for name in ("conversation_config", "agent", "prompt", "knowledge_base"):
            node = _field(node, name)
        documents: list[AgentDocument] = []
        for item in node if isinstance(node, list | tuple) else []:
            doc_id, name, kind, usage = (
                _field(item, key) for key in ("id", "name", "type", "usage_mode")
            )
            if not isinstance(doc_id, str) or not doc_id:
                continue
            documents.append(
                AgentDocument(
                    id=doc_id,
                    name=name if isinstance(name, str) else "",
                    type=kind if isinstance(kind, str) and kind else "text",
                    usage_mode=usage if isinstance(usage, str) and usage else "auto",
                )
            )
        return documents

    def set_agent_documents(self, agent_id: str, documents: list[AgentDocument]) -> None:
        """Write an agent's whole knowledge-base list back.

        Only `conversation_config.agent.prompt.knowledge_base` is sent: ElevenLabs merges a
        partial `conversation_config` into the agent, and the list replaces the old one.
        `RemoteNotFound` when there is no such agent.
        """
        locators = [
            {"type": doc.type, "name": doc.name, "id": doc.id, "usage_mode": doc.usage_mode}
            for doc in documents
        ]
        # The SDK takes a plain dict here as well as its model, and sends exactly these keys.
        config = cast("ConversationalConfig", {"agent": {"prompt": {"knowledge_base": locators}}})
        self._call(
            "set_agent_documents",
            lambda: self._agents.update(
                agent_id, conversation_config=config, request_options=self._options
            ),
        )

    def compute_rag_index(self, document_id: str, model: str) -> str:
        """Start RAG indexing of a document with `model` (or read how far it got); returns the
        status in lower case (`created`, `processing`, `succeeded`, `failed`,
        `rag_limit_exceeded`, `document_too_small`, ...)."""
        response = self._call(
            "compute_rag_index",
            lambda: self._document.compute_rag_index(
                document_id, model=model, request_options=self._options
            ),
        )
        status = _field(response, "status")
        if not isinstance(status, str) or not status.strip():
            raise RemoteError(
                ErrorType.UNKNOWN,
                "ElevenLabs answered the RAG index request without a status",
                ambiguous=True,
            )
        return status.strip().lower()

    def _pages(
        self, operation: str, parent_folder_id: str | None = None
    ) -> Iterator[RemoteDocument]:
        """Every document of the listing (folders left out), page by page."""

        def fetch(cursor: str | None) -> Any:
            if parent_folder_id is None:
                return self._kb.list(
                    page_size=PAGE_SIZE, cursor=cursor, request_options=self._options
                )
            return self._kb.list(
                page_size=PAGE_SIZE,
                cursor=cursor,
                parent_folder_id=parent_folder_id,
                request_options=self._options,
            )

        for item in self._follow(operation, "documents", fetch):
            doc_id = _field(item, "id")
            doc_name = _field(item, "name")
            if _field(item, "type") == "folder" or not isinstance(doc_id, str):
                continue
            yield RemoteDocument(
                id=doc_id,
                name=doc_name if isinstance(doc_name, str) else "",
                created_at=_created_at(item),
            )

    def _follow(
        self, operation: str, items: str, fetch: Callable[[str | None], Any]
    ) -> Iterator[Any]:
        """The `items` of every page: follow `next_cursor` until `has_more` is false; a cursor
        seen twice is an error."""
        cursor: str | None = None
        seen: set[str] = set()
        while True:
            page = self._call(operation, functools.partial(fetch, cursor))
            # The SDK does not validate responses: read them as if fields may be missing.
            yield from _field(page, items) or []
            if not _field(page, "has_more"):
                return
            cursor = _field(page, "next_cursor")
            if not isinstance(cursor, str) or not cursor or cursor in seen:
                raise RemoteError(
                    ErrorType.UNKNOWN,
                    f"ElevenLabs said more {items} follow but gave no new cursor to fetch them",
                )
            seen.add(cursor)

    def _call(self, operation: str, request: Callable[[], _T]) -> _T:
        """Run one SDK request; any failure leaves as a classified `RemoteError`."""
        try:
            return request()
        except Exception as exc:
            raise classify(
                exc,
                operation=operation,
                base_url=self._base_url,
                timeout=self._timeout,
                api_key=self._api_key,
            ) from exc


def _field(obj: Any, name: str) -> Any:
    """A field of an SDK response object (or of a plain dict), None when missing."""
    if isinstance(obj, Mapping):
        return obj.get(name)
    return getattr(obj, name, None)


def _created_at(item: Any) -> datetime | None:
    """`metadata.created_at_unix_secs` as an aware UTC datetime, None when absent or absurd."""
    seconds = _field(_field(item, "metadata"), "created_at_unix_secs")
    if isinstance(seconds, bool) or not isinstance(seconds, int | float):
        return None
    try:
        return datetime.fromtimestamp(seconds, tz=UTC)
    except (OverflowError, OSError, ValueError):
        return None


# --- classification ---------------------------------------------------------------------------


def classify(
    exc: Exception,
    *,
    operation: str,
    base_url: str | None = None,
    timeout: float | None = None,
    api_key: str | None = None,
) -> RemoteError:
    """Map an SDK or httpx exception to a `RemoteError`, from status code and type only.

    Pure: `base_url` and `timeout` only enrich the message, and `api_key` is redacted from it.
    `operation` is the `ElevenLabsKB` method that failed: create, update, get_content, delete,
    list, find_by_name, dependent_agents, list_folder, folder_exists, check_key,
    agent_documents, set_agent_documents, compute_rag_index. A 404 on one that names something
    by id (see `_NOT_FOUND_SUBJECTS`) is `RemoteNotFound`; `MUTATING_OPERATIONS` may be ambiguous.
    """
    mutating = operation in MUTATING_OPERATIONS
    if isinstance(exc, ApiError):
        return _classify_status(exc, operation, api_key)
    if isinstance(exc, ParsingError):
        return RemoteError(
            ErrorType.UNKNOWN,
            f"ElevenLabs answered {exc.status_code} with a response kbsync could not read",
            status_code=exc.status_code,
            ambiguous=mutating,
        )
    if isinstance(exc, httpx.TransportError):
        return _classify_transport(exc, mutating, base_url, timeout, api_key)
    return RemoteError(
        ErrorType.UNKNOWN,
        f"Unexpected error talking to ElevenLabs ({type(exc).__name__}): {_text(exc, api_key)}",
        ambiguous=mutating,
    )


def _classify_status(exc: ApiError, operation: str, secret: str | None) -> RemoteError:
    """An HTTP error answer: the status decides the type, the body only the message."""
    status = exc.status_code
    code, detail = _describe_body(exc.body, secret)
    shown = f"{status if status is not None else 'without a status code'}"
    shown += f" ({code})" if code else ""
    text = detail or _reason(status)
    cls: type[RemoteError] = RemoteError
    ambiguous = False
    message = f"ElevenLabs answered {shown}: {text}"
    if status == 429:
        error_type = ErrorType.RATE_LIMIT
    elif status in (401, 403):
        error_type = ErrorType.AUTH_ERROR
        verb = "rejected the API key" if status == 401 else "refused access with this API key"
        message = f"ElevenLabs {verb} ({status}): {text}"
    elif status in (400, 413, 422):
        error_type = ErrorType.VALIDATION
    elif status == 404 and operation in _NOT_FOUND_SUBJECTS:
        cls, error_type = RemoteNotFound, ErrorType.VALIDATION
        message = f"ElevenLabs has no such {_NOT_FOUND_SUBJECTS[operation]} (404): {text}"
    elif status == 404:
        error_type = ErrorType.VALIDATION if operation == "create" else ErrorType.UNKNOWN
        if not code:  # the API's own 404s carry a code (e.g. folder_not_found); a bad route not
            message += " (is the base URL right? It is the API's root, without /v1)"
    elif status == 408:
        error_type = ErrorType.NETWORK
        message = f"ElevenLabs timed out waiting for the request (408): {text}"
    elif status is not None and 500 <= status <= 599:
        error_type = ErrorType.SERVER_ERROR
        ambiguous = operation in MUTATING_OPERATIONS
    else:
        error_type = ErrorType.UNKNOWN
        # Not an error status (e.g. a 2xx whose body did not parse): it may well have been done.
        ambiguous = operation in MUTATING_OPERATIONS and (status is None or status < 400)
    return cls(
        error_type,
        message,
        status_code=status,
        retry_after=parse_retry_after(exc.headers),
        ambiguous=ambiguous,
        still_running=ambiguous and status in (502, 504),
        code=code,
    )


_SENT_NOTHING: Final = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.PoolTimeout,
    httpx.ProxyError,
)
"""Transport failures raised before the request reached ElevenLabs: never in doubt."""


def _classify_transport(
    exc: httpx.TransportError,
    mutating: bool,
    base_url: str | None,
    timeout: float | None,
    secret: str | None,
) -> RemoteError:
    """A transport failure: `network`, except where kbsync itself could not form the request."""
    name = type(exc).__name__
    where = _origin(exc) or (_redact(base_url, secret) if base_url else "its API")
    if isinstance(exc, httpx.UnsupportedProtocol):
        return RemoteError(
            ErrorType.UNKNOWN,
            f"Cannot talk to ElevenLabs at {where}: {_text(exc, secret)} ({name})",
        )
    if isinstance(exc, httpx.LocalProtocolError):
        # e.g. an API key holding a newline: h11 refuses to send it, and its message shows the key.
        return RemoteError(
            ErrorType.UNKNOWN,
            f"kbsync could not send the request to ElevenLabs: {_text(exc, secret)} ({name})",
        )
    ambiguous = mutating and not isinstance(exc, _SENT_NOTHING)
    if isinstance(exc, httpx.TimeoutException):
        seconds = timeout if timeout is not None else _timeout_of(exc)
        within = f" within {seconds:g} s" if seconds is not None else ""
        if isinstance(exc, httpx.ConnectTimeout):
            message = f"Could not connect to ElevenLabs at {where}{within} ({name})"
        elif isinstance(exc, httpx.WriteTimeout):
            message = f"Could not send the request to ElevenLabs at {where}{within} ({name})"
        elif isinstance(exc, httpx.PoolTimeout):
            message = f"No free connection to ElevenLabs{within} ({name})"
        else:
            message = f"No answer from ElevenLabs{within} ({name})"
    else:
        message = f"Network error talking to ElevenLabs at {where}: {_text(exc, secret)} ({name})"
    still_running = ambiguous and isinstance(exc, httpx.TimeoutException)
    return RemoteError(ErrorType.NETWORK, message, ambiguous=ambiguous, still_running=still_running)


def parse_retry_after(headers: Mapping[str, str] | None, now: float | None = None) -> float | None:
    """Seconds to wait from `retry-after-ms` or `retry-after` (seconds or HTTP date), else None.

    `now` (epoch seconds) exists for tests of the HTTP-date form.
    """
    lowered = {str(key).lower(): str(value).strip() for key, value in (headers or {}).items()}
    millis = _number(lowered.get("retry-after-ms"))
    if millis is not None:
        return millis / 1000.0
    value = lowered.get("retry-after", "")
    seconds = _number(value)
    if seconds is not None or not value:
        return seconds
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # "-0000": no zone given, though HTTP dates are GMT: refuse
        return None
    current = time.time() if now is None else now
    return max(0.0, when.timestamp() - current)


def _number(value: str | None) -> float | None:
    """A finite, non-negative number, or None."""
    if value is None:
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) and number >= 0 else None


# --- readable messages ------------------------------------------------------------------------

_HTML: Final = re.compile(r"^\s*<|<\s*(html|body|head|!doctype)\b", re.IGNORECASE)
_SPACE: Final = re.compile(r"\s+")
_ERRNO: Final = re.compile(r"^\[Errno -?\d+\]\s*")
_DETAIL_CAP: Final = MAX_ERROR_MESSAGE - 200
"""Room left for the words kbsync puts around the server's own message."""
_CODE_CAP: Final = 80


def _describe_body(body: Any, secret: str | None) -> tuple[str | None, str | None]:
    """(code, message) from an error body of any of the shapes ElevenLabs and proxies send."""
    if isinstance(body, bytes | bytearray):
        body = bytes(body).decode("utf-8", errors="replace")
    if isinstance(body, str):
        return None, _plain(body, secret)
    if isinstance(body, Mapping):
        detail = body.get("detail", body)
        if isinstance(detail, str):
            return None, _plain(detail, secret)
        if isinstance(detail, list):
            problems = "; ".join(_validation_item(item) for item in detail)
            return None, _clip(problems, secret) or None
        if isinstance(detail, Mapping):
            code = _first_str(detail, "code", "status", "type")
            message = _first_str(detail, "message", "msg", "error")
            return (
                _clip(code, secret, _CODE_CAP) if code else None,
                _clip(message, secret) if message else _json(detail, secret),
            )
    if body is None:
        return None, None
    return None, _json(body, secret)


def _validation_item(item: Any) -> str:
    """One FastAPI-style validation problem as `body.text: Field required`."""
    if not isinstance(item, Mapping):
        return str(item)
    loc = item.get("loc")
    where = ".".join(str(part) for part in loc) if isinstance(loc, list | tuple) else None
    msg = item.get("msg") or item.get("message") or item.get("type") or "invalid"
    return f"{where}: {msg}" if where else str(msg)


def _first_str(mapping: Mapping[Any, Any], *keys: str) -> str | None:
    """The first of `keys` that holds a non-empty string."""
    for key in keys:
        value = mapping.get(key)
        if isinstance(value, str) and value.strip():
            return value
    return None


def _plain(text: str, secret: str | None) -> str | None:
    """Readable text, or None for HTML (a proxy's error page) and blank bodies."""
    if _HTML.search(text):
        return None
    return _clip(text, secret) or None


def _json(value: Any, secret: str | None) -> str | None:
    """A compact one-line rendering of an unexpected JSON value."""
    try:
        rendered = json.dumps(value, ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        rendered = str(value)
    return _clip(rendered, secret) or None


def _text(exc: BaseException, secret: str | None) -> str:
    """An exception's own words, tidied (`[Errno 111] Connection refused`: `connection refused`)."""
    text = _clip(_ERRNO.sub("", str(exc)), secret)
    if len(text) > 1 and text[0].isupper() and text[1].islower():
        text = text[0].lower() + text[1:]
    return text or "no details"


def _clip(text: str, secret: str | None, cap: int = _DETAIL_CAP) -> str:
    """One line, the API key redacted first, then at most `cap` characters."""
    text = _SPACE.sub(" ", _redact(text, secret)).strip()
    return text if len(text) <= cap else text[: cap - 1] + "…"


def _redact(text: str, secret: str | None) -> str:
    """Replace the API key with `***`, also in its repr and JSON forms (h11 shows a bytes repr)."""
    if not secret:
        return text
    forms = {
        secret,
        repr(secret)[1:-1],
        repr(secret.encode("utf-8", errors="backslashreplace"))[2:-1],
        json.dumps(secret)[1:-1],
    }
    for form in sorted(forms, key=len, reverse=True):
        if form:
            text = text.replace(form, "***")
    return text


def _reason(status: int | None) -> str:
    """The standard phrase for a status code (what a proxy's HTML page says anyway)."""
    if status is None:
        return "no details"
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return "HTTP error"


def _origin(exc: httpx.TransportError) -> str | None:
    """`scheme://host:port` of the failed request (no path, no credentials), if known."""
    try:
        url = exc.request.url
    except RuntimeError:  # httpx raises this when the exception carries no request
        return None
    if not url.scheme or not url.host:
        return None
    host = f"[{url.host}]" if ":" in url.host else url.host
    return f"{url.scheme}://{host}" + (f":{url.port}" if url.port is not None else "")


_TIMEOUT_KEYS: Final = {
    httpx.ConnectTimeout: "connect",
    httpx.ReadTimeout: "read",
    httpx.WriteTimeout: "write",
    httpx.PoolTimeout: "pool",
}


def _timeout_of(exc: httpx.TimeoutException) -> float | None:
    """The timeout httpx applied, read from the request, when the caller did not say."""
    try:
        timeouts = exc.request.extensions.get("timeout")
    except RuntimeError:
        return None
    if not isinstance(timeouts, dict):
        return None
    value = timeouts.get(_TIMEOUT_KEYS.get(type(exc), "read"))
    return float(value) if isinstance(value, int | float) else None
