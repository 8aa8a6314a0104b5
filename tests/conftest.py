"""Fixtures shared by kbsync's tests.

Sections:
- isolation: nothing a test does may leave the loopback interface;
- Firestore: the real emulator, started once per session, emptied before each test.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

# -- isolation ---------------------------------------------------------------------------------
# Set before kbsync.store imports google.auth (it reads NO_GCE_CHECK at import): no test may ask a
# metadata server for credentials or a project, and every client gets the same test project.
os.environ["NO_GCE_CHECK"] = "true"
os.environ["GCE_METADATA_HOST"] = "127.0.0.1:9"
os.environ["GCE_METADATA_IP"] = "127.0.0.1:9"
os.environ.setdefault("GOOGLE_CLOUD_PROJECT", "kbsync-test")

from kbsync.store import FirestoreStore
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
