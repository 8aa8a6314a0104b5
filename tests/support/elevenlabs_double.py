"""A local double of the ElevenLabs knowledge-base API, for tests and demos.

It is a real HTTP server on loopback that speaks the paths and JSON shapes of the real API
(documents, folders, dependent agents, RAG indexing, and the knowledge-base part of agents), so
kbsync's adapter is exercised through the official SDK and httpx exactly as in production. The
real service cannot be made to fail on cue, so this double injects the failures kbsync must
survive: error statuses, dropped connections, timeouts, writes that commit but are never answered,
and concurrency limits. Standard library only, so it runs anywhere the tests run.

Run it for a demo with ``python -m tests.support.elevenlabs_double --port 8765 --api-key demo-key``.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import email.message
import email.utils
import fnmatch
import json
import random
import signal
import socket
import socketserver
import string
import sys
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType, TracebackType
from typing import Any, Final, Literal, Self
from urllib.parse import parse_qs, urlsplit

__all__ = [
    "AGENTS_PATH",
    "DEFAULT_RANDOM_FAULT_KINDS",
    "KB_PATH",
    "RAG_MIN_BYTES",
    "RAG_MODELS",
    "ElevenLabsDouble",
    "Fault",
    "Hold",
    "RequestRecord",
    "StoredDocument",
    "StoredFolder",
    "default_error_body",
    "main",
]

KB_PATH: Final = "/v1/convai/knowledge-base"
"""Root of every knowledge-base endpoint the double serves."""
AGENTS_PATH: Final = "/v1/convai/agents"
"""Root of the agent endpoints the double serves (``GET``/``PATCH .../{agent_id}``)."""
RAG_MODELS: Final = ("e5_mistral_7b_instruct", "multilingual_e5_large_instruct")
"""The embedding models `POST .../{id}/rag-index` accepts (the SDK's EmbeddingModelEnum)."""
RAG_MIN_BYTES: Final = 500
"""Documents smaller than this are not RAG-indexed (``document_too_small``)."""

DEFAULT_RANDOM_FAULT_KINDS: Final = ("429", "500", "503", "drop", "commit_then_drop")
DEFAULT_HOLD_TIMEOUT: Final = 30.0
DEFAULT_PAGE_SIZE: Final = 30
MAX_PAGE_SIZE: Final = 100
_ID_ALPHABET: Final = string.ascii_letters + string.digits
_ID_LENGTH: Final = 20
_AGENT_ID_ALPHABET: Final = string.ascii_lowercase + string.digits
_AGENT_ID_LENGTH: Final = 26
_IDLE_CONNECTION_TIMEOUT: Final = 60.0
_FIXED_SEGMENTS: Final = frozenset({"text", "file", "folder"})

# The SDK requires access_info on every document; these are plausible values for the caller's own.
_ACCESS_INFO: Final[Mapping[str, Any]] = {
    "is_creator": True,
    "creator_name": "kbsync double",
    "creator_email": "double@kbsync.invalid",
    "role": "admin",
    "access_source": "creator",
}
_SUPPORTED_USAGES: Final = ("prompt", "auto")
_LOCATOR_TYPES: Final = ("file", "url", "text", "folder")
_RAG_PROGRESS: Final[Mapping[str, float]] = {"created": 0.0, "processing": 50.0, "succeeded": 100.0}

FaultKind = Literal["status", "drop", "slow", "commit_then_drop", "commit_then_status"]
Headers = tuple[tuple[str, str], ...]


# --------------------------------------------------------------------------------------------
# Public value types


@dataclass(frozen=True)
class Fault:
    """One injected failure; build with the class methods, not the constructor."""

    kind: FaultKind
    code: int | None = None
    headers: Headers = ()
    body: Any = field(default=None, hash=False)
    """JSON-able object, or str/bytes sent as is; None means the default body for `code`."""
    seconds: float = 0.0

    @classmethod
    def status(cls, code: int, headers: Mapping[str, str] | None = None, body: Any = None) -> Fault:
        """Answer `code` instead of processing the request (nothing is written)."""
        return cls("status", code=code, headers=_freeze_headers(headers), body=body)

    @classmethod
    def drop(cls) -> Fault:
        """Close the connection without any response and without processing."""
        return cls("drop")

    @classmethod
    def slow(cls, seconds: float) -> Fault:
        """Sleep, then process normally: beyond the client's timeout it is a timeout."""
        return cls("slow", seconds=seconds)

    @classmethod
    def commit_then_drop(cls) -> Fault:
        """Process the request (the write happens), then close without responding."""
        return cls("commit_then_drop")

    @classmethod
    def commit_then_status(
        cls, code: int, headers: Mapping[str, str] | None = None, body: Any = None
    ) -> Fault:
        """Process the request (the write happens), then answer `code` instead."""
        return cls("commit_then_status", code=code, headers=_freeze_headers(headers), body=body)

    @property
    def label(self) -> str:
        """Short name recorded in `RequestRecord.fault`, e.g. ``status:503`` or ``drop``."""
        if self.kind in ("status", "commit_then_status"):
            return f"{self.kind}:{self.code}"
        if self.kind == "slow":
            return f"slow:{self.seconds:g}"
        return self.kind


@dataclass(frozen=True)
class StoredDocument:
    """A document as the double holds it; snapshots, replaced (never mutated) on update."""

    id: str
    name: str
    text: str
    created_at: float
    updated_at: float
    type: Literal["text", "file"] = "text"
    """``file`` for documents created through ``POST .../file``."""
    filename: str | None = None
    folder_id: str | None = None
    """The folder the document lives in (``parent_folder_id`` at creation); None: the root."""


@dataclass(frozen=True)
class StoredFolder:
    """A knowledge-base folder as the double holds it; folders share the documents' id space."""

    id: str
    name: str
    created_at: float
    updated_at: float
    folder_id: str | None = None
    """The folder this one lives in; None: the root."""
    type: Literal["folder"] = "folder"


_Entry = StoredDocument | StoredFolder


@dataclass(frozen=True)
class RequestRecord:
    """One request the double received, in arrival order.

    `status` is None while the request is in flight and when the connection was dropped.
    `fault` is the injected fault's label (see `Fault.label`), ``concurrency_cap`` for a
    rejection by the concurrency cap, or None.
    """

    method: str
    path: str
    status: int | None
    fault: str | None
    query: str = ""
    body: bytes = field(default=b"", repr=False)


class Hold:
    """Parks the next matching request before it is processed, until released."""

    def __init__(self, method: str, path: str, timeout: float) -> None:
        self.method = method.upper()
        self.path = path
        self.timeout = timeout
        self.arrived = threading.Event()
        """Set when the held request has arrived and is waiting."""
        self._released = threading.Event()
        self._taken = False

    def release(self) -> None:
        """Let the held request (or the next one to arrive) proceed."""
        self._released.set()

    @property
    def released(self) -> bool:
        """True once `release` was called."""
        return self._released.is_set()

    def _park(self) -> None:
        self.arrived.set()
        self._released.wait(self.timeout)


# --------------------------------------------------------------------------------------------
# Internals


@dataclass(frozen=True)
class _Reply:
    status: int
    body: bytes
    content_type: str = "application/json"
    headers: Headers = ()


class _ValidationError(Exception):
    """A request the real API would reject with 422."""

    def __init__(self, loc: Sequence[str | int], msg: str, kind: str) -> None:
        super().__init__(msg)
        self.detail = [{"loc": list(loc), "msg": msg, "type": kind}]


@dataclass
class _Ticket:
    """What admission decided for one request."""

    method: str
    path: str
    generation: int
    index: int
    request_id: str
    in_flight: int
    cap: int | None
    over_cap: bool
    fault: Fault | None
    completed: bool = False


@dataclass
class _RandomFaults:
    rate: float
    kinds: tuple[str, ...]
    rng: random.Random


def _freeze_headers(headers: Mapping[str, str] | None) -> Headers:
    return tuple((str(k), str(v)) for k, v in (headers or {}).items())


def _json_bytes(payload: Any) -> bytes:
    return json.dumps(payload, ensure_ascii=False).encode("utf-8")


def _json_reply(status: int, payload: Any, headers: Headers = ()) -> _Reply:
    return _Reply(status, _json_bytes(payload), "application/json", headers)


def _body_reply(status: int, body: Any, headers: Headers = ()) -> _Reply:
    """A reply whose body a test supplied: str/bytes go out verbatim, anything else as JSON."""
    if isinstance(body, bytes | str):
        raw = body.encode("utf-8") if isinstance(body, str) else body
        looks_html = raw.lstrip()[:1] == b"<"
        ctype = "text/html; charset=utf-8" if looks_html else "text/plain; charset=utf-8"
        return _Reply(status, raw, ctype, headers)
    return _json_reply(status, body, headers)


def default_error_body(code: int, request_id: str = "req_double") -> Any:
    """The body the real API sends with `code`, in its documented shapes."""
    if code == 401:
        return {"detail": {"status": "invalid_api_key", "message": "Invalid API key"}}
    if code == 422:
        return {"detail": [{"loc": ["body"], "msg": "Invalid request body", "type": "value_error"}]}
    if code == 429:
        return {
            "detail": {
                "type": "rate_limit_error",
                "code": "rate_limit_exceeded",
                "message": "Too many requests. Please slow down and try again.",
                "status": "rate_limit_exceeded",
                "request_id": request_id,
            }
        }
    try:
        phrase = HTTPStatus(code).phrase
    except ValueError:
        phrase = "Error"
    return {"detail": {"status": phrase.lower().replace(" ", "_"), "message": phrase}}


def _path_matches(pattern: str, path: str) -> bool:
    """Exact match, where a ``{name}`` segment of `pattern` matches any one segment.

    A wildcard does not match the fixed endpoint names (``text``, ``file``), so
    ``.../knowledge-base/{id}`` means documents and never ``POST .../knowledge-base/text``.
    """
    want = urlsplit(pattern).path.strip("/").split("/")
    got = path.strip("/").split("/")
    if len(want) != len(got):
        return False
    return all(
        w == g or (w.startswith("{") and w.endswith("}") and bool(g) and g not in _FIXED_SEGMENTS)
        for w, g in zip(want, got, strict=True)
    )


def _parse_fault_kind(kind: str) -> Fault:
    """Turn a random-fault kind (``"503"``, ``"drop"``, ``"commit_then_500"``...) into a Fault."""
    if kind.isdigit():
        return Fault.status(int(kind))
    if kind == "drop":
        return Fault.drop()
    if kind == "commit_then_drop":
        return Fault.commit_then_drop()
    prefix = "commit_then_"
    if kind.startswith(prefix) and kind.removeprefix(prefix).isdigit():
        return Fault.commit_then_status(int(kind.removeprefix(prefix)))
    raise ValueError(
        f"unknown random fault kind {kind!r}: use a status code such as '503', 'drop', "
        "'commit_then_drop' or 'commit_then_<code>'"
    )


def _form_param(header_value: str, param: str, header: str) -> str | None:
    """A parameter of a structured header (e.g. ``name=`` of Content-Disposition)."""
    message = email.message.Message()
    message[header] = header_value
    value = message.get_param(param, header=header)
    if value is None or isinstance(value, str):
        return value
    return email.utils.collapse_rfc2231_value(value)


def _parse_multipart(content_type: str, body: bytes) -> dict[str, tuple[str | None, bytes]]:
    """Form fields by name -> (filename or None, exact bytes). Raises _ValidationError."""
    boundary = _form_param(content_type, "boundary", "content-type")
    if not content_type.lower().startswith("multipart/form-data") or not boundary:
        raise _ValidationError(["body", "file"], "Field required", "missing")
    fields: dict[str, tuple[str | None, bytes]] = {}
    for chunk in body.split(b"--" + boundary.encode("latin-1"))[1:]:
        if chunk.startswith(b"--"):
            break
        head, _, content = chunk.removeprefix(b"\r\n").partition(b"\r\n\r\n")
        disposition = ""
        for line in head.decode("utf-8", "replace").split("\r\n"):
            key, _, value = line.partition(":")
            if key.strip().lower() == "content-disposition":
                disposition = value.strip()
        name = _form_param(disposition, "name", "content-disposition")
        if name is not None:
            filename = _form_param(disposition, "filename", "content-disposition")
            fields[name] = (filename, content.removesuffix(b"\r\n"))
    return fields


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body.decode("utf-8")) if body else None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _ValidationError(["body"], f"JSON decode error: {exc}", "json_invalid") from exc
    if not isinstance(data, dict):
        raise _ValidationError(["body"], "Input should be a valid dictionary", "dict_type")
    return data


def _optional_str(data: Mapping[str, Any], key: str, *, min_length: int = 0) -> str | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise _ValidationError(["body", key], "Input should be a valid string", "string_type")
    if len(value) < min_length:
        raise _ValidationError(
            ["body", key], f"String should have at least {min_length} character", "string_too_short"
        )
    return value


def _default_name(text: str) -> str:
    first_line = text.strip().splitlines()[0] if text.strip() else ""
    return first_line[:80] or "Untitled document"


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128  # the default 5 drops SYNs when many client threads connect at once

    def __init__(self, address: tuple[str, int], double: ElevenLabsDouble) -> None:
        self.double = double
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        """Bind without HTTPServer's reverse-DNS lookup, which can stall on some hosts."""
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Stay quiet when a client went away; report anything else (a bug in the double)."""
        if isinstance(sys.exc_info()[1], OSError):
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = _IDLE_CONNECTION_TIMEOUT
    # Headers and body go out in separate writes; with Nagle on, keep-alive clients wait ~40 ms
    # for a delayed ACK on every response.
    disable_nagle_algorithm = True
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.server.double._connection_opened(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.double._connection_closed(self.connection)

    def log_message(self, fmt: str, *args: Any) -> None:
        """No request logs: test output and the demo's stdout stay clean."""

    def _dispatch(self) -> None:
        self.server.double._serve(self)

    # http.server looks handlers up by these exact names.
    do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _dispatch  # noqa: N815


# --------------------------------------------------------------------------------------------
# The double


class ElevenLabsDouble:
    """An in-process HTTP server that behaves like the ElevenLabs knowledge-base API.

    Everything public is thread-safe: tests change keys, latency, scripts and holds while client
    threads are talking to it.
    """

    def __init__(
        self,
        api_keys: Iterable[str] | None = None,
        latency: float = 0.0,
        concurrency_cap: int | None = None,
        seed: int = 0,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.api_keys: set[str] = set(api_keys) if api_keys is not None else {"test-key"}
        """Accepted ``xi-api-key`` values; mutate freely at runtime."""
        self.latency = latency
        """Seconds every admitted request spends in flight before it is answered."""
        self.concurrency_cap = concurrency_cap
        """Requests in flight beyond this get 429 ``concurrent_limit_exceeded``; None: no cap."""
        self.seed = seed
        self._host = host
        self._port = port
        self._lock = threading.Lock()
        self._id_rng = random.Random(seed)
        # Agents draw their ids elsewhere, so adding agents never changes the document ids.
        self._agent_rng = random.Random(f"agents-{seed}")
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._connections: set[socket.socket] = set()
        self._in_flight = 0
        self._request_counter = 0
        self._generation = 0
        self.errors: list[str] = []
        """Tracebacks of bugs in the double itself (answered as 500); tests may assert empty."""
        self._forget()

    def _forget(self) -> None:
        """Reset scenario state; caller holds the lock (or is __init__)."""
        self._docs: dict[str, StoredDocument] = {}
        self._seqs: dict[str, int] = {}
        self._next_seq = 0
        self._scripts: list[tuple[str, str, deque[Fault]]] = []
        self._holds: list[Hold] = []
        self._requests: list[RequestRecord] = []
        self._generation += 1
        self._max_in_flight = 0
        self._random: _RandomFaults | None = None
        self._reject_globs: list[str] = []
        self._folders: dict[str, StoredFolder] = {}
        self._agents: dict[str, dict[str, Any]] = {}
        self._rag: dict[tuple[str, str], str] = {}
        self.rag_outcome: str = "succeeded"
        """Where RAG indexing ends: ``succeeded`` (default), ``failed``, ``rag_limit_exceeded``
        (that one at once, on the first request) or any other status string (after
        ``processing``). Read when a document's indexing reaches its end."""

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> Self:
        """Bind and serve in a daemon thread; returns self."""
        if self._server is not None:
            return self
        server = _Server((self._host, self._port), self)
        self._port = int(server.server_address[1])
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.01},  # stop() waits up to this long
            name=f"elevenlabs-double-{self._port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, cut open connections and release held requests. Idempotent."""
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        with self._lock:
            connections = list(self._connections)
            holds = list(self._holds)
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        for hold in holds:
            hold.release()
        if thread is not None:
            thread.join(timeout=5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """The bound port (kept across stop/start and reset)."""
        if self._server is None and self._port == 0:
            raise RuntimeError("the double is not started")
        return self._port

    @property
    def base_url(self) -> str:
        """Root URL to give the SDK as ``base_url`` (no ``/v1``)."""
        return f"http://{self._host}:{self.port}"

    def reset(self) -> None:
        """Forget documents, folders, agents, RAG states (``rag_outcome`` back to
        ``succeeded``), scripts, holds, counters, random faults and rejected names.

        Keys, latency, the concurrency cap and the port stay. Pending holds are released.
        """
        with self._lock:
            holds = list(self._holds)
            self._forget()
        for hold in holds:
            hold.release()

    # -- scenario control ---------------------------------------------------------------------

    def script(self, method: str, path: str, *faults: Fault) -> None:
        """Queue faults for requests matching method and path (``{id}`` matches one segment).

        Each matching request consumes the next fault; once the queue is empty requests behave
        normally. Queues for the same method and path are appended to.
        """
        method = method.upper()
        with self._lock:
            for m, p, queue in self._scripts:
                if m == method and p == path:
                    queue.extend(faults)
                    return
            self._scripts.append((method, path, deque(faults)))

    def pending_faults(self, method: str | None = None, path: str | None = None) -> int:
        """How many scripted faults are still waiting (for this method and path pattern)."""
        with self._lock:
            return sum(
                len(queue)
                for m, p, queue in self._scripts
                if (method is None or m == method.upper()) and (path is None or p == path)
            )

    def random_faults(
        self,
        rate: float,
        kinds: Sequence[str] = DEFAULT_RANDOM_FAULT_KINDS,
        seed: int = 1,
    ) -> None:
        """Give each request a random fault of `kinds` with probability `rate`; 0 turns it off.

        Kinds: a status code (``"429"``, ``"503"``...), ``"drop"``, ``"commit_then_drop"``,
        ``"commit_then_<code>"``. Deterministic for a given seed and request order; 429s carry
        ``Retry-After`` 0 or 1.
        """
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"rate must be between 0 and 1, got {rate}")
        kinds = tuple(kinds)
        for kind in kinds:
            _parse_fault_kind(kind)
        if rate > 0 and not kinds:
            raise ValueError("random faults need at least one kind")
        with self._lock:
            self._random = _RandomFaults(rate, kinds, random.Random(seed)) if rate > 0 else None

    def reject_names(self, *globs: str) -> None:
        """Creates whose name matches any of these fnmatch globs get 422 (case-sensitive)."""
        with self._lock:
            self._reject_globs.extend(globs)

    def hold(self, method: str, path: str, timeout: float = DEFAULT_HOLD_TIMEOUT) -> Hold:
        """Park the next matching request before processing until released (or `timeout`)."""
        hold = Hold(method, path, timeout)
        with self._lock:
            self._holds.append(hold)
        return hold

    def add_document(
        self,
        name: str,
        text: str,
        *,
        created_at: float | None = None,
        folder_id: str | None = None,
    ) -> StoredDocument:
        """Seed a text document directly, as if created earlier by someone else.

        `folder_id` puts it inside a folder (see `add_folder`); KeyError if there is none.
        """
        with self._lock:
            if folder_id is not None and folder_id not in self._folders:
                raise KeyError(f"no folder {folder_id!r}")
            return self._create(name, text, now=created_at, folder_id=folder_id)

    def add_folder(
        self, name: str, *, parent_id: str | None = None, created_at: float | None = None
    ) -> str:
        """Seed a folder (inside folder `parent_id` when given); returns its id."""
        with self._lock:
            if parent_id is not None and parent_id not in self._folders:
                raise KeyError(f"no folder {parent_id!r}")
            return self._create_folder(name, parent_id, now=created_at).id

    def add_agent(
        self, name: str, knowledge_base: Iterable[str | Mapping[str, Any]] | None = None
    ) -> str:
        """Seed an agent; returns its id (``agent_`` and 26 characters).

        `knowledge_base` items are locators (``{type, name, id, usage_mode}``, stored as given)
        or ids of stored documents/folders (turned into locators with ``usage_mode`` ``auto``).
        """
        with self._lock:
            locators = [
                copy.deepcopy(dict(item)) if isinstance(item, Mapping) else self._locator(item)
                for item in knowledge_base or []
            ]
            agent_id = self._new_agent_id()
            self._agents[agent_id] = _new_agent(agent_id, name, locators, time.time())
            return agent_id

    def _new_agent_id(self) -> str:
        while True:
            suffix = (self._agent_rng.choice(_AGENT_ID_ALPHABET) for _ in range(_AGENT_ID_LENGTH))
            agent_id = "agent_" + "".join(suffix)
            if agent_id not in self._agents:
                return agent_id

    def agent_kb(self, agent_id: str) -> list[dict[str, Any]]:
        """A copy of an agent's ``conversation_config.agent.prompt.knowledge_base``; KeyError if
        there is no such agent."""
        with self._lock:
            return copy.deepcopy(_agent_locators(self._agents[agent_id]))

    def rag_status(self, document_id: str, model: str = RAG_MODELS[0]) -> str | None:
        """The RAG index status of a document for `model`, or None if never requested."""
        with self._lock:
            return self._rag.get((document_id, model))

    # -- inspection ---------------------------------------------------------------------------

    @property
    def documents(self) -> dict[str, StoredDocument]:
        """Snapshot: id -> document, oldest first."""
        with self._lock:
            return dict(self._docs)

    @property
    def folders(self) -> dict[str, StoredFolder]:
        """Snapshot: id -> folder, oldest first."""
        with self._lock:
            return dict(self._folders)

    @property
    def agents(self) -> dict[str, dict[str, Any]]:
        """Snapshot (deep copy): agent id -> the agent as ``GET .../agents/{id}`` shows it."""
        with self._lock:
            return copy.deepcopy(self._agents)

    def docs_named(self, name: str) -> list[StoredDocument]:
        """Documents with exactly this name, oldest first."""
        with self._lock:
            return [doc for doc in self._docs.values() if doc.name == name]

    @property
    def requests(self) -> list[RequestRecord]:
        """Snapshot of every request since start/reset, in arrival order."""
        with self._lock:
            return list(self._requests)

    def count(self, method: str | None = None, path: str | None = None) -> int:
        """Requests received that match method and path pattern (``{id}`` allowed)."""
        with self._lock:
            return sum(
                1
                for rec in self._requests
                if (method is None or rec.method == method.upper())
                and (path is None or _path_matches(path, rec.path))
            )

    @property
    def max_in_flight(self) -> int:
        """The most requests that were in flight at once (since start/reset)."""
        with self._lock:
            return self._max_in_flight

    @property
    def in_flight(self) -> int:
        """Requests being handled right now."""
        with self._lock:
            return self._in_flight

    # -- connection bookkeeping (called by the handler) ---------------------------------------

    def _connection_opened(self, conn: socket.socket) -> None:
        with self._lock:
            self._connections.add(conn)

    def _connection_closed(self, conn: socket.socket) -> None:
        with self._lock:
            self._connections.discard(conn)

    # -- request handling ---------------------------------------------------------------------

    def _serve(self, handler: _Handler) -> None:
        """Run one request through admission, faults, latency, holds and processing."""
        method = handler.command.upper()
        url = urlsplit(handler.path)
        try:
            body = _read_body(handler)
        except (OSError, ValueError):
            _drop(handler)
            return
        ticket = self._admit(method, url.path, url.query, body)
        label = ticket.fault.label if ticket.fault is not None else None
        reply: _Reply | None
        try:
            if ticket.over_cap:
                label = "concurrency_cap"
                reply = _concurrency_reply(ticket.request_id, ticket.in_flight, ticket.cap)
            else:
                reply = self._answer(handler, ticket, url.query, body)
            # Book-keep before the client can see the outcome, so a test that inspects the
            # double right after its call returns sees this request finished, and a follow-up
            # request never counts this one as still in flight.
            self._complete(ticket, reply.status if reply is not None else None, label)
            if reply is None:
                _drop(handler)
            else:
                self._send(handler, reply)
        finally:
            self._complete(ticket, None, label)

    def _admit(self, method: str, path: str, query: str, body: bytes) -> _Ticket:
        """Record the arrival, count it in flight and decide its fault, all in one locked step."""
        with self._lock:
            index = len(self._requests)
            self._requests.append(RequestRecord(method, path, None, None, query, body))
            self._in_flight += 1
            self._max_in_flight = max(self._max_in_flight, self._in_flight)
            self._request_counter += 1
            random_fault = self._draw_random_fault()
            cap = self.concurrency_cap
            over_cap = cap is not None and self._in_flight > cap
            return _Ticket(
                method=method,
                path=path,
                generation=self._generation,
                index=index,
                request_id=f"req_{self._request_counter:06d}",
                in_flight=self._in_flight,
                cap=cap,
                over_cap=over_cap,
                fault=None if over_cap else (self._take_scripted(method, path) or random_fault),
            )

    def _is_stale(self, ticket: _Ticket) -> bool:
        with self._lock:
            return ticket.generation != self._generation

    def _complete(self, ticket: _Ticket, status: int | None, label: str | None) -> None:
        """Leave the in-flight count and record the outcome; only the first call counts."""
        with self._lock:
            if ticket.completed:
                return
            ticket.completed = True
            self._in_flight -= 1
            if ticket.generation == self._generation:
                record = self._requests[ticket.index]
                self._requests[ticket.index] = replace(record, status=status, fault=label)

    def _answer(self, handler: _Handler, ticket: _Ticket, query: str, body: bytes) -> _Reply | None:
        """Apply the fault, latency and hold, and process: the reply to send, or None to drop."""
        fault = ticket.fault
        if fault is not None and fault.kind in ("status", "drop"):
            time.sleep(max(self.latency, 0.0))
            return None if fault.kind == "drop" else _fault_reply(fault, ticket.request_id)
        slow = fault.seconds if fault is not None and fault.kind == "slow" else 0.0
        delay = max(self.latency, 0.0) + slow
        if delay > 0:
            time.sleep(delay)
        hold = self._take_hold(ticket.method, ticket.path)
        if hold is not None:
            hold._park()
        if self._is_stale(ticket):
            # reset() ran meanwhile: this request belongs to a finished scenario and must not
            # change the next one (e.g. a slow create landing in another test's documents).
            return None
        reply = self._process(ticket.method, ticket.path, query, body, handler)
        if fault is not None and fault.kind == "commit_then_drop":
            return None
        if fault is not None and fault.kind == "commit_then_status":
            return _fault_reply(fault, ticket.request_id)
        return reply

    def _send(self, handler: _Handler, reply: _Reply) -> None:
        """Write a full response; a client that already left is not an error."""
        with contextlib.suppress(OSError):
            handler.send_response(reply.status)
            handler.send_header("Content-Type", reply.content_type)
            handler.send_header("Content-Length", str(len(reply.body)))
            for key, value in reply.headers:
                handler.send_header(key, value)
            handler.end_headers()
            handler.wfile.write(reply.body)
            handler.wfile.flush()

    def _draw_random_fault(self) -> Fault | None:
        """Always draw the same number of values, so outcomes depend only on request order."""
        settings = self._random
        if settings is None:
            return None
        roll = settings.rng.random()
        pick = settings.rng.randrange(len(settings.kinds))
        retry_after = settings.rng.randrange(2)
        if roll >= settings.rate:
            return None
        fault = _parse_fault_kind(settings.kinds[pick])
        if fault.kind == "status" and fault.code == 429:
            return Fault.status(429, headers={"Retry-After": str(retry_after)})
        return fault

    def _take_scripted(self, method: str, path: str) -> Fault | None:
        for m, pattern, queue in self._scripts:
            if queue and m == method and _path_matches(pattern, path):
                return queue.popleft()
        return None

    def _take_hold(self, method: str, path: str) -> Hold | None:
        """The first unused matching hold; it stays listed so stop/reset can release it."""
        with self._lock:
            for hold in self._holds:
                if not hold._taken and hold.method == method and _path_matches(hold.path, path):
                    hold._taken = True
                    return hold
        return None

    def _process(
        self, method: str, path: str, query: str, body: bytes, handler: _Handler
    ) -> _Reply:
        """The real API's behaviour for one request; a bug in the double becomes a 500."""
        if handler.headers.get("xi-api-key") not in self.api_keys:
            return _json_reply(401, default_error_body(401))
        try:
            return self._route(method, path, parse_qs(query, keep_blank_values=True), body, handler)
        except _ValidationError as exc:
            return _json_reply(422, {"detail": exc.detail})
        except Exception as exc:  # noqa: BLE001 - a double bug must surface as a visible 500
            trace = traceback.format_exc()
            with self._lock:
                self.errors.append(trace)
            sys.stderr.write(f"elevenlabs double: internal error\n{trace}")
            detail = {"status": "double_internal_error", "message": repr(exc)}
            return _json_reply(500, {"detail": detail})

    def _route(
        self,
        method: str,
        path: str,
        query: dict[str, list[str]],
        body: bytes,
        handler: _Handler,
    ) -> _Reply:
        parts = path.strip("/").split("/")
        agents_root = AGENTS_PATH.strip("/").split("/")
        if parts[: len(agents_root)] == agents_root:
            return self._route_agents(method, parts[len(agents_root) :], body)
        root = KB_PATH.strip("/").split("/")
        if parts[: len(root)] != root:
            return _not_found_route()
        return self._route_kb(method, parts[len(root) :], query, body, handler)

    def _route_kb(
        self,
        method: str,
        rest: list[str],
        query: dict[str, list[str]],
        body: bytes,
        handler: _Handler,
    ) -> _Reply:
        reply: _Reply
        match (method, rest):
            case ("GET", []):
                reply = self._list(query)
            case ("POST", ["text"]):
                reply = self._create_from_text(body)
            case ("POST", ["file"]):
                reply = self._create_from_file(handler.headers.get("Content-Type", ""), body)
            case ("POST", ["folder"]):
                reply = self._create_folder_endpoint(body)
            case ("GET", [doc_id]):
                reply = self._get(doc_id)
            case ("PATCH", [doc_id]):
                reply = self._update(doc_id, body)
            case ("DELETE", [doc_id]):
                reply = self._delete(doc_id, query)
            case ("GET", [doc_id, "content"]):
                reply = self._with_doc(doc_id, _content_reply)
            case ("GET", [doc_id, "dependent-agents"]):
                reply = self._dependent_agents(doc_id, query)
            case ("POST", [doc_id, "rag-index"]):
                reply = self._compute_rag_index(doc_id, body)
            case _:
                reply = _not_found_route()
        return reply

    def _route_agents(self, method: str, rest: list[str], body: bytes) -> _Reply:
        match (method, rest):
            case ("GET", [agent_id]):
                return self._get_agent(agent_id)
            case ("PATCH", [agent_id]):
                return self._patch_agent(agent_id, body)
        return _not_found_route()

    # -- endpoint implementations -------------------------------------------------------------

    def _new_id(self) -> str:
        """A fresh id for a document or folder (one id space); caller holds the lock."""
        while True:
            new_id = "".join(self._id_rng.choice(_ID_ALPHABET) for _ in range(_ID_LENGTH))
            if new_id not in self._docs and new_id not in self._folders:
                return new_id

    def _create(
        self,
        name: str,
        text: str,
        *,
        now: float | None = None,
        kind: Literal["text", "file"] = "text",
        filename: str | None = None,
        folder_id: str | None = None,
    ) -> StoredDocument:
        """Store a new document; caller holds the lock."""
        doc_id = self._new_id()
        stamp = time.time() if now is None else now
        doc = StoredDocument(doc_id, name, text, stamp, stamp, kind, filename, folder_id)
        self._docs[doc_id] = doc
        self._seqs[doc_id] = self._next_seq
        self._next_seq += 1
        return doc

    def _create_folder(
        self, name: str, parent_id: str | None, *, now: float | None = None
    ) -> StoredFolder:
        """Store a new folder; caller holds the lock."""
        stamp = time.time() if now is None else now
        folder = StoredFolder(self._new_id(), name, stamp, stamp, parent_id)
        self._folders[folder.id] = folder
        self._seqs[folder.id] = self._next_seq
        self._next_seq += 1
        return folder

    def _check_name_allowed(self, name: str) -> None:
        with self._lock:
            globs = list(self._reject_globs)
        for glob in globs:
            if fnmatch.fnmatchcase(name, glob):
                raise _ValidationError(
                    ["body", "name"], f"Document name {name!r} is not allowed", "value_error"
                )

    def _created_reply(self, entry: _Entry) -> _Reply:
        """The answer to a create (AddKnowledgeBaseResponseModel); caller holds the lock."""
        path = [{"id": folder.id} for folder in self._folder_path(entry)]
        return _json_reply(200, {"id": entry.id, "name": entry.name, "folder_path": path})

    def _create_from_text(self, body: bytes) -> _Reply:
        data = _json_object(body)
        if data.get("text") is None:
            raise _ValidationError(["body", "text"], "Field required", "missing")
        text = _optional_str(data, "text", min_length=1) or ""
        name = _optional_str(data, "name", min_length=1) or _default_name(text)
        parent = _optional_str(data, "parent_folder_id")
        self._check_name_allowed(name)
        with self._lock:
            if parent is not None and parent not in self._folders:
                return _folder_not_found(parent)
            return self._created_reply(self._create(name, text, folder_id=parent))

    def _create_from_file(self, content_type: str, body: bytes) -> _Reply:
        fields = _parse_multipart(content_type, body)
        if "file" not in fields:
            raise _ValidationError(["body", "file"], "Field required", "missing")
        filename, raw = fields["file"]
        given_name = fields["name"][1].decode("utf-8", "replace") if "name" in fields else ""
        name = given_name or filename or "Untitled document"
        parent_field = fields.get("parent_folder_id")
        parent = parent_field[1].decode("utf-8", "replace") if parent_field else None
        self._check_name_allowed(name)
        text = raw.decode("utf-8", "replace")
        with self._lock:
            if parent is not None and parent not in self._folders:
                return _folder_not_found(parent)
            doc = self._create(
                name, text, kind="file", filename=filename or "file", folder_id=parent
            )
            return self._created_reply(doc)

    def _create_folder_endpoint(self, body: bytes) -> _Reply:
        data = _json_object(body)
        if data.get("name") is None:
            raise _ValidationError(["body", "name"], "Field required", "missing")
        name = _optional_str(data, "name", min_length=1) or ""
        parent = _optional_str(data, "parent_folder_id")
        self._check_name_allowed(name)
        with self._lock:
            if parent is not None and parent not in self._folders:
                return _folder_not_found(parent)
            return self._created_reply(self._create_folder(name, parent))

    def _with_doc(self, doc_id: str, render: Callable[[StoredDocument], _Reply]) -> _Reply:
        with self._lock:
            doc = self._docs.get(doc_id)
        if doc is None:
            return _doc_not_found(doc_id)
        return render(doc)

    def _get(self, entry_id: str) -> _Reply:
        with self._lock:
            entry = self._entry(entry_id)
            if entry is None:
                return _doc_not_found(entry_id)
            return _json_reply(200, self._detail(entry))

    def _update(self, doc_id: str, body: bytes) -> _Reply:
        data = _json_object(body)
        name = _optional_str(data, "name", min_length=1)
        content = _optional_str(data, "content", min_length=1)
        with self._lock:
            entry = self._entry(doc_id)
            if entry is None:
                return _doc_not_found(doc_id)
            if isinstance(entry, StoredFolder):
                if content is not None:
                    raise _ValidationError(
                        ["body", "content"], "A folder has no content to update", "value_error"
                    )
                if name is not None:
                    entry = replace(entry, name=name, updated_at=time.time())
                    self._folders[doc_id] = entry
            elif name is not None or content is not None:
                entry = replace(
                    entry,
                    name=entry.name if name is None else name,
                    text=entry.text if content is None else content,
                    updated_at=time.time(),
                )
                self._docs[doc_id] = entry
                if content is not None:  # new text: any RAG index must be computed again
                    self._forget_rag({doc_id})
            return _json_reply(200, self._detail(entry))

    def _delete(self, doc_id: str, query: dict[str, list[str]]) -> _Reply:
        force = query.get("force", ["false"])[-1].lower()
        if force not in ("true", "false", "1", "0"):
            raise _ValidationError(
                ["query", "force"], "Input should be a valid boolean", "bool_parsing"
            )
        forced = force in ("true", "1")
        with self._lock:
            entry = self._entry(doc_id)
            if entry is None:
                return _doc_not_found(doc_id)
            doomed = [entry, *self._descendants(entry.id)]
            if len(doomed) > 1 and not forced:
                return _folder_not_empty(doc_id, len(doomed) - 1)
            users = list(dict.fromkeys(a for e in doomed for a in self._dependent_ids(e.id)))
            if users and not forced:
                return _in_use_reply(doc_id, users)
            ids = {e.id for e in doomed}
            self._unlink(ids)
            self._forget_rag(ids)
            for gone in ids:
                self._docs.pop(gone, None)
                self._folders.pop(gone, None)
                self._seqs.pop(gone, None)
        return _json_reply(200, {})

    def _dependent_agents(self, doc_id: str, query: dict[str, list[str]]) -> _Reply:
        page_size = _page_size(query)
        offset = _cursor_value(query.get("cursor", [""])[-1], "offset") or 0
        with self._lock:
            if self._entry(doc_id) is None:
                return _doc_not_found(doc_id)
            items = self._dependent_items(doc_id)
        more = len(items) > offset + page_size
        payload = {
            "agents": items[offset : offset + page_size],
            "next_cursor": f"offset:{offset + page_size}" if more else None,
            "has_more": more,
        }
        return _json_reply(200, payload)

    def _compute_rag_index(self, doc_id: str, body: bytes) -> _Reply:
        data = _json_object(body)
        model = data.get("model")
        if model is None:
            raise _ValidationError(["body", "model"], "Field required", "missing")
        if model not in RAG_MODELS:
            allowed = " or ".join(repr(m) for m in RAG_MODELS)
            raise _ValidationError(["body", "model"], f"Input should be {allowed}", "enum")
        with self._lock:
            entry = self._entry(doc_id)
            if entry is None:
                return _doc_not_found(doc_id)
            if isinstance(entry, StoredFolder):
                status, size = "cannot_index_folder", 0
            else:
                size = len(entry.text.encode("utf-8"))
                status = self._advance_rag(doc_id, model, size)
        payload = {
            "id": f"{doc_id}_{model}",
            "model": model,
            "status": status,
            "progress_percentage": _RAG_PROGRESS.get(status, 0.0),
            "document_model_index_usage": {"used_bytes": size if status == "succeeded" else 0},
        }
        return _json_reply(200, payload)

    def _advance_rag(self, doc_id: str, model: str, size: int) -> str:
        """One step of a document's indexing: created, processing, then `rag_outcome`."""
        key = (doc_id, model)
        current = self._rag.get(key)
        if size < RAG_MIN_BYTES:
            status = "document_too_small"
        elif current is None:
            status = "rag_limit_exceeded" if self.rag_outcome == "rag_limit_exceeded" else "created"
        elif current == "created":
            status = "processing"
        elif current == "processing":
            status = self.rag_outcome
        else:
            status = current  # an end state stays
        self._rag[key] = status
        return status

    def _forget_rag(self, ids: set[str]) -> None:
        for key in [key for key in self._rag if key[0] in ids]:
            del self._rag[key]

    def _list(self, query: dict[str, list[str]]) -> _Reply:
        page_size = _page_size(query)
        search = query.get("search", [""])[-1].lower()
        types = set(query.get("types", []))
        sort_by = query.get("sort_by", [""])[-1]
        direction = query.get("sort_direction", ["asc"])[-1] or "asc"
        parent = query.get("parent_folder_id", [""])[-1] or None
        ancestor = query.get("ancestor_folder_id", [""])[-1] or None
        folders_first = query.get("folders_first", ["false"])[-1].lower() in ("true", "1")
        if sort_by not in ("", "name", "created_at", "updated_at", "size"):
            raise _ValidationError(
                ["query", "sort_by"], "Input should be a valid sort field", "enum"
            )
        if direction not in ("asc", "desc"):
            raise _ValidationError(
                ["query", "sort_direction"], "Input should be 'asc' or 'desc'", "enum"
            )
        cursor = query.get("cursor", [""])[-1]
        keyset = sort_by in ("", "created_at") and direction == "asc" and not folders_first
        with self._lock:
            entries: list[_Entry] = [*self._docs.values(), *self._folders.values()]
            rows = [
                (self._seqs[entry.id], entry)
                for entry in entries
                if entry.name.lower().startswith(search)
                and (not types or entry.type in types)
                and (parent is None or entry.folder_id == parent)
                and (ancestor is None or self._is_under(entry, ancestor))
            ]
            if keyset:
                rows.sort(key=lambda row: row[0])
                after = _cursor_value(cursor, "after")
                rows = [row for row in rows if after is None or row[0] > after]
                page, more = rows[:page_size], len(rows) > page_size
                next_cursor = f"after:{page[-1][0]}" if more else None
            else:
                rows.sort(key=lambda row: _sort_key(row[1], sort_by or "created_at", row[0]))
                if direction == "desc":
                    rows.reverse()
                if folders_first:  # stable: keeps the order within folders and documents
                    rows.sort(key=lambda row: not isinstance(row[1], StoredFolder))
                offset = _cursor_value(cursor, "offset") or 0
                page, more = rows[offset : offset + page_size], len(rows) > offset + page_size
                next_cursor = f"offset:{offset + page_size}" if more else None
            payload = {
                "documents": [self._summary(entry) for _, entry in page],
                "next_cursor": next_cursor,
                "has_more": more,
            }
        return _json_reply(200, payload)

    def _get_agent(self, agent_id: str) -> _Reply:
        with self._lock:
            agent = self._agents.get(agent_id)
            if agent is None:
                return _agent_not_found(agent_id)
            return _json_reply(200, agent)

    def _patch_agent(self, agent_id: str, body: bytes) -> _Reply:
        """Deep-merge the given settings into the agent (a list replaces; absent keys stay)."""
        data = _json_object(body)
        patch: dict[str, Any] = {}
        for key in ("conversation_config", "platform_settings", "workflow"):
            value = data.get(key)
            if value is None:
                continue
            if not isinstance(value, dict):
                raise _ValidationError(
                    ["body", key], "Input should be a valid dictionary", "dict_type"
                )
            patch[key] = value
        _check_locators(patch.get("conversation_config", {}))
        name = _optional_str(data, "name", min_length=1)
        if name is not None:
            patch["name"] = name
        tags = data.get("tags")
        if tags is not None:
            if not isinstance(tags, list) or not all(isinstance(tag, str) for tag in tags):
                raise _ValidationError(
                    ["body", "tags"], "Input should be a valid list", "list_type"
                )
            patch["tags"] = tags
        with self._lock:
            agent = self._agents.get(agent_id)
            if agent is None:
                return _agent_not_found(agent_id)
            merged = _deep_merge(agent, patch)
            merged["metadata"] = {**merged["metadata"], "updated_at_unix_secs": int(time.time())}
            self._agents[agent_id] = merged
            return _json_reply(200, merged)

    # -- state queries (caller holds the lock) ------------------------------------------------

    def _entry(self, entry_id: str) -> _Entry | None:
        return self._docs.get(entry_id) or self._folders.get(entry_id)

    def _folder_path(self, entry: _Entry) -> list[StoredFolder]:
        """The folders above `entry`, from the root down to its parent."""
        path: list[StoredFolder] = []
        parent_id = entry.folder_id
        while (
            parent_id is not None and parent_id in self._folders and len(path) <= len(self._folders)
        ):
            folder = self._folders[parent_id]
            path.append(folder)
            parent_id = folder.folder_id
        return path[::-1]

    def _is_under(self, entry: _Entry, folder_id: str) -> bool:
        return any(folder.id == folder_id for folder in self._folder_path(entry))

    def _descendants(self, folder_id: str) -> list[_Entry]:
        """Everything inside a folder at any depth (empty for a document)."""
        if folder_id not in self._folders:
            return []
        entries: list[_Entry] = [*self._docs.values(), *self._folders.values()]
        return [entry for entry in entries if self._is_under(entry, folder_id)]

    def _dependent_ids(self, entry_id: str) -> list[str]:
        """Agents whose knowledge base names this document or folder, oldest first."""
        return [
            agent_id
            for agent_id, agent in self._agents.items()
            if any(
                isinstance(locator, Mapping) and locator.get("id") == entry_id
                for locator in _agent_locators(agent)
            )
        ]

    def _dependent_items(self, entry_id: str) -> list[dict[str, Any]]:
        """The dependent agents as the API lists them (``DependentAvailableAgentIdentifier``)."""
        return [
            {
                "type": "available",
                "id": agent_id,
                "name": self._agents[agent_id]["name"],
                "created_at_unix_secs": self._agents[agent_id]["metadata"]["created_at_unix_secs"],
                "access_level": "admin",
            }
            for agent_id in self._dependent_ids(entry_id)
        ]

    def _unlink(self, ids: set[str]) -> None:
        """Remove these documents/folders from every agent's knowledge base."""
        stamp = int(time.time())
        for agent in self._agents.values():
            locators = _agent_locators(agent)
            kept = [
                locator
                for locator in locators
                if not (isinstance(locator, Mapping) and locator.get("id") in ids)
            ]
            if len(kept) != len(locators):
                agent["conversation_config"]["agent"]["prompt"]["knowledge_base"] = kept
                agent["metadata"]["updated_at_unix_secs"] = stamp

    def _locator(self, entry_id: str) -> dict[str, Any]:
        entry = self._entry(entry_id)
        if entry is None:
            raise KeyError(f"no document or folder {entry_id!r}")
        return {"type": entry.type, "name": entry.name, "id": entry.id, "usage_mode": "auto"}

    def _common(self, entry: _Entry, *, named_path: bool) -> dict[str, Any]:
        size = 0 if isinstance(entry, StoredFolder) else len(entry.text.encode("utf-8"))
        path = [
            {"id": folder.id, "name": folder.name} if named_path else {"id": folder.id}
            for folder in self._folder_path(entry)
        ]
        common: dict[str, Any] = {
            "id": entry.id,
            "name": entry.name,
            "type": entry.type,
            "metadata": {
                "created_at_unix_secs": int(entry.created_at),
                "last_updated_at_unix_secs": int(entry.updated_at),
                "size_bytes": size,
            },
            "supported_usages": list(_SUPPORTED_USAGES),
            "access_info": dict(_ACCESS_INFO),
            "folder_parent_id": entry.folder_id,
            "folder_path": path,
        }
        if isinstance(entry, StoredFolder):
            inside = self._descendants(entry.id)
            common["children_count"] = sum(1 for e in inside if e.folder_id == entry.id)
            common["document_count"] = sum(1 for e in inside if isinstance(e, StoredDocument))
        return common

    def _summary(self, entry: _Entry) -> dict[str, Any]:
        """A list item (GetKnowledgeBaseListResponseModelDocumentsItem)."""
        summary = self._common(entry, named_path=False)
        summary["dependent_agents"] = self._dependent_items(entry.id)
        return summary

    def _detail(self, entry: _Entry) -> dict[str, Any]:
        """A single document or folder (DocumentsGetResponse / DocumentsUpdateResponse)."""
        detail = self._common(entry, named_path=True)
        if isinstance(entry, StoredDocument):
            detail["extracted_inner_html"] = entry.text
            if entry.type == "file":
                detail["filename"] = entry.filename or "file"
        return detail


# --------------------------------------------------------------------------------------------
# Response shapes and helpers


def _read_body(handler: _Handler) -> bytes:
    length = handler.headers.get("Content-Length")
    if length is not None:
        return handler.rfile.read(max(int(length), 0))
    if "chunked" in handler.headers.get("Transfer-Encoding", "").lower():
        chunks: list[bytes] = []
        while True:
            size = int(handler.rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while handler.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass
                return b"".join(chunks)
            chunks.append(handler.rfile.read(size))
            handler.rfile.readline()
    return b""


def _drop(handler: _Handler) -> None:
    """Close the connection without a byte of response (the client sees a transport error)."""
    handler.close_connection = True
    with contextlib.suppress(OSError):
        handler.connection.shutdown(socket.SHUT_RDWR)


def _concurrency_reply(request_id: str, current: int, cap: int | None) -> _Reply:
    body = {
        "detail": {
            "type": "rate_limit_error",
            "code": "concurrent_limit_exceeded",
            "message": "Too many concurrent requests for your plan. Please retry later.",
            "status": "concurrent_limit_exceeded",
            "request_id": request_id,
        }
    }
    headers = (
        ("current-concurrent-requests", str(current)),
        ("maximum-concurrent-requests", str(cap)),
    )
    return _json_reply(429, body, headers)


def _fault_reply(fault: Fault, request_id: str) -> _Reply:
    code = fault.code if fault.code is not None else 500
    body = fault.body if fault.body is not None else default_error_body(code, request_id)
    return _body_reply(code, body, fault.headers)


def _content_reply(doc: StoredDocument) -> _Reply:
    return _Reply(200, doc.text.encode("utf-8"), "text/plain; charset=utf-8")


def _not_found_route() -> _Reply:
    return _json_reply(404, {"detail": "Not Found"})


def _doc_not_found(doc_id: str) -> _Reply:
    detail = {
        "status": "document_not_found",
        "message": f"Document with id {doc_id} not found.",
    }
    return _json_reply(404, {"detail": detail})


def _folder_not_found(folder_id: str) -> _Reply:
    detail = {"status": "folder_not_found", "message": f"Folder with id {folder_id} not found."}
    return _json_reply(404, {"detail": detail})


def _agent_not_found(agent_id: str) -> _Reply:
    detail = {"status": "agent_not_found", "message": f"Agent with id {agent_id} not found."}
    return _json_reply(404, {"detail": detail})


def _in_use_reply(doc_id: str, agent_ids: Sequence[str]) -> _Reply:
    """A delete without ``force`` of a document agents use (status and body unconfirmed)."""
    detail = {
        "status": "document_is_used_by_agents",
        "message": (
            f"Document {doc_id} is used by {len(agent_ids)} agent(s): {', '.join(agent_ids)}. "
            "Delete it with force=true to also remove it from them."
        ),
    }
    return _json_reply(400, {"detail": detail})


def _folder_not_empty(folder_id: str, count: int) -> _Reply:
    """A delete without ``force`` of a folder that holds anything (status and body unconfirmed)."""
    detail = {
        "status": "folder_not_empty",
        "message": (
            f"Folder {folder_id} is not empty ({count} item(s)). "
            "Delete it with force=true to also delete everything inside."
        ),
    }
    return _json_reply(400, {"detail": detail})


def _new_agent(
    agent_id: str, name: str, knowledge_base: list[dict[str, Any]], now: float
) -> dict[str, Any]:
    """An agent as ``GET /v1/convai/agents/{id}`` shows it (GetAgentResponseModel)."""
    return {
        "agent_id": agent_id,
        "name": name,
        "conversation_config": {
            "agent": {
                "first_message": "Hello! How can I help you today?",
                "language": "en",
                "prompt": {
                    "prompt": "You are a helpful assistant. Answer from the knowledge base.",
                    "llm": "gemini-2.0-flash",
                    "temperature": 0.0,
                    "knowledge_base": knowledge_base,
                },
            },
            "tts": {"model_id": "eleven_flash_v2", "voice_id": "cjVigY5qzO86Huf0OWal"},
        },
        "metadata": {"created_at_unix_secs": int(now), "updated_at_unix_secs": int(now)},
        "tags": [],
    }


def _agent_locators(agent: Mapping[str, Any]) -> list[Any]:
    """The agent's ``conversation_config.agent.prompt.knowledge_base`` list ([] if unset)."""
    node: Any = agent
    for key in ("conversation_config", "agent", "prompt", "knowledge_base"):
        node = node.get(key) if isinstance(node, Mapping) else None
    return node if isinstance(node, list) else []


def _check_locators(config: Mapping[str, Any]) -> None:
    """Reject (422) a ``conversation_config`` whose knowledge base the real API would refuse."""
    loc: list[str | int] = ["body", "conversation_config"]
    node: Any = config
    for key in ("agent", "prompt"):
        node = node.get(key)
        loc.append(key)
        if node is None:
            return
        if not isinstance(node, Mapping):
            raise _ValidationError(loc, "Input should be a valid dictionary", "dict_type")
    items = node.get("knowledge_base")
    loc.append("knowledge_base")
    if items is None:
        return
    if not isinstance(items, list):
        raise _ValidationError(loc, "Input should be a valid list", "list_type")
    for index, item in enumerate(items):
        where = [*loc, index]
        if not isinstance(item, Mapping):
            raise _ValidationError(where, "Input should be a valid dictionary", "dict_type")
        for key in ("type", "name", "id"):
            if item.get(key) is None:
                raise _ValidationError([*where, key], "Field required", "missing")
            if not isinstance(item[key], str):
                raise _ValidationError(
                    [*where, key], "Input should be a valid string", "string_type"
                )
        if item["type"] not in _LOCATOR_TYPES:
            allowed = ", ".join(repr(t) for t in _LOCATOR_TYPES)
            raise _ValidationError([*where, "type"], f"Input should be {allowed}", "enum")
        usage = item.get("usage_mode")
        if usage is not None and usage not in _SUPPORTED_USAGES:
            raise _ValidationError(
                [*where, "usage_mode"], "Input should be 'prompt' or 'auto'", "enum"
            )


def _deep_merge(base: Mapping[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    """`base` with `patch` merged in: dicts merge key by key, anything else (a list) replaces."""
    merged = copy.deepcopy(dict(base))
    for key, value in patch.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _page_size(query: dict[str, list[str]]) -> int:
    raw = query.get("page_size", [str(DEFAULT_PAGE_SIZE)])[-1]
    try:
        size = int(raw)
    except ValueError as exc:
        raise _ValidationError(
            ["query", "page_size"], "Input should be a valid integer", "int_parsing"
        ) from exc
    if size > MAX_PAGE_SIZE:
        raise _ValidationError(
            ["query", "page_size"],
            f"Input should be less than or equal to {MAX_PAGE_SIZE}",
            "less_than_equal",
        )
    if size < 1:
        raise _ValidationError(
            ["query", "page_size"],
            "Input should be greater than or equal to 1",
            "greater_than_equal",
        )
    return size


def _cursor_value(cursor: str, prefix: str) -> int | None:
    if not cursor:
        return None
    tag, _, number = cursor.partition(":")
    if tag != prefix or not number.isdigit():
        raise _ValidationError(["query", "cursor"], "Invalid cursor", "value_error")
    return int(number)


def _sort_key(entry: _Entry, sort_by: str, seq: int) -> tuple[Any, int]:
    if sort_by == "name":
        return (entry.name.lower(), seq)
    if sort_by == "updated_at":
        return (entry.updated_at, seq)
    if sort_by == "size":
        size = 0 if isinstance(entry, StoredFolder) else len(entry.text.encode("utf-8"))
        return (size, seq)
    return (entry.created_at, seq)


# --------------------------------------------------------------------------------------------
# Command line


def main(argv: Sequence[str] | None = None) -> int:
    """Serve in the foreground until SIGINT/SIGTERM (for demos against a live-looking API)."""
    parser = argparse.ArgumentParser(
        prog="python -m tests.support.elevenlabs_double",
        description="Local double of the ElevenLabs knowledge-base API.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765, help="0 picks a free port")
    parser.add_argument(
        "--api-key", action="append", dest="api_keys", help="accepted key (repeatable)"
    )
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added per request")
    parser.add_argument("--concurrency-cap", type=int, default=None)
    parser.add_argument("--reject-name", action="append", default=[], help="fnmatch glob")
    parser.add_argument("--random-faults", type=float, default=0.0, help="fault rate 0..1")
    parser.add_argument(
        "--random-fault-kinds",
        default=",".join(DEFAULT_RANDOM_FAULT_KINDS),
        help="comma-separated kinds",
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    stop = threading.Event()

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)

    double = ElevenLabsDouble(
        api_keys=args.api_keys or ["demo-key"],
        latency=args.latency,
        concurrency_cap=args.concurrency_cap,
        seed=args.seed,
        host=args.host,
        port=args.port,
    )
    if args.reject_name:
        double.reject_names(*args.reject_name)
    if args.random_faults:
        kinds = [kind.strip() for kind in args.random_fault_kinds.split(",") if kind.strip()]
        double.random_faults(args.random_faults, kinds=kinds, seed=args.seed)
    with double:
        print(f"ElevenLabs API double listening on {double.base_url}", flush=True)
        while not stop.wait(0.2):
            pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
