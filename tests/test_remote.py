"""The ElevenLabs adapter: `classify` on its own, then the real SDK over HTTP against the double."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from elevenlabs.core.api_error import ApiError
from elevenlabs.core.parse_error import ParsingError
from elevenlabs.errors import UnprocessableEntityError
from hypothesis import given, settings
from hypothesis import strategies as st

from kbsync.errors import RemoteError, RemoteNotFound
from kbsync.interfaces import AgentDocument, KnowledgeBase, RemoteDocument
from kbsync.models import MAX_ERROR_MESSAGE, ErrorType
from kbsync.remote import MUTATING_OPERATIONS, ElevenLabsKB, classify, parse_retry_after
from tests.support.elevenlabs_double import ElevenLabsDouble, Fault

KEY = "sk_test_0123456789abcdef0123456789abcdef"
"""The API key the double accepts; no message may ever show it."""

TEXT_PATH = "/v1/convai/knowledge-base/text"
LIST_PATH = "/v1/convai/knowledge-base"
DOC_PATH = "/v1/convai/knowledge-base/{id}"
CONTENT_PATH = "/v1/convai/knowledge-base/{id}/content"
DEPENDENT_PATH = "/v1/convai/knowledge-base/{id}/dependent-agents"
RAG_PATH = "/v1/convai/knowledge-base/{id}/rag-index"
AGENT_PATH = "/v1/convai/agents/{id}"
MODEL = "e5_mistral_7b_instruct"

ALL_OPERATIONS = (
    "create",
    "update",
    "get_content",
    "delete",
    "list",
    "find_by_name",
    "dependent_agents",
    "list_folder",
    "folder_exists",
    "check_key",
    "agent_documents",
    "set_agent_documents",
    "compute_rag_index",
)
MUTATING = ("create", "update", "delete", "set_agent_documents", "compute_rag_index")


def _request(url: str = "http://127.0.0.1:1234/v1/convai/knowledge-base/text") -> httpx.Request:
    return httpx.Request("POST", url)


def _api_error(status: int, body: Any = None, headers: dict[str, str] | None = None) -> ApiError:
    return ApiError(status_code=status, headers=headers or {}, body=body)


# --- classify: types, transience and ambiguity --------------------------------------------------


@pytest.mark.parametrize(
    ("status", "operation", "expected"),
    [
        (429, "create", ErrorType.RATE_LIMIT),
        (429, "list", ErrorType.RATE_LIMIT),
        (401, "create", ErrorType.AUTH_ERROR),
        (403, "get_content", ErrorType.AUTH_ERROR),
        (400, "create", ErrorType.VALIDATION),
        (413, "update", ErrorType.VALIDATION),
        (404, "create", ErrorType.VALIDATION),
        (404, "list", ErrorType.UNKNOWN),
        (404, "find_by_name", ErrorType.UNKNOWN),
        (408, "create", ErrorType.NETWORK),
        (409, "create", ErrorType.UNKNOWN),
        (418, "update", ErrorType.UNKNOWN),
        (500, "create", ErrorType.SERVER_ERROR),
        (502, "update", ErrorType.SERVER_ERROR),
        (503, "list", ErrorType.SERVER_ERROR),
        (504, "delete", ErrorType.SERVER_ERROR),
        (599, "get_content", ErrorType.SERVER_ERROR),
    ],
)
def test_status_codes_map_to_the_contracts_error_types(
    status: int, operation: str, expected: ErrorType
) -> None:
    error = classify(_api_error(status, {"detail": "nope"}), operation=operation)
    assert type(error) is RemoteError
    assert error.error_type is expected
    assert error.status_code == status
    assert error.transient is (
        expected in {ErrorType.RATE_LIMIT, ErrorType.SERVER_ERROR, ErrorType.NETWORK}
    )


def test_unprocessable_entity_is_validation() -> None:
    body = {"detail": [{"loc": ["body", "text"], "msg": "Field required", "type": "missing"}]}
    error = classify(UnprocessableEntityError(body=body, headers={}), operation="create")
    assert error.error_type is ErrorType.VALIDATION
    assert error.status_code == 422
    assert not error.transient
    assert not error.ambiguous


@pytest.mark.parametrize("operation", ["update", "get_content", "delete"])
def test_404_on_a_known_document_is_remote_not_found(operation: str) -> None:
    error = classify(_api_error(404, {"detail": "Document not found"}), operation=operation)
    assert isinstance(error, RemoteNotFound)
    assert error.error_type is ErrorType.VALIDATION
    assert not error.ambiguous
    assert error.message == "ElevenLabs has no such document (404): Document not found"


@pytest.mark.parametrize(
    ("operation", "subject"),
    [
        ("dependent_agents", "document"),
        ("compute_rag_index", "document"),
        ("list_folder", "folder"),
        ("folder_exists", "folder"),
        ("agent_documents", "agent"),
        ("set_agent_documents", "agent"),
    ],
)
def test_404_on_anything_named_by_id_is_remote_not_found(operation: str, subject: str) -> None:
    body = {"detail": {"status": f"{subject}_not_found", "message": "Not here."}}
    error = classify(_api_error(404, body), operation=operation)
    assert isinstance(error, RemoteNotFound)
    assert not error.ambiguous
    assert error.message == f"ElevenLabs has no such {subject} (404): Not here."


def test_the_mutating_operations_are_the_ones_that_change_something() -> None:
    assert set(MUTATING) == MUTATING_OPERATIONS


def test_404_on_check_key_hints_at_the_base_url() -> None:
    error = classify(_api_error(404, {"detail": "Not Found"}), operation="check_key")
    assert not isinstance(error, RemoteNotFound)
    assert error.error_type is ErrorType.UNKNOWN
    assert "base URL" in error.message


def test_the_apis_own_404_on_create_is_not_blamed_on_the_base_url() -> None:
    body = {"detail": {"status": "folder_not_found", "message": "Folder with id f not found."}}
    error = classify(_api_error(404, body), operation="create")
    assert error.error_type is ErrorType.VALIDATION
    assert error.code == "folder_not_found"
    assert (
        error.message == "ElevenLabs answered 404 (folder_not_found): Folder with id f not found."
    )


def test_404_on_create_is_plain_validation_with_a_base_url_hint() -> None:
    error = classify(_api_error(404, {"detail": "Not Found"}), operation="create")
    assert not isinstance(error, RemoteNotFound)
    assert error.error_type is ErrorType.VALIDATION
    assert "base URL" in error.message


@pytest.mark.parametrize("operation", ALL_OPERATIONS)
@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_5xx_is_ambiguous_only_on_mutating_operations(status: int, operation: str) -> None:
    error = classify(_api_error(status), operation=operation)
    assert error.error_type is ErrorType.SERVER_ERROR
    assert error.ambiguous is (operation in MUTATING)


@pytest.mark.parametrize("operation", ALL_OPERATIONS)
@pytest.mark.parametrize("status", [400, 401, 403, 404, 408, 409, 413, 422, 429])
def test_4xx_is_never_ambiguous(status: int, operation: str) -> None:
    assert not classify(_api_error(status), operation=operation).ambiguous


def test_a_2xx_the_sdk_could_not_read_is_unknown_and_ambiguous_on_create() -> None:
    # The SDK raises ApiError(status_code=200) when a success body is not JSON.
    error = classify(_api_error(200, "not json"), operation="create")
    assert error.error_type is ErrorType.UNKNOWN
    assert error.ambiguous
    assert not classify(_api_error(200, "not json"), operation="list").ambiguous
    parsing = ParsingError(status_code=200, headers={}, body={}, cause=ValueError("bad"))
    assert classify(parsing, operation="create").ambiguous
    assert classify(parsing, operation="create").error_type is ErrorType.UNKNOWN


SENT_NOTHING: list[type[httpx.TransportError]] = [
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.PoolTimeout,
    httpx.ProxyError,
]
MAYBE_SENT: list[type[httpx.TransportError]] = [
    httpx.ReadTimeout,
    httpx.WriteTimeout,
    httpx.ReadError,
    httpx.WriteError,
    httpx.CloseError,
    httpx.RemoteProtocolError,
]


@pytest.mark.parametrize("operation", ALL_OPERATIONS)
@pytest.mark.parametrize("exc_type", SENT_NOTHING)
def test_failures_before_sending_are_network_and_never_ambiguous(
    exc_type: type[httpx.TransportError], operation: str
) -> None:
    error = classify(exc_type("boom", request=_request()), operation=operation)
    assert error.error_type is ErrorType.NETWORK
    assert error.transient
    assert not error.ambiguous
    assert error.status_code is None
    assert error.retry_after is None


@pytest.mark.parametrize("operation", ALL_OPERATIONS)
@pytest.mark.parametrize("exc_type", MAYBE_SENT)
def test_failures_after_sending_are_network_and_ambiguous_on_mutations(
    exc_type: type[httpx.TransportError], operation: str
) -> None:
    error = classify(exc_type("boom", request=_request()), operation=operation)
    assert error.error_type is ErrorType.NETWORK
    assert error.transient
    assert error.ambiguous is (operation in MUTATING)


@pytest.mark.parametrize(
    "exc",
    [
        httpx.UnsupportedProtocol("Request URL is missing an 'http://' or 'https://' protocol."),
        httpx.LocalProtocolError("Illegal header value b'x'"),
    ],
)
def test_requests_kbsync_could_not_form_are_unknown_and_not_ambiguous(exc: Exception) -> None:
    error = classify(exc, operation="create")
    assert error.error_type is ErrorType.UNKNOWN
    assert not error.transient
    assert not error.ambiguous


def test_anything_else_is_unknown_and_ambiguous_only_on_mutations() -> None:
    create = classify(ValueError("odd"), operation="create")
    assert create.error_type is ErrorType.UNKNOWN
    assert create.ambiguous
    assert create.message == "Unexpected error talking to ElevenLabs (ValueError): odd"
    assert not classify(ValueError("odd"), operation="get_content").ambiguous


def test_classification_ignores_message_text() -> None:
    # A 500 that *says* "rate limit" is still a server error; a 429 saying "server" is a rate limit.
    assert (
        classify(_api_error(500, {"detail": "rate limit exceeded"}), operation="list").error_type
        is ErrorType.SERVER_ERROR
    )
    assert (
        classify(_api_error(429, {"detail": "internal server error"}), operation="list").error_type
        is ErrorType.RATE_LIMIT
    )
    assert (
        classify(
            httpx.ReadError("Invalid API key", request=_request()), operation="list"
        ).error_type
        is ErrorType.NETWORK
    )


# --- classify: Retry-After -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry-after": "7"}, 7.0),
        ({"Retry-After": "1.5"}, 1.5),
        ({"RETRY-AFTER": "0"}, 0.0),
        ({"retry-after-ms": "1500"}, 1.5),
        ({"Retry-After-Ms": "250", "Retry-After": "9"}, 0.25),
        ({"retry-after-ms": "soon", "retry-after": "3"}, 3.0),
        ({}, None),
        ({"x-ratelimit-reset": "5"}, None),
        ({"retry-after": ""}, None),
        ({"retry-after": "soon"}, None),
        ({"retry-after": "-3"}, None),
        ({"retry-after": "inf"}, None),
        ({"retry-after": "nan"}, None),
    ],
)
def test_retry_after_is_parsed_from_headers(
    headers: dict[str, str], expected: float | None
) -> None:
    assert parse_retry_after(headers) == expected
    error = classify(_api_error(429, headers=headers), operation="create")
    assert error.retry_after == expected


def test_retry_after_as_an_http_date() -> None:
    now = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC).timestamp()
    later = format_datetime(datetime(2025, 1, 2, 3, 4, 35, tzinfo=UTC), usegmt=True)
    assert later == "Thu, 02 Jan 2025 03:04:35 GMT"
    assert parse_retry_after({"Retry-After": later}, now=now) == 30.0
    past = "Thu, 02 Jan 2025 03:00:00 GMT"
    assert parse_retry_after({"Retry-After": past}, now=now) == 0.0
    # Through classify, against the real clock: a date a minute ahead is about a minute away.
    soon = format_datetime(datetime.fromtimestamp(datetime.now(UTC).timestamp() + 60, UTC), True)
    retry_after = classify(
        _api_error(503, headers={"retry-after": soon}), operation="list"
    ).retry_after
    assert retry_after is not None
    assert 55 <= retry_after <= 61


def test_retry_after_missing_headers() -> None:
    assert parse_retry_after(None) is None
    assert (
        classify(ApiError(status_code=429, headers=None, body=None), operation="list").retry_after
        is None
    )


# --- classify: messages --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("exc", "operation", "message"),
    [
        (
            _api_error(
                429,
                {
                    "detail": {
                        "type": "rate_limit_error",
                        "code": "rate_limit_exceeded",
                        "message": "Too many concurrent requests",
                        "status": "rate_limit_exceeded",
                        "request_id": "req_123",
                    }
                },
            ),
            "create",
            "ElevenLabs answered 429 (rate_limit_exceeded): Too many concurrent requests",
        ),
        (
            _api_error(
                429,
                {
                    "detail": {
                        "status": "too_many_concurrent_requests",
                        "message": "Busy, try later",
                    }
                },
            ),
            "create",
            "ElevenLabs answered 429 (too_many_concurrent_requests): Busy, try later",
        ),
        (
            _api_error(
                401, {"detail": {"status": "invalid_api_key", "message": "Invalid API key"}}
            ),
            "create",
            "ElevenLabs rejected the API key (401): Invalid API key",
        ),
        (
            _api_error(403, {"detail": {"status": "missing_permissions", "message": "No access"}}),
            "list",
            "ElevenLabs refused access with this API key (403): No access",
        ),
        (
            UnprocessableEntityError(
                body={
                    "detail": [
                        {"loc": ["body", "text"], "msg": "Field required", "type": "missing"}
                    ]
                }
            ),
            "create",
            "ElevenLabs answered 422: body.text: Field required",
        ),
        (
            UnprocessableEntityError(
                body={
                    "detail": [
                        {"loc": ["body", "text"], "msg": "Field required", "type": "missing"},
                        {"loc": ["query", "page_size"], "msg": "too big", "type": "value"},
                    ]
                }
            ),
            "list",
            "ElevenLabs answered 422: body.text: Field required; query.page_size: too big",
        ),
        (
            _api_error(400, {"detail": "Document name is too long"}),
            "create",
            "ElevenLabs answered 400: Document name is too long",
        ),
        (
            _api_error(503, "upstream   busy\n please retry"),
            "create",
            "ElevenLabs answered 503: upstream busy please retry",
        ),
        (
            _api_error(
                502,
                "<html>\n<head><title>502 Bad Gateway</title></head>\n"
                "<body><center><h1>502 Bad Gateway</h1></center><hr><center>nginx</center>"
                "</body>\n</html>\n",
            ),
            "create",
            "ElevenLabs answered 502: Bad Gateway",
        ),
        (
            _api_error(500, "<!DOCTYPE html><p>oops</p>"),
            "list",
            "ElevenLabs answered 500: Internal Server Error",
        ),
        (_api_error(503, None), "list", "ElevenLabs answered 503: Service Unavailable"),
        (_api_error(503, ""), "list", "ElevenLabs answered 503: Service Unavailable"),
        (_api_error(500, {"detail": {}}), "list", "ElevenLabs answered 500: {}"),
        (_api_error(500, {"error": "boom"}), "list", "ElevenLabs answered 500: boom"),
        (_api_error(500, ["a", 1]), "list", 'ElevenLabs answered 500: ["a", 1]'),
        (_api_error(500, b"bytes body"), "list", "ElevenLabs answered 500: bytes body"),
        (_api_error(599, None), "list", "ElevenLabs answered 599: HTTP error"),
        (
            httpx.ConnectError("[Errno 111] Connection refused", request=_request()),
            "create",
            "Network error talking to ElevenLabs at http://127.0.0.1:1234: "
            "connection refused (ConnectError)",
        ),
        (
            httpx.RemoteProtocolError(
                "Server disconnected without sending a response.",
                request=_request("https://user:pw@api.example.com/v1/convai/knowledge-base"),
            ),
            "list",
            "Network error talking to ElevenLabs at https://api.example.com: "
            "server disconnected without sending a response. (RemoteProtocolError)",
        ),
        (
            httpx.ReadTimeout("timed out", request=_request()),
            "create",
            "No answer from ElevenLabs within 30 s (ReadTimeout)",
        ),
        (
            httpx.ConnectTimeout("timed out", request=_request()),
            "create",
            "Could not connect to ElevenLabs at http://127.0.0.1:1234 within 30 s (ConnectTimeout)",
        ),
    ],
)
def test_messages_are_readable(exc: Exception, operation: str, message: str) -> None:
    error = classify(exc, operation=operation, base_url="https://api.elevenlabs.io", timeout=30.0)
    assert error.message == message
    assert str(error) == message


@pytest.mark.parametrize(
    ("exc", "operation", "still_running"),
    [
        (httpx.ReadTimeout("timed out"), "create", True),
        (httpx.WriteTimeout("timed out"), "update", True),
        (httpx.ReadTimeout("timed out"), "list", False),
        (httpx.ConnectTimeout("no route"), "create", False),
        (httpx.RemoteProtocolError("closed"), "create", False),
        (_api_error(504, {"detail": "Gateway Timeout"}), "create", True),
        (_api_error(502, "<html>Bad Gateway</html>"), "create", True),
        (_api_error(500, {"detail": "oops"}), "create", False),
        (_api_error(504, {"detail": "Gateway Timeout"}), "get_content", False),
    ],
)
def test_the_server_may_still_be_working_after_a_timeout_or_a_gateway_error(
    exc: Exception, operation: str, still_running: bool
) -> None:
    assert classify(exc, operation=operation).still_running is still_running


def test_timeouts_read_from_the_request_when_not_given() -> None:
    request = _request()
    request.extensions["timeout"] = {"connect": 5.0, "read": 0.3, "write": 5.0, "pool": 5.0}
    error = classify(httpx.ReadTimeout("timed out", request=request), operation="list")
    assert error.message == "No answer from ElevenLabs within 0.3 s (ReadTimeout)"


def test_transport_errors_without_a_request_fall_back_to_the_base_url() -> None:
    error = classify(httpx.ConnectError("nope"), operation="list", base_url="http://kb.local:9")
    assert (
        error.message
        == "Network error talking to ElevenLabs at http://kb.local:9: nope (ConnectError)"
    )
    timeout = classify(httpx.ReadTimeout("timed out"), operation="list")
    assert timeout.message == "No answer from ElevenLabs (ReadTimeout)"


def test_messages_never_dump_headers_or_the_raw_error() -> None:
    exc = _api_error(
        429,
        {"detail": {"code": "rate_limit_exceeded", "message": "Slow down"}},
        headers={"x-request-id": "req-abc", "set-cookie": "session=zzz", "retry-after": "2"},
    )
    error = classify(exc, operation="create")
    for leaked in ("req-abc", "session=zzz", "headers", "status_code", "{"):
        assert leaked not in error.message


@pytest.mark.parametrize(
    "exc",
    [
        _api_error(401, {"detail": {"status": "invalid_api_key", "message": f"Invalid key {KEY}"}}),
        _api_error(400, {"detail": f"bad header xi-api-key: {KEY}"}),
        _api_error(422, {"detail": [{"loc": ["header", KEY], "msg": KEY}]}),
        _api_error(500, f"proxy saw {KEY}"),
        _api_error(500, {"detail": {"code": KEY, "echo": KEY}}),
        _api_error(500, {"unexpected": [KEY]}),
        httpx.ReadError(f"reset while sending {KEY}", request=_request()),
        ValueError(f"weird {KEY}"),
    ],
)
def test_the_api_key_is_redacted_from_messages(exc: Exception) -> None:
    error = classify(exc, operation="create", api_key=KEY)
    assert KEY not in error.message
    assert KEY[:12] not in error.message
    assert "***" in error.message


@pytest.mark.parametrize(
    "key", ["bad\nkey-secret-1234", "bad\x00key-secret-1234", 'q"uote-secret\\1234']
)
def test_the_api_key_is_redacted_in_its_escaped_forms(key: str) -> None:
    # h11 refuses such a header and names the value as a bytes repr.
    shown = repr(key.encode())
    error = classify(
        httpx.LocalProtocolError(f"Illegal header value {shown}"), operation="create", api_key=key
    )
    assert "secret" not in error.message
    json_error = classify(_api_error(400, f'{{"key": {key!r}}}'), operation="create", api_key=key)
    assert "secret" not in json_error.message


def test_messages_are_capped_and_redacted_before_capping() -> None:
    huge = classify(_api_error(500, {"detail": "x" * 10_000}), operation="create")
    assert len(huge.message) <= MAX_ERROR_MESSAGE
    many = [{"loc": ["body", f"f{i}"], "msg": "bad"} for i in range(2_000)]
    assert (
        len(classify(UnprocessableEntityError(body={"detail": many}), operation="create").message)
        <= MAX_ERROR_MESSAGE
    )
    # A key straddling the cut must not survive as a prefix.
    for pad in range(1_780, 1_820):
        error = classify(
            _api_error(500, "x" * pad + KEY + "y" * 50), operation="create", api_key=KEY
        )
        assert KEY[:8] not in error.message
        assert len(error.message) <= MAX_ERROR_MESSAGE


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=50),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(["detail", "message", "code", "status", "msg", "loc", "x"]),
            children,
            max_size=4,
        )
    ),
    max_leaves=20,
)


@settings(max_examples=200, deadline=None)
@given(
    status=st.one_of(st.none(), st.integers(min_value=100, max_value=999)),
    body=json_values | st.text(max_size=3000) | st.binary(max_size=100),
    operation=st.sampled_from(ALL_OPERATIONS),
)
def test_classify_never_fails_and_never_leaks(
    status: int | None, body: Any, operation: str
) -> None:
    def salt(value: Any) -> Any:
        if isinstance(value, str):
            return value + KEY
        if isinstance(value, list):
            return [salt(item) for item in value]
        if isinstance(value, dict):
            return {key: salt(item) for key, item in value.items()}
        return value

    error = classify(
        ApiError(status_code=status, headers={"retry-after": "x"}, body=salt(body)),
        operation=operation,
        api_key=KEY,
    )
    assert isinstance(error, RemoteError)
    assert KEY not in error.message
    assert 0 < len(error.message) <= MAX_ERROR_MESSAGE
    assert "\n" not in error.message


# --- the adapter's own logic, without HTTP ---------------------------------------------------


def _page(items: list[Any], cursor: str | None, has_more: bool) -> SimpleNamespace:
    return SimpleNamespace(documents=items, next_cursor=cursor, has_more=has_more)


def _item(doc_id: str, name: str, kind: str = "text") -> SimpleNamespace:
    return SimpleNamespace(id=doc_id, name=name, type=kind)


class _FakeList:
    """Stands in for the SDK's knowledge-base client: serves canned pages by cursor."""

    def __init__(self, pages: dict[str | None, SimpleNamespace]) -> None:
        self.pages = pages
        self.calls: list[dict[str, Any]] = []

    def list(self, **kwargs: Any) -> SimpleNamespace:
        self.calls.append(kwargs)
        return self.pages[kwargs["cursor"]]


def test_listing_skips_folders_and_follows_cursors() -> None:
    kb = ElevenLabsKB(KEY, base_url="http://127.0.0.1:9")
    fake = _FakeList(
        {
            None: _page([_item("a", "one"), _item("f", "one", "folder")], "c1", True),
            "c1": _page([_item("b", "one"), _item("c", "two", "file")], None, False),
        }
    )
    kb._kb = fake  # type: ignore[assignment]
    assert [(d.id, d.name) for d in kb.list_documents()] == [
        ("a", "one"),
        ("b", "one"),
        ("c", "two"),
    ]
    assert [call["cursor"] for call in fake.calls] == [None, "c1"]
    assert all(call["page_size"] == 100 for call in fake.calls)
    assert all(call["request_options"]["max_retries"] == 0 for call in fake.calls)
    assert [d.id for d in kb.find_by_name("one")] == ["a", "b"]


@pytest.mark.parametrize("bad_cursor", [None, "", "c0"])
def test_listing_stops_on_a_missing_or_repeated_cursor(bad_cursor: str | None) -> None:
    kb = ElevenLabsKB(KEY, base_url="http://127.0.0.1:9")
    fake = _FakeList(
        {
            None: _page([_item("a", "one")], "c0", True),
            "c0": _page([_item("b", "one")], bad_cursor, True),
        }
    )
    kb._kb = fake  # type: ignore[assignment]
    with pytest.raises(RemoteError) as caught:
        list(kb.list_documents())
    assert caught.value.error_type is ErrorType.UNKNOWN
    assert len(fake.calls) == 2


def test_a_page_missing_its_fields_ends_the_listing() -> None:
    # The SDK does not validate responses, so fields the server left out are simply absent.
    kb = ElevenLabsKB(KEY, base_url="http://127.0.0.1:9")
    kb._kb = _FakeList({None: SimpleNamespace()})  # type: ignore[assignment]
    assert list(kb.list_documents()) == []


def test_a_create_answer_without_an_id_is_an_ambiguous_failure() -> None:
    kb = ElevenLabsKB(KEY, base_url="http://127.0.0.1:9")
    kb._documents = SimpleNamespace(  # type: ignore[assignment]
        create_from_text=lambda **kwargs: SimpleNamespace(name="a", folder_path=[])
    )
    with pytest.raises(RemoteError) as caught:
        kb.create("a", "b")
    assert caught.value.error_type is ErrorType.UNKNOWN
    assert caught.value.ambiguous


def test_unexpected_exceptions_leave_as_remote_errors() -> None:
    kb = ElevenLabsKB(KEY, base_url="http://127.0.0.1:9")

    def explode(*args: Any, **kwargs: Any) -> Any:
        raise AttributeError(f"'NoneType' object has no attribute 'id' ({KEY})")

    kb._documents = SimpleNamespace(update=explode, get_content=explode)  # type: ignore[assignment]
    update = _fails(lambda: kb.update("x", "a", "b"))
    assert update.error_type is ErrorType.UNKNOWN
    assert update.ambiguous
    assert isinstance(update.__cause__, AttributeError)
    assert not _fails(lambda: kb.get_content("x")).ambiguous


def test_the_adapter_satisfies_the_protocol_and_hides_the_key() -> None:
    kb: KnowledgeBase = ElevenLabsKB(KEY, base_url="http://127.0.0.1:9")
    assert KEY not in repr(kb)
    assert KEY not in str(kb)


# --- through the real SDK, over HTTP, against the double ----------------------------------------


@pytest.fixture(scope="module")
def _double_server() -> Iterator[ElevenLabsDouble]:
    with ElevenLabsDouble(api_keys={KEY}, latency=0.0, concurrency_cap=None, seed=0) as server:
        yield server


@pytest.fixture
def double(_double_server: ElevenLabsDouble) -> ElevenLabsDouble:
    """The module's double, emptied of documents, scripts and request records."""
    _double_server.reset()
    return _double_server


@pytest.fixture
def kb(double: ElevenLabsDouble) -> ElevenLabsKB:
    return ElevenLabsKB(KEY, base_url=double.base_url, timeout=5.0)


def _fails(call: Callable[[], object]) -> RemoteError:
    """Run a call that must fail; check the error shows no key and no raw SDK dump."""
    with pytest.raises(RemoteError) as caught:
        call()
    error = caught.value
    assert KEY not in error.message
    assert KEY not in str(error)
    assert "headers:" not in error.message
    assert len(error.message) <= MAX_ERROR_MESSAGE
    assert error.__cause__ is not None
    return error


def test_create_returns_the_id_and_the_double_holds_the_text(
    kb: ElevenLabsKB, double: ElevenLabsDouble
) -> None:
    doc_id = kb.create("guide.md", "# Guide\nHello.")
    stored = double.documents[doc_id]
    assert stored.name == "guide.md"
    assert stored.text == "# Guide\nHello."
    assert double.count("POST", TEXT_PATH) == 1


def test_update_replaces_the_text_in_place(kb: ElevenLabsKB, double: ElevenLabsDouble) -> None:
    doc_id = kb.create("guide.md", "old text")
    kb.update(doc_id, "guide.md", "new text")
    assert list(double.documents) == [doc_id]
    assert double.documents[doc_id].text == "new text"
    assert kb.get_content(doc_id) == "new text"


def test_update_of_an_unknown_id_is_remote_not_found(
    kb: ElevenLabsKB, double: ElevenLabsDouble
) -> None:
    error = _fails(lambda: kb.update("does-not-exist", "guide.md", "text"))
    assert isinstance(error, RemoteNotFound)
    assert error.error_type is ErrorType.VALIDATION
    assert error.status_code == 404
    assert not error.ambiguous


def test_get_content_returns_the_text(kb: ElevenLabsKB) -> None:
    text = "Line one\nLine two — with unicode ✓\n"
    doc_id = kb.create("notes.txt", text)
    assert kb.get_content(doc_id) == text
    assert isinstance(_fails(lambda: kb.get_content("missing")), RemoteNotFound)


def _fill(double: ElevenLabsDouble, count: int) -> dict[str, str]:
    """Seed documents straight into the double (fast), as another client would have made them."""
    docs = [double.add_document(f"filler-{i:03d}.md", f"text {i}") for i in range(count)]
    return {doc.id: doc.name for doc in docs}


def test_find_by_name_scans_every_page(kb: ElevenLabsKB, double: ElevenLabsDouble) -> None:
    first = kb.create("report", "first copy")
    kb.create("report-2024", "prefix only")
    kb.create("Report", "other case")
    kb.create("report ", "trailing space")
    _fill(double, 105)
    last = kb.create("report", "second copy")
    before = double.count("GET", LIST_PATH)
    found = kb.find_by_name("report")
    assert sorted(doc.id for doc in found) == sorted([first, last])
    assert all(doc.name == "report" for doc in found)
    assert double.count("GET", LIST_PATH) - before >= 2
    assert kb.find_by_name("nobody") == []


def test_list_documents_pages_through_everything(
    kb: ElevenLabsKB, double: ElevenLabsDouble
) -> None:
    expected = _fill(double, 230)
    listed = kb.list_documents()
    assert double.count("GET", LIST_PATH) == 0  # lazy: nothing is fetched until iterated
    seen = {doc.id: doc.name for doc in listed}
    assert seen == expected
    assert double.count("GET", LIST_PATH) == 3


def test_list_documents_of_an_empty_knowledge_base(kb: ElevenLabsKB) -> None:
    assert list(kb.list_documents()) == []


def test_delete(kb: ElevenLabsKB, double: ElevenLabsDouble) -> None:
    keep = kb.create("keep", "k")
    gone = kb.create("gone", "g")
    kb.delete(gone)
    assert list(double.documents) == [keep]
    assert isinstance(_fails(lambda: kb.get_content(gone)), RemoteNotFound)
    assert isinstance(_fails(lambda: kb.delete(gone, force=True)), RemoteNotFound)


def test_a_wrong_key_is_an_auth_error(double: ElevenLabsDouble) -> None:
    wrong = "sk_wrong_key_9999999999999999"
    kb = ElevenLabsKB(wrong, base_url=double.base_url, timeout=5.0)
    error = _fails(lambda: kb.create("a", "b"))
    assert error.error_type is ErrorType.AUTH_ERROR
    assert error.status_code == 401
    assert not error.transient
    assert wrong not in error.message
    assert error.message == "ElevenLabs rejected the API key (401): Invalid API key"
    assert double.count("POST", TEXT_PATH) == 1
    assert double.documents == {}


def test_a_proxys_html_page_is_summarised(kb: ElevenLabsKB, double: ElevenLabsDouble) -> None:
    page = "<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>"
    double.script("GET", LIST_PATH, Fault.status(502, body=page))
    error = _fails(lambda: kb.find_by_name("x"))
    assert error.error_type is ErrorType.SERVER_ERROR
    assert error.message == "ElevenLabs answered 502: Bad Gateway"
    assert not error.ambiguous


def test_429_with_retry_after_is_a_rate_limit(kb: ElevenLabsKB, double: ElevenLabsDouble) -> None:
    double.script("POST", TEXT_PATH, Fault.status(429, headers={"Retry-After": "1"}))
    error = _fails(lambda: kb.create("a", "b"))
    assert error.error_type is ErrorType.RATE_LIMIT
    assert error.retry_after == 1.0
    assert error.transient
    assert not error.ambiguous
    assert error.message.startswith("ElevenLabs answered 429")
    assert double.count("POST", TEXT_PATH) == 1
    assert double.documents == {}


def test_retry_after_ms_wins(kb: ElevenLabsKB, double: ElevenLabsDouble) -> None:
    double.script(
        "GET", LIST_PATH, Fault.status(429, headers={"Retry-After": "9", "retry-after-ms": "1500"})
    )
    error = _fails(lambda: list(kb.list_documents()))
    assert error.retry_after == 1.5


def test_503_is_a_server_error(kb: ElevenLabsKB, double: ElevenLabsDouble) -> None:
    double.script("POST", TEXT_PATH, Fault.status(503))
    error = _fails(lambda: kb.create("a", "b"))
    assert error.error_type is ErrorType.SERVER_ERROR
    assert error.status_code == 503
    assert error.ambiguous  # a 5xx on a create may have been carried out
    assert double.count("POST", TEXT_PATH) == 1


def test_422_is_validation(kb: ElevenLabsKB, double: ElevenLabsDouble) -> None:
    body = {"detail": [{"loc": ["body", "text"], "msg": "Field required", "type": "missing"}]}
    double.script("POST", TEXT_PATH, Fault.status(422, body=body))
    error = _fails(lambda: kb.create("a", "b"))
    assert error.error_type is ErrorType.VALIDATION
    assert error.message == "ElevenLabs answered 422: body.text: Field required"
    assert not error.ambiguous


def test_a_name_the_service_rejects_is_validation(
    kb: ElevenLabsKB, double: ElevenLabsDouble
) -> None:
    double.reject_names("broken*")
    error = _fails(lambda: kb.create("broken-doc", "text"))
    assert error.error_type is ErrorType.VALIDATION
    assert double.documents == {}


def test_a_dropped_connection_is_network(kb: ElevenLabsKB, double: ElevenLabsDouble) -> None:
    double.script("POST", TEXT_PATH, Fault.drop())
    error = _fails(lambda: kb.create("a", "b"))
    assert error.error_type is ErrorType.NETWORK
    assert error.ambiguous
    assert double.count("POST", TEXT_PATH) == 1
    doc_id = kb.create("c", "d")
    double.script("GET", CONTENT_PATH, Fault.drop())
    read = _fails(lambda: kb.get_content(doc_id))
    assert read.error_type is ErrorType.NETWORK
    assert not read.ambiguous


def test_a_slow_answer_beyond_the_timeout_is_network_and_ambiguous(
    double: ElevenLabsDouble,
) -> None:
    kb = ElevenLabsKB(KEY, base_url=double.base_url, timeout=0.3)
    double.script("POST", TEXT_PATH, Fault.slow(1))
    started = time.monotonic()
    error = _fails(lambda: kb.create("slow", "text"))
    assert time.monotonic() - started < 0.9
    assert error.error_type is ErrorType.NETWORK
    assert error.ambiguous
    assert error.message == "No answer from ElevenLabs within 0.3 s (ReadTimeout)"
    assert double.count("POST", TEXT_PATH) == 1
    # And rightly so: the server carries the request out after the client gave up.
    deadline = time.monotonic() + 5
    while not double.docs_named("slow") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(double.docs_named("slow")) == 1


def test_commit_then_drop_is_ambiguous_and_the_document_exists(
    kb: ElevenLabsKB, double: ElevenLabsDouble
) -> None:
    double.script("POST", TEXT_PATH, Fault.commit_then_drop())
    error = _fails(lambda: kb.create("in-doubt", "text"))
    assert error.error_type is ErrorType.NETWORK
    assert error.ambiguous
    held = double.docs_named("in-doubt")
    assert len(held) == 1
    # What the engine does next: look before re-creating.
    assert [doc.id for doc in kb.find_by_name("in-doubt")] == [held[0].id]


def test_commit_then_500_is_an_ambiguous_server_error(
    kb: ElevenLabsKB, double: ElevenLabsDouble
) -> None:
    double.script("POST", TEXT_PATH, Fault.commit_then_status(500))
    error = _fails(lambda: kb.create("in-doubt", "text"))
    assert error.error_type is ErrorType.SERVER_ERROR
    assert error.ambiguous
    assert len(double.docs_named("in-doubt")) == 1
    assert double.count("POST", TEXT_PATH) == 1


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_connection_refused_is_network_and_not_ambiguous() -> None:
    port = _closed_port()
    kb = ElevenLabsKB(KEY, base_url=f"http://127.0.0.1:{port}", timeout=2.0)
    error = _fails(lambda: kb.create("a", "b"))
    assert error.error_type is ErrorType.NETWORK
    assert not error.ambiguous
    assert error.message.startswith(
        f"Network error talking to ElevenLabs at http://127.0.0.1:{port}: "
    )
    assert error.message.endswith(": connection refused (ConnectError)")


def test_a_key_the_http_layer_refuses_is_not_shown(double: ElevenLabsDouble) -> None:
    bad = "sk_bad\nkey_secret_part"
    kb = ElevenLabsKB(bad, base_url=double.base_url, timeout=2.0)
    with pytest.raises(RemoteError) as caught:
        kb.create("a", "b")
    assert "secret_part" not in caught.value.message
    assert caught.value.error_type is ErrorType.UNKNOWN


# Every failing call is exactly one HTTP request: the SDK would retry 408, 409, 429 and 5xx twice.
RETRIED_BY_THE_SDK = [
    Fault.status(429, headers={"Retry-After": "0"}),
    Fault.status(408),
    Fault.status(409),
    Fault.status(500),
    Fault.status(503),
    Fault.drop(),
]


@pytest.mark.parametrize("fault", RETRIED_BY_THE_SDK, ids=lambda fault: fault.label)
@pytest.mark.parametrize("operation", ["create", "update", "get_content", "delete", "list"])
def test_one_failed_call_is_one_request(
    kb: ElevenLabsKB, double: ElevenLabsDouble, fault: Any, operation: str
) -> None:
    doc_id = kb.create("target", "text") if operation != "create" else ""
    method, path, call = {
        "create": ("POST", TEXT_PATH, lambda: kb.create("other", "text")),
        "update": ("PATCH", DOC_PATH, lambda: kb.update(doc_id, "target", "new")),
        "get_content": ("GET", CONTENT_PATH, lambda: kb.get_content(doc_id)),
        "delete": ("DELETE", DOC_PATH, lambda: kb.delete(doc_id)),
        "list": ("GET", LIST_PATH, lambda: list(kb.list_documents())),
    }[operation]
    double.script(method, path, fault)
    before = len(double.requests)
    error = _fails(call)
    assert len(double.requests) - before == 1
    assert error.transient or error.error_type is ErrorType.UNKNOWN
    if error.error_type is ErrorType.SERVER_ERROR or error.error_type is ErrorType.NETWORK:
        assert error.ambiguous is (operation in MUTATING and error.status_code != 408)


# --- folders, agents, dependent agents and RAG, through the SDK against the double ---------------


def test_create_in_a_folder_and_list_the_folder(kb: ElevenLabsKB, double: ElevenLabsDouble) -> None:
    folder = double.add_folder("Support")
    sub = double.add_folder("Nested", parent_id=folder)
    inside = kb.create("faq.md", "text", folder_id=folder)
    at_root = kb.create("root.md", "text")
    deeper = double.add_document("deep.md", "x", folder_id=sub)
    assert double.documents[inside].folder_id == folder
    assert double.documents[at_root].folder_id is None
    creates = [json.loads(r.body) for r in double.requests if r.method == "POST"]
    assert creates == [
        {"text": "text", "name": "faq.md", "parent_folder_id": folder},
        {"text": "text", "name": "root.md"},  # no folder: not even a null parent_folder_id
    ]

    listed = kb.list_folder(folder)
    assert double.count("GET", LIST_PATH) == 0  # lazy, like list_documents
    assert [(d.id, d.name) for d in listed] == [(inside, "faq.md")]  # no subfolder, no grandchild
    assert [d.id for d in kb.list_folder(sub)] == [deeper.id]
    assert f"parent_folder_id={sub}" in double.requests[-1].query
    assert list(kb.list_folder("no-such-folder")) == []


def test_creating_in_a_missing_folder_is_validation(
    kb: ElevenLabsKB, double: ElevenLabsDouble
) -> None:
    error = _fails(lambda: kb.create("faq.md", "text", folder_id="gone"))
    assert error.error_type is ErrorType.VALIDATION
    assert error.code == "folder_not_found"
    assert not isinstance(error, RemoteNotFound)
    assert "base URL" not in error.message
    assert double.documents == {}


def test_list_folder_pages_through_everything(kb: ElevenLabsKB, double: ElevenLabsDouble) -> None:
    folder = double.add_folder("big")
    ids = [double.add_document(f"d{i:03d}", "x", folder_id=folder).id for i in range(105)]
    _fill(double, 3)
    assert [d.id for d in kb.list_folder(folder)] == ids
    assert double.count("GET", LIST_PATH) == 2


def test_listings_carry_the_creation_time(kb: ElevenLabsKB, double: ElevenLabsDouble) -> None:
    stamp = datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)
    folder = double.add_folder("F")
    doc = double.add_document("dated.md", "x", created_at=stamp.timestamp(), folder_id=folder)
    for listed in (
        list(kb.list_documents()),
        kb.find_by_name("dated.md"),
        list(kb.list_folder(folder)),
    ):
        assert listed == [RemoteDocument(doc.id, "dated.md", stamp)]
        created_at = listed[0].created_at
        assert created_at is not None
        assert created_at.utcoffset() == timedelta(0)


def test_folder_exists(kb: ElevenLabsKB, double: ElevenLabsDouble) -> None:
    folder = double.add_folder("F")
    doc = kb.create("d", "t")
    assert kb.folder_exists(folder) is True
    assert kb.folder_exists(doc) is False  # a document is no folder
    before = len(double.requests)
    assert kb.folder_exists("nope") is False
    assert len(double.requests) - before == 1
    double.script("GET", DOC_PATH, Fault.status(503))
    error = _fails(lambda: kb.folder_exists(folder))
    assert error.error_type is ErrorType.SERVER_ERROR
    assert not error.ambiguous


def test_check_key(kb: ElevenLabsKB, double: ElevenLabsDouble) -> None:
    kb.check_key()
    assert [(r.method, r.path, r.query, r.status) for r in double.requests] == [
        ("GET", LIST_PATH, "page_size=1", 200)
    ]
    wrong = ElevenLabsKB("sk_wrong_key_0000000000000000", base_url=double.base_url, timeout=5.0)
    error = _fails(wrong.check_key)
    assert error.error_type is ErrorType.AUTH_ERROR
    assert error.status_code == 401
    assert error.message == "ElevenLabs rejected the API key (401): Invalid API key"
    assert len(double.requests) == 2


def test_check_key_against_a_wrong_base_url_hints_at_it(double: ElevenLabsDouble) -> None:
    kb = ElevenLabsKB(KEY, base_url=double.base_url + "/v1", timeout=5.0)
    error = _fails(kb.check_key)
    assert error.error_type is ErrorType.UNKNOWN
    assert "base URL" in error.message


def test_dependent_agents(kb: ElevenLabsKB, double: ElevenLabsDouble) -> None:
    doc = kb.create("used", "t")
    assert kb.dependent_agents(doc) == []
    first = double.add_agent("first", [doc])
    second = double.add_agent("second", [doc])
    double.add_agent("unrelated")
    assert kb.dependent_agents(doc) == [first, second]
    missing = _fails(lambda: kb.dependent_agents("nope"))
    assert isinstance(missing, RemoteNotFound)
    assert missing.message.startswith("ElevenLabs has no such document (404)")


def test_dependent_agents_pages_through_everything(
    kb: ElevenLabsKB, double: ElevenLabsDouble
) -> None:
    doc = double.add_document("popular", "t")
    agents = [double.add_agent(f"a{i}", [doc.id]) for i in range(105)]
    assert kb.dependent_agents(doc.id) == agents
    assert double.count("GET", DEPENDENT_PATH) == 2
    assert "page_size=100" in double.requests[0].query


def test_deleting_a_document_an_agent_uses(kb: ElevenLabsKB, double: ElevenLabsDouble) -> None:
    doc = kb.create("used.md", "t")
    agent = double.add_agent("bot", [doc])
    error = _fails(lambda: kb.delete(doc))
    assert type(error) is RemoteError
    assert error.error_type is ErrorType.VALIDATION
    assert (error.status_code, error.code) == (400, "document_is_used_by_agents")
    assert not error.ambiguous
    assert not error.transient
    assert doc in double.documents
    assert kb.dependent_agents(doc) == [agent]

    kb.delete(doc, force=True)
    assert doc not in double.documents
    assert double.agent_kb(agent) == []
    assert kb.agent_documents(agent) == []
    assert isinstance(_fails(lambda: kb.delete(doc, force=True)), RemoteNotFound)


def test_agent_documents_read_and_write_the_agents_knowledge_base(
    kb: ElevenLabsKB, double: ElevenLabsDouble
) -> None:
    doc = kb.create("faq.md", "t")
    folder = double.add_folder("F")
    url = {"type": "url", "name": "site", "id": "u1", "usage_mode": "prompt"}
    agent = double.add_agent("bot", [doc, folder, url])
    documents = kb.agent_documents(agent)
    assert documents == [
        AgentDocument(doc, "faq.md", "text", "auto"),
        AgentDocument(folder, "F", "folder", "auto"),
        AgentDocument("u1", "site", "url", "prompt"),
    ]

    new = kb.create("new.md", "t")
    before = double.agents[agent]
    wanted = [*documents[1:], AgentDocument(new, "new.md")]
    kb.set_agent_documents(agent, wanted)
    assert kb.agent_documents(agent) == wanted
    patch = next(r for r in reversed(double.requests) if r.method == "PATCH")
    assert patch.path == f"/v1/convai/agents/{agent}"
    assert json.loads(patch.body) == {
        "conversation_config": {
            "agent": {
                "prompt": {
                    "knowledge_base": [
                        {"type": "folder", "name": "F", "id": folder, "usage_mode": "auto"},
                        {"type": "url", "name": "site", "id": "u1", "usage_mode": "prompt"},
                        {"type": "text", "name": "new.md", "id": new, "usage_mode": "auto"},
                    ]
                }
            }
        }
    }
    # Only the list changed: the rest of the agent's configuration is as it was.
    after = double.agents[agent]
    for config in (before, after):
        config["conversation_config"]["agent"]["prompt"].pop("knowledge_base")
        config["metadata"].pop("updated_at_unix_secs")
    assert after == before

    kb.set_agent_documents(agent, [])
    assert double.agent_kb(agent) == []


@pytest.mark.parametrize(
    "answer",
    [
        SimpleNamespace(),
        SimpleNamespace(conversation_config=None),
        SimpleNamespace(conversation_config=SimpleNamespace(agent=SimpleNamespace(prompt=None))),
        SimpleNamespace(
            conversation_config=SimpleNamespace(
                agent=SimpleNamespace(prompt=SimpleNamespace(knowledge_base=None))
            )
        ),
        {"conversation_config": {"agent": {"prompt": {}}}},
    ],
    ids=["nothing", "no-config", "no-prompt", "null-list", "dicts"],
)
def test_an_agent_without_a_knowledge_base_has_no_documents(answer: Any) -> None:
    kb = ElevenLabsKB(KEY, base_url="http://127.0.0.1:9")
    agents = SimpleNamespace(get=lambda *args, **kwargs: answer)
    kb._client = SimpleNamespace(conversational_ai=SimpleNamespace(agents=agents))  # type: ignore[assignment]
    assert kb.agent_documents("agent") == []


def test_odd_knowledge_base_entries_are_read_defensively() -> None:
    kb = ElevenLabsKB(KEY, base_url="http://127.0.0.1:9")
    entries = [
        SimpleNamespace(id="d", name=None, type=None, usage_mode=None),
        SimpleNamespace(name="no id", type="text"),
        {"id": "e", "name": "as a dict", "type": "file", "usage_mode": "prompt"},
    ]
    answer = SimpleNamespace(
        conversation_config=SimpleNamespace(
            agent=SimpleNamespace(prompt=SimpleNamespace(knowledge_base=entries))
        )
    )
    agents = SimpleNamespace(get=lambda *args, **kwargs: answer)
    kb._client = SimpleNamespace(conversational_ai=SimpleNamespace(agents=agents))  # type: ignore[assignment]
    assert kb.agent_documents("agent") == [
        AgentDocument("d", "", "text", "auto"),
        AgentDocument("e", "as a dict", "file", "prompt"),
    ]


def test_an_unknown_agent_is_remote_not_found(kb: ElevenLabsKB, double: ElevenLabsDouble) -> None:
    calls: list[Callable[[], object]] = [
        lambda: kb.agent_documents("agent_nope"),
        lambda: kb.set_agent_documents("agent_nope", []),
    ]
    for call in calls:
        before = len(double.requests)
        error = _fails(call)
        assert isinstance(error, RemoteNotFound)
        assert error.status_code == 404
        assert error.message.startswith("ElevenLabs has no such agent (404)")
        assert len(double.requests) - before == 1


def test_a_conflict_writing_the_agent_keeps_its_409(
    kb: ElevenLabsKB, double: ElevenLabsDouble
) -> None:
    agent = double.add_agent("bot")
    wanted = [AgentDocument("d", "n")]
    double.script("PATCH", AGENT_PATH, Fault.status(409))
    error = _fails(lambda: kb.set_agent_documents(agent, wanted))
    assert error.status_code == 409  # what a caller retries on (after reading the agent again)
    assert error.error_type is ErrorType.UNKNOWN
    assert not error.ambiguous
    assert double.count("PATCH", AGENT_PATH) == 1
    assert double.agent_kb(agent) == []
    kb.set_agent_documents(agent, wanted)
    assert kb.agent_documents(agent) == [AgentDocument("d", "n", "text", "auto")]


def test_a_server_error_after_writing_the_agent_is_ambiguous(
    kb: ElevenLabsKB, double: ElevenLabsDouble
) -> None:
    agent = double.add_agent("bot")
    double.script("PATCH", AGENT_PATH, Fault.commit_then_status(503))
    error = _fails(lambda: kb.set_agent_documents(agent, [AgentDocument("d", "n")]))
    assert error.error_type is ErrorType.SERVER_ERROR
    assert error.ambiguous
    assert [loc["id"] for loc in double.agent_kb(agent)] == ["d"]  # it was written


def test_compute_rag_index(kb: ElevenLabsKB, double: ElevenLabsDouble) -> None:
    big = kb.create("big.md", "x" * 600)
    assert [kb.compute_rag_index(big, MODEL) for _ in range(4)] == [
        "created",
        "processing",
        "succeeded",
        "succeeded",
    ]
    assert kb.compute_rag_index(kb.create("small.md", "x"), MODEL) == "document_too_small"
    double.rag_outcome = "rag_limit_exceeded"
    assert kb.compute_rag_index(kb.create("over.md", "x" * 600), MODEL) == "rag_limit_exceeded"
    assert isinstance(_fails(lambda: kb.compute_rag_index("nope", MODEL)), RemoteNotFound)
    bad = _fails(lambda: kb.compute_rag_index(big, "no-such-model"))
    assert (bad.error_type, bad.status_code) == (ErrorType.VALIDATION, 422)


def test_rag_statuses_are_lower_cased_and_required() -> None:
    kb = ElevenLabsKB(KEY, base_url="http://127.0.0.1:9")
    answers = iter([SimpleNamespace(status="SUCCEEDED "), SimpleNamespace(status=None)])
    kb._document = SimpleNamespace(  # type: ignore[assignment]
        compute_rag_index=lambda *args, **kwargs: next(answers)
    )
    assert kb.compute_rag_index("d", MODEL) == "succeeded"
    with pytest.raises(RemoteError) as caught:
        kb.compute_rag_index("d", MODEL)
    assert caught.value.error_type is ErrorType.UNKNOWN


def test_dependent_agents_without_ids_are_named() -> None:
    kb = ElevenLabsKB(KEY, base_url="http://127.0.0.1:9")
    page = SimpleNamespace(
        agents=[
            SimpleNamespace(type="unknown", id="a1"),
            SimpleNamespace(type="available", name="named only"),
            SimpleNamespace(type="available", id="a1", name="again"),
            SimpleNamespace(type="odd"),
        ],
        has_more=False,
    )
    kb._documents = SimpleNamespace(get_agents=lambda *args, **kwargs: page)  # type: ignore[assignment]
    assert kb.dependent_agents("d") == ["a1", "named only"]


NEW_OPERATIONS = (
    "dependent_agents",
    "list_folder",
    "folder_exists",
    "check_key",
    "agent_documents",
    "set_agent_documents",
    "compute_rag_index",
)


@pytest.mark.parametrize("fault", RETRIED_BY_THE_SDK, ids=lambda fault: fault.label)
@pytest.mark.parametrize("operation", NEW_OPERATIONS)
def test_one_failed_call_of_the_newer_operations_is_one_request(
    kb: ElevenLabsKB, double: ElevenLabsDouble, fault: Any, operation: str
) -> None:
    doc = double.add_document("target", "x" * 600).id
    folder = double.add_folder("F")
    agent = double.add_agent("bot", [doc])
    calls: dict[str, tuple[str, str, Callable[[], object]]] = {
        "dependent_agents": ("GET", DEPENDENT_PATH, lambda: kb.dependent_agents(doc)),
        "list_folder": ("GET", LIST_PATH, lambda: list(kb.list_folder(folder))),
        "folder_exists": ("GET", DOC_PATH, lambda: kb.folder_exists(folder)),
        "check_key": ("GET", LIST_PATH, kb.check_key),
        "agent_documents": ("GET", AGENT_PATH, lambda: kb.agent_documents(agent)),
        "set_agent_documents": ("PATCH", AGENT_PATH, lambda: kb.set_agent_documents(agent, [])),
        "compute_rag_index": ("POST", RAG_PATH, lambda: kb.compute_rag_index(doc, MODEL)),
    }
    method, path, call = calls[operation]
    double.script(method, path, fault)
    error = _fails(call)
    assert len(double.requests) == 1
    assert error.status_code == fault.code
    assert error.transient or error.error_type is ErrorType.UNKNOWN
    if error.error_type is ErrorType.SERVER_ERROR or error.error_type is ErrorType.NETWORK:
        assert error.ambiguous is (operation in MUTATING_OPERATIONS and error.status_code != 408)
    assert double.agent_kb(agent)[0]["id"] == doc  # a refused write changed nothing
