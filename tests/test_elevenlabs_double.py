"""The ElevenLabs API double, driven through the real `elevenlabs` SDK.

The SDK parses responses without checking them, so every successful JSON body the double sends
here is also validated against the SDK's own response models: if the double drifts from the SDK
kbsync ships with, these tests fail (see ELEVENLABS_API.md, "Keeping a local double honest").
"""

from __future__ import annotations

import json
import select
import socket
import subprocess
import sys
import threading
import time
import typing
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from elevenlabs import ElevenLabs
from elevenlabs.conversational_ai.knowledge_base.documents.client import DocumentsClient
from elevenlabs.conversational_ai.knowledge_base.documents.types import (
    DocumentsGetResponse,
    DocumentsGetResponse_File,
    DocumentsGetResponse_Folder,
    DocumentsGetResponse_Text,
    DocumentsUpdateResponse,
    DocumentsUpdateResponse_Folder,
    DocumentsUpdateResponse_Text,
)
from elevenlabs.core.api_error import ApiError
from elevenlabs.core.request_options import RequestOptions
from elevenlabs.errors import UnprocessableEntityError
from elevenlabs.types import (
    AddKnowledgeBaseResponseModel,
    GetAgentResponseModel,
    GetKnowledgeBaseDependentAgentsResponseModel,
    GetKnowledgeBaseListResponseModel,
    KnowledgeBaseLocator,
    RagDocumentIndexResponseModel,
    RagIndexStatus,
)
from pydantic import TypeAdapter, ValidationError

from tests.support.elevenlabs_double import (
    AGENTS_PATH,
    KB_PATH,
    RAG_MIN_BYTES,
    RAG_MODELS,
    ElevenLabsDouble,
    Fault,
    StoredFolder,
)

KEY = "test-key"
NO_RETRY: RequestOptions = {"max_retries": 0}
TEXT_PATH = f"{KB_PATH}/text"
DOC_PATH = f"{KB_PATH}/{{id}}"
AGENT_PATH = f"{AGENTS_PATH}/{{id}}"
MODEL = RAG_MODELS[0]
LONG_TEXT = "RAG " * 200  # 800 bytes: big enough to be indexed
REPO_ROOT = Path(__file__).resolve().parents[1]

# The SDK's own model code (unchecked_base_model) trips pydantic's deprecation of `__fields__` on
# every discriminated union it parses: hundreds of warnings that are not about this project.
pytestmark = pytest.mark.filterwarnings("ignore:The `__fields__` attribute is deprecated")
NO_TLS = False
"""The double is plain HTTP; skipping the CA bundle saves ~50 ms per client."""

_GET_ADAPTER: TypeAdapter[Any] = TypeAdapter(DocumentsGetResponse)
_UPDATE_ADAPTER: TypeAdapter[Any] = TypeAdapter(DocumentsUpdateResponse)
_LOCATORS: TypeAdapter[Any] = TypeAdapter(list[KnowledgeBaseLocator])
RAG_STATUSES = set(typing.get_args(typing.get_args(RagIndexStatus)[0]))
"""The statuses the SDK names (its model also lets any other value through)."""


def validate_agent(payload: Any) -> str:
    """An agent body: the SDK's model, and its knowledge base as a list of locators."""
    GetAgentResponseModel.model_validate(payload)
    _LOCATORS.validate_python(payload["conversation_config"]["agent"]["prompt"]["knowledge_base"])
    return "GetAgentResponseModel"


def validate_success(method: str, path: str, payload: Any) -> str:
    """Validate one 2xx JSON body against the SDK model of its endpoint; returns the model."""
    if path.startswith(AGENTS_PATH + "/"):
        assert method in ("GET", "PATCH")
        return validate_agent(payload)
    rest = path.removeprefix(KB_PATH).strip("/")
    model: str | None = None
    match (method, rest.split("/") if rest else []):
        case ("POST", ["text" | "file" | "folder"]):
            AddKnowledgeBaseResponseModel.model_validate(payload)
            model = "AddKnowledgeBaseResponseModel"
        case ("POST", [_, "rag-index"]):
            RagDocumentIndexResponseModel.model_validate(payload)
            assert payload["status"] in RAG_STATUSES
            assert payload["model"] in RAG_MODELS
            model = "RagDocumentIndexResponseModel"
        case ("GET", []):
            GetKnowledgeBaseListResponseModel.model_validate(payload)
            model = "GetKnowledgeBaseListResponseModel"
        case ("GET", [_]):
            _GET_ADAPTER.validate_python(payload)
            model = "DocumentsGetResponse"
        case ("PATCH", [_]):
            _UPDATE_ADAPTER.validate_python(payload)
            model = "DocumentsUpdateResponse"
        case ("GET", [_, "dependent-agents"]):
            GetKnowledgeBaseDependentAgentsResponseModel.model_validate(payload)
            model = "GetKnowledgeBaseDependentAgentsResponseModel"
        case ("DELETE", [_]):
            assert payload == {}
            model = "delete"
    if model is None:
        raise AssertionError(f"no SDK model known for {method} {path}")
    return model


class Responses:
    """Every response the SDK received (an httpx hook), so all of them can be validated."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.items: list[httpx.Response] = []

    def hook(self, response: httpx.Response) -> None:
        response.read()
        with self._lock:
            self.items.append(response)

    def validate_all(self) -> list[str]:
        """Validate every 2xx JSON response; the models used, in order."""
        with self._lock:
            items = list(self.items)
        return [
            validate_success(r.request.method, r.request.url.path, r.json())
            for r in items
            if r.is_success and r.headers.get("content-type", "").startswith("application/json")
        ]


@pytest.fixture
def double() -> Iterator[ElevenLabsDouble]:
    with ElevenLabsDouble(api_keys={KEY}, latency=0.0, concurrency_cap=None, seed=0) as server:
        yield server
    assert server.errors == [], "the double hit an internal error"


@pytest.fixture
def responses() -> Responses:
    return Responses()


@pytest.fixture
def make_client(
    double: ElevenLabsDouble, responses: Responses
) -> Iterator[Callable[..., ElevenLabs]]:
    """Build SDK clients pointed at the double; all their successes are validated at the end."""
    http_clients: list[httpx.Client] = []

    def make(api_key: str | None = KEY) -> ElevenLabs:
        http = httpx.Client(timeout=5.0, verify=NO_TLS, event_hooks={"response": [responses.hook]})
        http_clients.append(http)
        return ElevenLabs(api_key=api_key, base_url=double.base_url, httpx_client=http)

    yield make
    for http in http_clients:
        http.close()
    responses.validate_all()


@pytest.fixture
def client(make_client: Callable[..., ElevenLabs]) -> ElevenLabs:
    return make_client()


@pytest.fixture
def docs(client: ElevenLabs) -> DocumentsClient:
    documents: DocumentsClient = client.conversational_ai.knowledge_base.documents
    return documents


def create(
    docs: DocumentsClient, name: str, text: str = "text", timeout_in_seconds: float | None = None
) -> str:
    """Create a text document with the SDK's retries off; its id."""
    options: RequestOptions = {"max_retries": 0}
    if timeout_in_seconds is not None:
        # Typed int in the SDK, but httpx takes fractions of a second.
        options["timeout_in_seconds"] = timeout_in_seconds  # type: ignore[typeddict-item]
    return docs.create_from_text(text=text, name=name, request_options=options).id


def raw(double: ElevenLabsDouble, method: str, path: str, **kwargs: Any) -> httpx.Response:
    """A request the SDK cannot make (e.g. a body missing a required field)."""
    headers = {"xi-api-key": KEY, **kwargs.pop("headers", {})}
    with httpx.Client(timeout=5.0, verify=NO_TLS) as http:
        return http.request(method, double.base_url + path, headers=headers, **kwargs)


# --- the endpoints ------------------------------------------------------------------------------


def test_create_get_content_update_agents_delete(
    client: ElevenLabs, docs: DocumentsClient, double: ElevenLabsDouble, responses: Responses
) -> None:
    text = "Hello\r\nwörld ✓"
    created = docs.create_from_text(text=text, name="faq.md", request_options=NO_RETRY)
    assert created.name == "faq.md"
    assert len(created.id) == 20
    assert created.id.isalnum()
    stored = double.documents[created.id]
    assert (stored.name, stored.text, stored.type) == ("faq.md", text, "text")

    got = docs.get(created.id, request_options=NO_RETRY)
    assert isinstance(got, DocumentsGetResponse_Text)  # the SDK picked the text variant
    assert (got.id, got.name) == (created.id, "faq.md")
    assert got.metadata.size_bytes == len(text.encode())
    assert docs.get_content(created.id, request_options=NO_RETRY) == text

    updated = docs.update(created.id, name="faq-v2.md", content="New", request_options=NO_RETRY)
    assert isinstance(updated, DocumentsUpdateResponse_Text)
    assert updated.name == "faq-v2.md"
    assert list(double.documents) == [created.id]
    assert double.documents[created.id].text == "New"
    assert docs.get_content(created.id, request_options=NO_RETRY) == "New"

    agents = docs.get_agents(created.id, request_options=NO_RETRY)
    assert agents.agents == []
    assert agents.has_more is False

    assert docs.delete(created.id, force=True, request_options=NO_RETRY) == {}
    assert double.documents == {}
    assert responses.validate_all() == [
        "AddKnowledgeBaseResponseModel",
        "DocumentsGetResponse",
        "DocumentsUpdateResponse",
        "GetKnowledgeBaseDependentAgentsResponseModel",
        "delete",
    ]


def test_create_from_file_keeps_the_exact_text(
    docs: DocumentsClient, double: ElevenLabsDouble, responses: Responses
) -> None:
    data = "# Guide\r\nlïne two\n".encode()
    created = docs.create_from_file(
        file=("guide.md", data, "text/markdown"), name="guide", request_options=NO_RETRY
    )
    assert created.name == "guide"
    assert double.documents[created.id].text == data.decode()
    got = docs.get(created.id, request_options=NO_RETRY)
    assert isinstance(got, DocumentsGetResponse_File)
    assert got.filename == "guide.md"
    assert docs.get_content(created.id, request_options=NO_RETRY) == data.decode()
    assert responses.validate_all() == ["AddKnowledgeBaseResponseModel", "DocumentsGetResponse"]


def test_empty_or_missing_text_is_422(docs: DocumentsClient, double: ElevenLabsDouble) -> None:
    with pytest.raises(UnprocessableEntityError) as caught:
        docs.create_from_text(text="", name="empty", request_options=NO_RETRY)
    assert caught.value.status_code == 422
    assert caught.value.body["detail"][0]["loc"] == ["body", "text"]

    missing = raw(double, "POST", TEXT_PATH, json={"name": "no text"})
    assert missing.status_code == 422
    assert missing.json() == {
        "detail": [{"loc": ["body", "text"], "msg": "Field required", "type": "missing"}]
    }
    assert double.documents == {}


@pytest.mark.parametrize("operation", ["get", "update", "delete", "get_content", "get_agents"])
def test_unknown_document_is_404(docs: DocumentsClient, operation: str) -> None:
    calls: dict[str, Callable[[], object]] = {
        "get": lambda: docs.get("nope", request_options=NO_RETRY),
        "update": lambda: docs.update("nope", name="x", request_options=NO_RETRY),
        "delete": lambda: docs.delete("nope", request_options=NO_RETRY),
        "get_content": lambda: docs.get_content("nope", request_options=NO_RETRY),
        "get_agents": lambda: docs.get_agents("nope", request_options=NO_RETRY),
    }
    with pytest.raises(ApiError) as caught:
        calls[operation]()
    assert caught.value.status_code == 404
    assert caught.value.body["detail"]["status"] == "document_not_found"


def test_unknown_routes_are_404(double: ElevenLabsDouble) -> None:
    for method, path in [("GET", "/v1/voices"), ("POST", f"{KB_PATH}/url"), ("PUT", KB_PATH)]:
        response = raw(double, method, path, json={})
        assert response.status_code == 404
        assert response.json() == {"detail": "Not Found"}


def test_list_pages_through_more_than_100_documents(
    client: ElevenLabs, docs: DocumentsClient, responses: Responses
) -> None:
    kb = client.conversational_ai.knowledge_base
    ids = [create(docs, f"doc-{i:03d}") for i in range(130)]

    first = kb.list(page_size=100, request_options=NO_RETRY)
    assert len(first.documents) == 100
    assert first.has_more is True
    assert first.next_cursor is not None
    second = kb.list(page_size=100, cursor=first.next_cursor, request_options=NO_RETRY)
    assert (len(second.documents), second.has_more, second.next_cursor) == (30, False, None)
    assert [d.id for d in [*first.documents, *second.documents]] == ids  # oldest first
    assert all(d.type == "text" and d.dependent_agents == [] for d in first.documents)

    assert len(kb.list(request_options=NO_RETRY).documents) == 30  # the default page size
    with pytest.raises(UnprocessableEntityError):
        kb.list(page_size=101, request_options=NO_RETRY)
    assert responses.validate_all().count("GetKnowledgeBaseListResponseModel") == 3


def test_paging_survives_deleting_what_was_already_seen(
    client: ElevenLabs, double: ElevenLabsDouble
) -> None:
    kb = client.conversational_ai.knowledge_base
    ids = [double.add_document(f"d{i}", "x").id for i in range(5)]
    first = kb.list(page_size=2, request_options=NO_RETRY)
    for seen in first.documents:
        kb.documents.delete(seen.id, request_options=NO_RETRY)
    rest = kb.list(page_size=10, cursor=first.next_cursor, request_options=NO_RETRY)
    assert [d.id for d in rest.documents] == ids[2:]


def test_search_is_a_case_insensitive_name_prefix(
    client: ElevenLabs, docs: DocumentsClient
) -> None:
    kb = client.conversational_ai.knowledge_base
    for name in ["FAQ.md", "faq-old.md", "about-faq.md"]:
        create(docs, name)

    def names(**query: Any) -> list[str]:
        return [d.name for d in kb.list(request_options=NO_RETRY, **query).documents]

    assert names(search="faq") == ["FAQ.md", "faq-old.md"]
    assert names(search="FAQ-") == ["faq-old.md"]
    assert names(search="zzz") == []
    assert names(types=["file"]) == []
    assert names(types=["text"]) == ["FAQ.md", "faq-old.md", "about-faq.md"]


# --- the SDK's models do check what the double sends ---------------------------------------------


def test_the_validators_reject_a_drifted_body() -> None:
    # Guards the guard: if these passed anything, the validation above would prove nothing.
    folder = {
        "type": "folder",
        "id": "f",
        "name": "F",
        "metadata": {"created_at_unix_secs": 1, "last_updated_at_unix_secs": 1, "size_bytes": 0},
        "supported_usages": ["auto"],
        "access_info": {
            "is_creator": True,
            "creator_name": "x",
            "creator_email": "x@example.com",
            "role": "admin",
        },
        "children_count": 0,
        "document_count": 0,
    }
    _GET_ADAPTER.validate_python(folder)
    with pytest.raises(ValidationError):
        _GET_ADAPTER.validate_python({**folder, "children_count": None})
    agent = {
        "agent_id": "a",
        "name": "A",
        "conversation_config": {"agent": {"prompt": {"knowledge_base": []}}},
        "metadata": {"created_at_unix_secs": 1, "updated_at_unix_secs": 1},
    }
    validate_agent(agent)
    with pytest.raises(ValidationError):
        GetAgentResponseModel.model_validate({**agent, "metadata": None})
    with pytest.raises(ValidationError):
        _LOCATORS.validate_python([{"type": "text", "id": "d"}])  # no name
    rag = {
        "id": "r",
        "model": MODEL,
        "status": "created",
        "progress_percentage": 0,
        "document_model_index_usage": {"used_bytes": 0},
    }
    RagDocumentIndexResponseModel.model_validate(rag)
    with pytest.raises(ValidationError):
        RagDocumentIndexResponseModel.model_validate({**rag, "document_model_index_usage": None})
    with pytest.raises(ValidationError):
        GetKnowledgeBaseDependentAgentsResponseModel.model_validate(
            {"agents": [{"type": "available", "id": "a"}], "has_more": False}
        )


# --- folders -------------------------------------------------------------------------------------


def test_folders_hold_documents_and_nest(
    client: ElevenLabs, docs: DocumentsClient, double: ElevenLabsDouble, responses: Responses
) -> None:
    kb = client.conversational_ai.knowledge_base
    outer = docs.create_folder(name="Support", request_options=NO_RETRY)
    assert outer.folder_path == []
    inner = docs.create_folder(name="FAQ", parent_folder_id=outer.id, request_options=NO_RETRY)
    assert [seg.id for seg in inner.folder_path or []] == [outer.id]
    root_doc = create(docs, "root.md")
    in_outer = docs.create_from_text(
        text="o", name="outer.md", parent_folder_id=outer.id, request_options=NO_RETRY
    )
    in_inner = docs.create_from_file(
        file=("inner.md", b"i", "text/markdown"),
        name="inner.md",
        parent_folder_id=inner.id,
        request_options=NO_RETRY,
    )
    assert [seg.id for seg in in_inner.folder_path or []] == [outer.id, inner.id]

    assert double.documents[in_outer.id].folder_id == outer.id
    assert double.documents[in_inner.id].folder_id == inner.id
    assert double.documents[root_doc].folder_id is None
    assert double.folders[inner.id] == StoredFolder(
        inner.id,
        "FAQ",
        double.folders[inner.id].created_at,
        double.folders[inner.id].updated_at,
        outer.id,
    )
    assert set(double.documents) == {root_doc, in_outer.id, in_inner.id}  # folders apart

    got = docs.get(outer.id, request_options=NO_RETRY)
    assert isinstance(got, DocumentsGetResponse_Folder)
    assert (got.children_count, got.document_count) == (2, 2)  # FAQ + outer.md; both docs
    assert got.metadata.size_bytes == 0
    detail = docs.get(in_inner.id, request_options=NO_RETRY)
    assert detail.folder_parent_id == inner.id
    assert [(seg.id, seg.name) for seg in detail.folder_path or []] == [
        (outer.id, "Support"),
        (inner.id, "FAQ"),
    ]

    def listed(**query: Any) -> list[tuple[str, str, str | None]]:
        page = kb.list(request_options=NO_RETRY, **query)
        return [(d.name, d.type, d.folder_parent_id) for d in page.documents]

    assert listed() == [
        ("Support", "folder", None),
        ("FAQ", "folder", outer.id),
        ("root.md", "text", None),
        ("outer.md", "text", outer.id),
        ("inner.md", "file", inner.id),
    ]
    assert listed(parent_folder_id=outer.id) == [
        ("FAQ", "folder", outer.id),
        ("outer.md", "text", outer.id),
    ]
    assert listed(parent_folder_id=inner.id) == [("inner.md", "file", inner.id)]
    assert [name for name, _, _ in listed(ancestor_folder_id=outer.id)] == [
        "FAQ",
        "outer.md",
        "inner.md",
    ]
    assert listed(types=["folder"]) == [("Support", "folder", None), ("FAQ", "folder", outer.id)]
    assert listed(parent_folder_id="no-such-folder") == []
    assert [name for name, _, _ in listed(sort_by="name", folders_first=True)] == [
        "FAQ",
        "Support",
        "inner.md",
        "outer.md",
        "root.md",
    ]
    item = kb.list(parent_folder_id=inner.id, request_options=NO_RETRY).documents[0]
    assert [seg.id for seg in item.folder_path or []] == [outer.id, inner.id]
    assert "AddKnowledgeBaseResponseModel" in responses.validate_all()


def test_a_folder_can_be_renamed_but_has_no_content(
    docs: DocumentsClient, double: ElevenLabsDouble
) -> None:
    folder_id = double.add_folder("Old")
    renamed = docs.update(folder_id, name="New", request_options=NO_RETRY)
    assert isinstance(renamed, DocumentsUpdateResponse_Folder)
    assert double.folders[folder_id].name == "New"
    with pytest.raises(UnprocessableEntityError):
        docs.update(folder_id, content="text", request_options=NO_RETRY)
    with pytest.raises(ApiError) as caught:
        docs.get_content(folder_id, request_options=NO_RETRY)
    assert caught.value.status_code == 404


def test_an_unknown_parent_folder_is_404(docs: DocumentsClient, double: ElevenLabsDouble) -> None:
    calls: list[Callable[[], object]] = [
        lambda: docs.create_from_text(
            text="t", name="n", parent_folder_id="nope", request_options=NO_RETRY
        ),
        lambda: docs.create_folder(name="n", parent_folder_id="nope", request_options=NO_RETRY),
    ]
    for call in calls:
        with pytest.raises(ApiError) as caught:
            call()
        assert caught.value.status_code == 404
        assert caught.value.body["detail"]["status"] == "folder_not_found"
    assert (double.documents, double.folders) == ({}, {})
    with pytest.raises(KeyError):
        double.add_document("n", "t", folder_id="nope")
    with pytest.raises(KeyError):
        double.add_folder("n", parent_id="nope")


def test_deleting_a_folder_needs_force_unless_empty(
    docs: DocumentsClient, double: ElevenLabsDouble
) -> None:
    empty = double.add_folder("empty")
    full = double.add_folder("full")
    sub = double.add_folder("sub", parent_id=full)
    inside = double.add_document("inside.md", "x", folder_id=sub).id
    keep = double.add_document("keep.md", "x").id
    docs.delete(empty, request_options=NO_RETRY)
    with pytest.raises(ApiError) as caught:
        docs.delete(full, request_options=NO_RETRY)
    assert caught.value.status_code == 400
    assert caught.value.body["detail"]["status"] == "folder_not_empty"
    assert set(double.folders) == {full, sub}
    agent = double.add_agent("bot", [inside, keep])
    docs.delete(full, force=True, request_options=NO_RETRY)
    assert (list(double.documents), double.folders) == ([keep], {})
    assert [loc["id"] for loc in double.agent_kb(agent)] == [keep]


# --- agents --------------------------------------------------------------------------------------


def test_an_agent_shows_its_knowledge_base(
    client: ElevenLabs, double: ElevenLabsDouble, responses: Responses
) -> None:
    doc = double.add_document("faq.md", "text")
    folder_id = double.add_folder("Support")
    url_locator = {"type": "url", "name": "site", "id": "url-1", "usage_mode": "prompt"}
    agent_id = double.add_agent("Support bot", [doc.id, folder_id, url_locator])
    assert agent_id.startswith("agent_")
    assert len(agent_id) == 32
    agent = client.conversational_ai.agents.get(agent_id, request_options=NO_RETRY)
    assert (agent.agent_id, agent.name) == (agent_id, "Support bot")
    assert agent.conversation_config.agent is not None
    assert agent.conversation_config.agent.prompt is not None
    kb = agent.conversation_config.agent.prompt.knowledge_base or []
    assert [(loc.type, loc.name, loc.id, loc.usage_mode) for loc in kb] == [
        ("text", "faq.md", doc.id, "auto"),
        ("folder", "Support", folder_id, "auto"),
        ("url", "site", "url-1", "prompt"),
    ]
    assert double.agent_kb(agent_id)[2] == url_locator
    assert list(double.agents) == [agent_id]
    assert double.agents[agent_id]["name"] == "Support bot"
    empty = double.add_agent("Empty bot")
    assert double.agent_kb(empty) == []
    assert responses.validate_all() == ["GetAgentResponseModel"]
    with pytest.raises(KeyError):
        double.agent_kb("agent_nope")
    with pytest.raises(KeyError):
        double.add_agent("bad", ["no-such-document"])


def test_patching_an_agent_merges_and_a_list_replaces(
    client: ElevenLabs, double: ElevenLabsDouble, responses: Responses
) -> None:
    old = double.add_document("old.md", "x")
    new = double.add_document("new.md", "y")
    agent_id = double.add_agent("bot", [old.id])
    before = double.agents[agent_id]
    locators = [{"type": "text", "name": "new.md", "id": new.id, "usage_mode": "prompt"}]
    updated = client.conversational_ai.agents.update(
        agent_id,
        conversation_config={"agent": {"prompt": {"knowledge_base": locators}}},
        request_options=NO_RETRY,
    )
    assert updated.conversation_config.agent is not None
    assert updated.conversation_config.agent.prompt is not None
    assert [loc.id for loc in updated.conversation_config.agent.prompt.knowledge_base or []] == [
        new.id
    ]
    after = double.agents[agent_id]
    assert double.agent_kb(agent_id) == locators
    # Everything not sent stayed: the rest of the prompt, the agent block, the other sections.
    prompt_before = before["conversation_config"]["agent"]["prompt"]
    prompt_after = after["conversation_config"]["agent"]["prompt"]
    assert {**prompt_before, "knowledge_base": locators} == prompt_after
    assert after["conversation_config"]["tts"] == before["conversation_config"]["tts"]
    assert (
        after["conversation_config"]["agent"]["first_message"]
        == before["conversation_config"]["agent"]["first_message"]
    )
    assert after["name"] == "bot"

    client.conversational_ai.agents.update(agent_id, name="renamed", request_options=NO_RETRY)
    assert double.agents[agent_id]["name"] == "renamed"
    assert double.agent_kb(agent_id) == locators
    assert responses.validate_all() == ["GetAgentResponseModel", "GetAgentResponseModel"]


@pytest.mark.parametrize(
    ("locator", "loc"),
    [
        ({"type": "text", "id": "d"}, "name"),
        ({"type": "text", "name": "n"}, "id"),
        ({"type": "video", "name": "n", "id": "d"}, "type"),
        ({"type": "text", "name": "n", "id": "d", "usage_mode": "always"}, "usage_mode"),
    ],
)
def test_a_bad_knowledge_base_entry_is_422(
    double: ElevenLabsDouble, locator: dict[str, str], loc: str
) -> None:
    agent_id = double.add_agent("bot")
    body = {"conversation_config": {"agent": {"prompt": {"knowledge_base": [locator]}}}}
    response = raw(double, "PATCH", f"{AGENTS_PATH}/{agent_id}", json=body)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"][-1] == loc
    assert double.agent_kb(agent_id) == []


def test_an_unknown_agent_is_404(client: ElevenLabs, double: ElevenLabsDouble) -> None:
    agents = client.conversational_ai.agents
    calls: list[Callable[[], object]] = [
        lambda: agents.get("agent_nope", request_options=NO_RETRY),
        lambda: agents.update("agent_nope", name="x", request_options=NO_RETRY),
    ]
    for call in calls:
        with pytest.raises(ApiError) as caught:
            call()
        assert caught.value.status_code == 404
        assert caught.value.body["detail"]["status"] == "agent_not_found"
    assert raw(double, "DELETE", f"{AGENTS_PATH}/agent_nope").json() == {"detail": "Not Found"}


def test_faults_can_be_scripted_on_the_agent_paths(
    client: ElevenLabs, double: ElevenLabsDouble
) -> None:
    agent_id = double.add_agent("bot")
    agents = client.conversational_ai.agents
    double.script("PATCH", AGENT_PATH, Fault.status(409), Fault.commit_then_status(503))
    with pytest.raises(ApiError) as conflict:
        agents.update(agent_id, name="first", request_options=NO_RETRY)
    assert conflict.value.status_code == 409
    assert double.agents[agent_id]["name"] == "bot"  # nothing written
    with pytest.raises(ApiError) as unavailable:
        agents.update(agent_id, name="second", request_options=NO_RETRY)
    assert unavailable.value.status_code == 503
    assert double.agents[agent_id]["name"] == "second"  # written, then the error
    double.script("GET", AGENT_PATH, Fault.drop())
    with pytest.raises(httpx.TransportError):
        agents.get(agent_id, request_options=NO_RETRY)
    assert double.count("PATCH", AGENT_PATH) == 2
    assert [r.fault for r in double.requests] == ["status:409", "commit_then_status:503", "drop"]


# --- dependent agents and deleting what agents use ------------------------------------------------


def test_dependent_agents_are_the_agents_that_use_a_document(
    client: ElevenLabs, docs: DocumentsClient, double: ElevenLabsDouble, responses: Responses
) -> None:
    used = double.add_document("used.md", "x")
    unused = double.add_document("unused.md", "x")
    first = double.add_agent("first", [used.id])
    second = double.add_agent("second", [unused.id, used.id])
    other = double.add_agent("other", [unused.id])

    agents = docs.get_agents(used.id, request_options=NO_RETRY)
    assert [(a.type, a.id, getattr(a, "name", None)) for a in agents.agents] == [
        ("available", first, "first"),
        ("available", second, "second"),
    ]
    assert agents.has_more is False
    page = docs.get_agents(used.id, page_size=1, request_options=NO_RETRY)
    assert ([a.id for a in page.agents], page.has_more) == ([first], True)
    rest = docs.get_agents(used.id, page_size=1, cursor=page.next_cursor, request_options=NO_RETRY)
    assert ([a.id for a in rest.agents], rest.has_more, rest.next_cursor) == ([second], False, None)

    listed = client.conversational_ai.knowledge_base.list(request_options=NO_RETRY).documents
    assert [[a.id for a in d.dependent_agents] for d in listed] == [
        [first, second],
        [second, other],
    ]
    assert responses.validate_all().count("GetKnowledgeBaseDependentAgentsResponseModel") == 3


def test_deleting_a_used_document_is_refused_without_force(
    docs: DocumentsClient, double: ElevenLabsDouble
) -> None:
    doc = double.add_document("used.md", "x")
    other = double.add_document("other.md", "x")
    agent_id = double.add_agent("bot", [doc.id, other.id])
    with pytest.raises(ApiError) as caught:
        docs.delete(doc.id, request_options=NO_RETRY)
    assert caught.value.status_code == 400
    assert caught.value.body["detail"]["status"] == "document_is_used_by_agents"
    assert agent_id in caught.value.body["detail"]["message"]
    assert doc.id in double.documents
    assert len(double.agent_kb(agent_id)) == 2
    updated_before = double.agents[agent_id]["metadata"]["updated_at_unix_secs"]

    assert docs.delete(doc.id, force=True, request_options=NO_RETRY) == {}
    assert doc.id not in double.documents
    assert [loc["id"] for loc in double.agent_kb(agent_id)] == [other.id]
    assert double.agents[agent_id]["metadata"]["updated_at_unix_secs"] >= updated_before
    assert docs.get_agents(other.id, request_options=NO_RETRY).agents[0].id == agent_id


# --- RAG indexing --------------------------------------------------------------------------------


def rag(client: ElevenLabs, doc_id: str, model: str = MODEL) -> tuple[str, float, int]:
    """One compute-RAG-index request: (status, progress, used bytes)."""
    answer = client.conversational_ai.knowledge_base.document.compute_rag_index(
        doc_id, model=model, request_options=NO_RETRY
    )
    return answer.status, answer.progress_percentage, answer.document_model_index_usage.used_bytes


def test_rag_indexing_advances_one_step_per_request(
    client: ElevenLabs, double: ElevenLabsDouble, responses: Responses
) -> None:
    doc = double.add_document("big.md", LONG_TEXT)
    size = len(LONG_TEXT.encode())
    assert double.rag_status(doc.id) is None
    assert rag(client, doc.id) == ("created", 0.0, 0)
    assert rag(client, doc.id) == ("processing", 50.0, 0)
    assert rag(client, doc.id) == ("succeeded", 100.0, size)
    assert rag(client, doc.id) == ("succeeded", 100.0, size)  # an end state stays
    assert double.rag_status(doc.id) == "succeeded"
    assert rag(client, doc.id, RAG_MODELS[1])[0] == "created"  # each model apart
    assert json.loads(double.requests[0].body) == {"model": MODEL}
    assert responses.validate_all() == ["RagDocumentIndexResponseModel"] * 5


def test_rag_outcomes(client: ElevenLabs, double: ElevenLabsDouble) -> None:
    small = double.add_document("small.md", "x" * (RAG_MIN_BYTES - 1))
    assert rag(client, small.id)[0] == "document_too_small"
    assert rag(client, small.id)[0] == "document_too_small"

    double.rag_outcome = "failed"
    failing = double.add_document("failing.md", LONG_TEXT)
    assert [rag(client, failing.id)[0] for _ in range(4)] == [
        "created",
        "processing",
        "failed",
        "failed",
    ]
    double.rag_outcome = "rag_limit_exceeded"
    over = double.add_document("over.md", LONG_TEXT)
    assert rag(client, over.id)[0] == "rag_limit_exceeded"  # known at once

    folder_id = double.add_folder("F")
    assert rag(client, folder_id)[0] == "cannot_index_folder"


def test_new_content_needs_a_new_index(
    client: ElevenLabs, docs: DocumentsClient, double: ElevenLabsDouble
) -> None:
    doc = double.add_document("doc.md", LONG_TEXT)
    for _ in range(3):
        rag(client, doc.id)
    docs.update(doc.id, name="renamed.md", request_options=NO_RETRY)
    assert double.rag_status(doc.id) == "succeeded"
    docs.update(doc.id, content=LONG_TEXT + "more", request_options=NO_RETRY)
    assert double.rag_status(doc.id) is None
    assert rag(client, doc.id)[0] == "created"


def test_rag_index_errors(client: ElevenLabs, double: ElevenLabsDouble) -> None:
    with pytest.raises(ApiError) as missing:
        rag(client, "nope")
    assert missing.value.status_code == 404
    doc = double.add_document("doc.md", LONG_TEXT)
    with pytest.raises(UnprocessableEntityError) as bad_model:
        rag(client, doc.id, "gpt-embeddings")
    assert bad_model.value.body["detail"][0]["loc"] == ["body", "model"]
    assert raw(double, "POST", f"{KB_PATH}/{doc.id}/rag-index", json={}).status_code == 422
    assert double.rag_status(doc.id) is None


# --- keys ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("api_key", ["wrong-key", None], ids=["wrong", "missing"])
def test_a_wrong_or_missing_key_is_401(
    make_client: Callable[..., ElevenLabs], double: ElevenLabsDouble, api_key: str | None
) -> None:
    docs = make_client(api_key).conversational_ai.knowledge_base.documents
    with pytest.raises(ApiError) as caught:
        docs.create_from_text(text="t", name="n", request_options=NO_RETRY)
    assert caught.value.status_code == 401
    assert caught.value.body == {
        "detail": {"status": "invalid_api_key", "message": "Invalid API key"}
    }
    assert double.documents == {}
    assert double.requests[-1].status == 401


def test_keys_can_change_at_runtime(docs: DocumentsClient, double: ElevenLabsDouble) -> None:
    create(docs, "before")
    double.api_keys.discard(KEY)
    double.api_keys.add("rotated")
    with pytest.raises(ApiError) as caught:
        create(docs, "after")
    assert caught.value.status_code == 401
    assert [d.name for d in double.documents.values()] == ["before"]


# --- faults -------------------------------------------------------------------------------------


def test_scripted_statuses_are_consumed_in_order(
    docs: DocumentsClient, double: ElevenLabsDouble
) -> None:
    double.script(
        "POST", TEXT_PATH, Fault.status(429, headers={"Retry-After": "1"}), Fault.status(503)
    )
    with pytest.raises(ApiError) as first:
        create(docs, "a")
    assert first.value.status_code == 429
    assert first.value.headers is not None
    assert first.value.headers["retry-after"] == "1"
    assert first.value.body["detail"]["code"] == "rate_limit_exceeded"
    assert first.value.body["detail"]["type"] == "rate_limit_error"

    with pytest.raises(ApiError) as second:
        create(docs, "a")
    assert second.value.status_code == 503
    assert second.value.body["detail"]["status"] == "service_unavailable"

    create(docs, "a")  # the queue is empty: back to normal
    assert len(double.docs_named("a")) == 1
    assert [r.fault for r in double.requests] == ["status:429", "status:503", None]
    assert [r.status for r in double.requests] == [429, 503, 200]
    assert double.pending_faults() == 0


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        (400, {"detail": {"status": "bad_request", "message": "Bad Request"}}),
        (500, {"detail": {"status": "internal_server_error", "message": "Internal Server Error"}}),
        (502, {"detail": {"status": "bad_gateway", "message": "Bad Gateway"}}),
        (503, {"detail": {"status": "service_unavailable", "message": "Service Unavailable"}}),
    ],
)
def test_default_error_bodies(
    docs: DocumentsClient, double: ElevenLabsDouble, code: int, expected: Any
) -> None:
    double.script("POST", TEXT_PATH, Fault.status(code))
    with pytest.raises(ApiError) as caught:
        create(docs, "a")
    assert (caught.value.status_code, caught.value.body) == (code, expected)


def test_a_scripted_422_is_the_list_form(docs: DocumentsClient, double: ElevenLabsDouble) -> None:
    double.script("POST", TEXT_PATH, Fault.status(422))
    with pytest.raises(UnprocessableEntityError) as caught:
        create(docs, "a")
    assert isinstance(caught.value.body["detail"], list)
    assert {"loc", "msg", "type"} <= set(caught.value.body["detail"][0])


def test_id_wildcard_and_a_custom_html_body(
    docs: DocumentsClient, double: ElevenLabsDouble
) -> None:
    doc_id = create(docs, "a")
    double.script("GET", DOC_PATH, Fault.status(502, body="<html>Bad gateway</html>"))
    # {id} is one segment: .../{id}/content does not match it.
    assert docs.get_content(doc_id, request_options=NO_RETRY) == "text"
    with pytest.raises(ApiError) as caught:
        docs.get(doc_id, request_options=NO_RETRY)
    assert caught.value.status_code == 502
    assert caught.value.body == "<html>Bad gateway</html>"
    assert double.count("GET", DOC_PATH) == 1
    assert double.count("GET", f"{DOC_PATH}/content") == 1
    assert double.count() == 3


def test_a_drop_is_a_transport_error_and_writes_nothing(
    docs: DocumentsClient, double: ElevenLabsDouble
) -> None:
    double.script("POST", TEXT_PATH, Fault.drop())
    with pytest.raises(httpx.TransportError):
        create(docs, "dropped")
    assert double.documents == {}
    assert (double.requests[-1].status, double.requests[-1].fault) == (None, "drop")
    create(docs, "next")  # the client recovers on a new connection
    assert [d.name for d in double.documents.values()] == ["next"]


def test_slow_beyond_the_timeout_times_out_but_still_commits(
    docs: DocumentsClient, double: ElevenLabsDouble
) -> None:
    double.script("POST", TEXT_PATH, Fault.slow(0.25))
    with pytest.raises(httpx.TimeoutException):
        create(docs, "slow", timeout_in_seconds=0.05)
    deadline = time.monotonic() + 3
    while not double.docs_named("slow") and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(double.docs_named("slow")) == 1  # a timeout says nothing about the outcome


def test_slow_within_the_timeout_only_delays(
    docs: DocumentsClient, double: ElevenLabsDouble
) -> None:
    double.script("POST", TEXT_PATH, Fault.slow(0.15))
    started = time.monotonic()
    create(docs, "slow")
    assert time.monotonic() - started >= 0.15
    assert double.requests[-1].fault == "slow:0.15"


def test_commit_then_drop_creates_a_document_the_client_never_hears_of(
    docs: DocumentsClient, double: ElevenLabsDouble
) -> None:
    double.script("POST", TEXT_PATH, Fault.commit_then_drop())
    with pytest.raises(httpx.TransportError):
        create(docs, "in-doubt")
    assert len(double.docs_named("in-doubt")) == 1
    assert double.requests[-1].status is None


def test_commit_then_status_500_creates_the_document(
    docs: DocumentsClient, double: ElevenLabsDouble
) -> None:
    double.script("POST", TEXT_PATH, Fault.commit_then_status(500))
    with pytest.raises(ApiError) as caught:
        create(docs, "in-doubt")
    assert caught.value.status_code == 500
    assert len(double.docs_named("in-doubt")) == 1
    assert double.requests[-1].fault == "commit_then_status:500"


def test_the_concurrency_cap_rejects_requests_beyond_it(
    docs: DocumentsClient, double: ElevenLabsDouble
) -> None:
    double.concurrency_cap = 2
    double.latency = 0.25
    workers = 6
    barrier = threading.Barrier(workers)

    def one(i: int) -> str | ApiError:
        barrier.wait()
        try:
            return create(docs, f"c{i}")
        except ApiError as exc:
            return exc

    with ThreadPoolExecutor(workers) as pool:
        outcomes = list(pool.map(one, range(workers)))
    rejected = [o for o in outcomes if isinstance(o, ApiError)]
    created = [o for o in outcomes if isinstance(o, str)]
    assert len(created) >= 2
    assert rejected
    for exc in rejected:
        assert exc.status_code == 429
        assert exc.body["detail"]["code"] == "concurrent_limit_exceeded"
        assert exc.body["detail"]["status"] == "concurrent_limit_exceeded"
        assert exc.headers is not None
        assert exc.headers["maximum-concurrent-requests"] == "2"
        assert int(exc.headers["current-concurrent-requests"]) > 2
    assert sorted(double.documents) == sorted(created)
    assert double.max_in_flight > 2
    assert double.in_flight == 0

    double.latency = 0.0
    for i in range(3):  # one at a time always fits, even right after a response
        create(docs, f"sequential-{i}")


def test_latency_delays_every_request(docs: DocumentsClient, double: ElevenLabsDouble) -> None:
    double.latency = 0.1
    started = time.monotonic()
    create(docs, "late")
    assert time.monotonic() - started >= 0.1


def test_a_hold_parks_one_request_until_released(
    docs: DocumentsClient, double: ElevenLabsDouble
) -> None:
    hold = double.hold("POST", TEXT_PATH)
    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(create, docs, "held")
        assert hold.arrived.wait(5)
        time.sleep(0.05)
        assert not pending.done()
        assert double.documents == {}  # not processed yet
        assert double.in_flight == 1
        hold.release()
        doc_id = pending.result(timeout=5)
    assert list(double.documents) == [doc_id]
    create(docs, "not held")  # one request per hold


def test_a_hold_gives_up_after_its_timeout(docs: DocumentsClient, double: ElevenLabsDouble) -> None:
    hold = double.hold("post", TEXT_PATH, timeout=0.1)
    create(docs, "eventually")
    assert hold.arrived.is_set()
    assert not hold.released
    assert len(double.docs_named("eventually")) == 1


def _run_with_random_faults(
    docs: DocumentsClient, double: ElevenLabsDouble, seed: int
) -> tuple[list[str | None], set[str]]:
    double.reset()
    double.random_faults(rate=0.5, seed=seed)
    retry_after: set[str] = set()
    for i in range(24):
        try:
            create(docs, f"r{i}")
        except ApiError as exc:
            if exc.status_code == 429 and exc.headers is not None:
                retry_after.add(exc.headers["retry-after"])
        except httpx.TransportError:
            pass
    return [r.fault for r in double.requests], retry_after


def test_random_faults_are_reproducible_with_the_same_seed(
    docs: DocumentsClient, double: ElevenLabsDouble
) -> None:
    first, retry_after = _run_with_random_faults(docs, double, seed=7)
    second, _ = _run_with_random_faults(docs, double, seed=7)
    other, _ = _run_with_random_faults(docs, double, seed=8)
    assert first == second
    assert first != other
    assert None in first
    assert set(first) - {None} <= {
        "status:429",
        "status:500",
        "status:503",
        "drop",
        "commit_then_drop",
    }
    assert len(set(first)) >= 3
    assert retry_after <= {"0", "1"}
    assert retry_after


def test_random_faults_kinds_and_off(docs: DocumentsClient, double: ElevenLabsDouble) -> None:
    double.random_faults(rate=1.0, kinds=("502",), seed=3)
    with pytest.raises(ApiError) as caught:
        create(docs, "a")
    assert caught.value.status_code == 502
    double.random_faults(0)
    create(docs, "b")
    assert [d.name for d in double.documents.values()] == ["b"]
    with pytest.raises(ValueError, match="unknown random fault kind"):
        double.random_faults(0.5, kinds=("teapot",))


def test_rejected_names_are_422(docs: DocumentsClient, double: ElevenLabsDouble) -> None:
    double.reject_names("broken*")
    with pytest.raises(UnprocessableEntityError) as caught:
        create(docs, "broken-pricing.md")
    assert caught.value.body["detail"][0]["loc"] == ["body", "name"]
    create(docs, "fine.md")
    assert [d.name for d in double.documents.values()] == ["fine.md"]


# --- bookkeeping --------------------------------------------------------------------------------


def test_reset_forgets_the_scenario_but_keeps_keys_and_port(
    docs: DocumentsClient, double: ElevenLabsDouble
) -> None:
    create(docs, "old")
    double.script("POST", TEXT_PATH, Fault.status(500), Fault.status(500))
    double.reject_names("new*")
    double.random_faults(1.0, kinds=("503",))
    base_url = double.base_url
    double.reset()
    assert (double.documents, double.requests, double.max_in_flight) == ({}, [], 0)
    assert double.pending_faults() == 0
    create(docs, "new")  # no scripted fault, random fault or rejected name left
    assert double.base_url == base_url
    assert [d.name for d in double.documents.values()] == ["new"]


def test_reset_forgets_folders_agents_and_rag_states(
    client: ElevenLabs, double: ElevenLabsDouble
) -> None:
    folder_id = double.add_folder("F")
    doc = double.add_document("d", LONG_TEXT, folder_id=folder_id)
    agent_id = double.add_agent("bot", [doc.id])
    rag(client, doc.id)
    double.rag_outcome = "failed"
    double.reset()
    assert (double.folders, double.agents, double.rag_status(doc.id)) == ({}, {}, None)
    assert double.rag_outcome == "succeeded"
    with pytest.raises(ApiError) as caught:
        client.conversational_ai.agents.get(agent_id, request_options=NO_RETRY)
    assert caught.value.status_code == 404


def test_a_request_from_before_reset_cannot_leak_into_the_next_scenario(
    docs: DocumentsClient, double: ElevenLabsDouble
) -> None:
    double.script("POST", TEXT_PATH, Fault.slow(0.2))
    with pytest.raises(httpx.TimeoutException):
        create(docs, "stale", timeout_in_seconds=0.05)
    double.reset()
    time.sleep(0.3)
    assert double.documents == {}


def test_requests_and_count_record_every_request(
    docs: DocumentsClient, double: ElevenLabsDouble
) -> None:
    doc_id = create(docs, "a")
    docs.get(doc_id, request_options=NO_RETRY)
    docs.get_content(doc_id, request_options=NO_RETRY)
    assert [(r.method, r.path, r.status) for r in double.requests] == [
        ("POST", TEXT_PATH, 200),
        ("GET", f"{KB_PATH}/{doc_id}", 200),
        ("GET", f"{KB_PATH}/{doc_id}/content", 200),
    ]
    assert double.count("GET") == 2
    assert double.count(path=DOC_PATH) == 1
    assert double.count("POST", TEXT_PATH) == 1
    assert b'"name":"a"' in double.requests[0].body.replace(b" ", b"")


# --- the command line ---------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_python_m_serves_until_terminated() -> None:
    port = _free_port()
    command = [
        sys.executable,
        "-m",
        "tests.support.elevenlabs_double",
        "--port",
        str(port),
        "--api-key",
        "demo-key",
        "--api-key",
        "other",
        "--reject-name",
        "broken*",
    ]
    proc = subprocess.Popen(
        command, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 10)
        assert ready, "the double printed nothing within 10 s"
        line = proc.stdout.readline()
        assert line == f"ElevenLabs API double listening on http://127.0.0.1:{port}\n"
        with httpx.Client(timeout=5.0, verify=NO_TLS) as http:
            sdk = ElevenLabs(
                api_key="other", base_url=f"http://127.0.0.1:{port}", httpx_client=http
            )
            docs = sdk.conversational_ai.knowledge_base.documents
            doc_id = create(docs, "welcome.md", "Hi")
            assert docs.get_content(doc_id, request_options=NO_RETRY) == "Hi"
            with pytest.raises(UnprocessableEntityError):
                create(docs, "broken-pricing.md")
    finally:
        proc.terminate()
        _, stderr = proc.communicate(timeout=10)
    assert proc.returncode == 0, stderr
    assert stderr == ""
