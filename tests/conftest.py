"""Fixtures shared by kbsync's tests.

Sections:
- isolation: nothing a test does may leave the loopback interface;
- Firestore: the real emulator, started once per session, emptied before each test.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

# -- isolation ---------------------------------------------------------------------------------
# Set before kbsync.store imports google.auth (it reads NO_GCE_CHECK at import): no test may ask a
# metadata server for credentials or a project, and every client gets the same test project.
os.environ["NO_GCE_CHECK"] = "true"
os.environ["GCE_METADATA_HOST"] = "127.0.0.1:9"
os.environ["GCE_METADATA_IP"] = "127.0.0.1:9"
os.environ.setdefault("GOOGLE_CLOUD_PROJECT", "kbsync-test")

from kbsync.store import FirestoreStore
from tests.support.cli import KEY
from tests.support.elevenlabs_double import ElevenLabsDouble
from tests.support.emulator import FirestoreEmulator, clear_emulator

# -- Firestore -----------------------------------------------------------------------------------

COLLECTION = "knowledge_documents"


@pytest.fixture(scope="session")
def firestore_emulator() -> Iterator[str]:
    """The emulator's ``host:port``: FIRESTORE_EMULATOR_HOST if set, else one started for the run.

    Starting takes 5-10 s; to reuse one emulator across runs, start it with
    ``gcloud emulators firestore start --host-port=127.0.0.1:8765`` and export
    FIRESTORE_EMULATOR_HOST=127.0.0.1:8765.
    """
    preset = os.environ.get("FIRESTORE_EMULATOR_HOST")
    if preset:
        yield preset
        return
    with FirestoreEmulator() as emulator:
        os.environ["FIRESTORE_EMULATOR_HOST"] = emulator.host
        try:
            yield emulator.host
        finally:
            os.environ.pop("FIRESTORE_EMULATOR_HOST", None)


@pytest.fixture
def firestore_env(firestore_emulator: str) -> dict[str, str]:
    """The environment variables a subprocess needs to use the emulator (and nothing else)."""
    return {
        "FIRESTORE_EMULATOR_HOST": firestore_emulator,
        "GOOGLE_CLOUD_PROJECT": os.environ["GOOGLE_CLOUD_PROJECT"],
        "NO_GCE_CHECK": "true",
        "GCE_METADATA_HOST": "127.0.0.1:9",
        "GCE_METADATA_IP": "127.0.0.1:9",
    }


@pytest.fixture
def store(firestore_emulator: str) -> Iterator[FirestoreStore]:
    """A `FirestoreStore` on an emptied emulator, in the `knowledge_documents` collection."""
    project = os.environ["GOOGLE_CLOUD_PROJECT"]
    clear_emulator(firestore_emulator, project)
    document_store = FirestoreStore(COLLECTION, project=project)
    yield document_store
    document_store.close()


# -- the command, end to end ----------------------------------------------------------------


@pytest.fixture(scope="session")
def double_server() -> Iterator[ElevenLabsDouble]:
    """The local ElevenLabs API double, one for the whole run."""
    with ElevenLabsDouble(api_keys={KEY}) as server:
        yield server


@pytest.fixture
def kb(double_server: ElevenLabsDouble) -> ElevenLabsDouble:
    """The API double, forgotten and accepting KEY only."""
    double_server.reset()
    double_server.api_keys.clear()
    double_server.api_keys.add(KEY)
    double_server.latency = 0.0
    double_server.concurrency_cap = None
    return double_server


@pytest.fixture
def env(
    store: FirestoreStore, kb: ElevenLabsDouble, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> dict[str, str]:
    """The environment of a user pointed at the emulator and the double, in an empty folder."""
    monkeypatch.chdir(tmp_path)
    values = {
        "ELEVENLABS_API_KEY": KEY,
        "ELEVENLABS_BASE_URL": kb.base_url,
        "KBSYNC_BACKOFF_BASE": "0.01",
        "KBSYNC_BACKOFF_MAX": "0.2",
        "KBSYNC_REQUEST_TIMEOUT": "5",
        "KBSYNC_CONCURRENCY": "4",
        "KBSYNC_MAX_ATTEMPTS": "3",
        "COLUMNS": "200",
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    return values
