"""Every job of the project, one session each. A bare `nox` runs lint, typecheck and tests."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import nox

ROOT = Path(__file__).parent
sys.path.insert(0, str(ROOT))

from tests.support.emulator import FirestoreEmulator  # noqa: E402  needs ROOT on sys.path

nox.options.sessions = ["lint", "typecheck", "tests"]
nox.options.reuse_existing_virtualenvs = True

PYTHON = "3.11"

# Nothing may leave loopback: google-auth must not probe the cloud metadata server.
OFFLINE_ENV = {
    "NO_GCE_CHECK": "true",
    "GCE_METADATA_HOST": "127.0.0.1:9",
    "GCE_METADATA_IP": "127.0.0.1:9",
}


@contextmanager
def firestore_emulator(session: nox.Session) -> Iterator[dict[str, str]]:
    """The environment for a Firestore emulator: the one already running, or one started now."""
    env = {"GOOGLE_CLOUD_PROJECT": os.environ.get("GOOGLE_CLOUD_PROJECT", "kbsync-test")}
    if os.environ.get("FIRESTORE_EMULATOR_HOST"):
        yield {**env, "FIRESTORE_EMULATOR_HOST": os.environ["FIRESTORE_EMULATOR_HOST"]}
        return
    session.log("starting the Firestore emulator…")
    with FirestoreEmulator() as emulator:
        session.log(f"Firestore emulator on {emulator.host}")
        yield {**env, "FIRESTORE_EMULATOR_HOST": emulator.host}


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """The test suite, against the real Firestore emulator and the local ElevenLabs API double."""
    session.install("-e", ".[test]")
    with firestore_emulator(session) as env:
        session.run("pytest", *session.posargs, env={**OFFLINE_ENV, **env})


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """ruff: the rules in pyproject.toml, and the formatting."""
    session.install("ruff")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session(python=PYTHON)
def typecheck(session: nox.Session) -> None:
    """mypy --strict over the package."""
    session.install("-e", ".[lint]")
    session.run("mypy", "--strict", "src")


@contextmanager
def api_double(session: nox.Session, *args: str) -> Iterator[str]:
    """The local ElevenLabs API double, started from this session's Python; yields its URL."""
    python = str(Path(session.bin) / "python")
    process = subprocess.Popen(
        [python, "-m", "tests.support.elevenlabs_double", "--port", "0", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline().strip()
        if "http://" not in line:
            session.error(f"the API double did not start: {line!r}")
        yield line[line.index("http://") :]
    finally:
        process.terminate()
        process.wait(timeout=10)


@nox.session(python=PYTHON)
def demo(session: nox.Session) -> None:
    """kbsync end to end on a local Firestore emulator and the ElevenLabs API double.

    One sample document is named so that the double rejects it, so the error table shows.
    """
    session.install("-e", ".")
    samples = ROOT / "tests" / "support" / "demo_docs"
    with (
        firestore_emulator(session) as emulator_env,
        api_double(
            session,
            *("--api-key", "demo-key", "--latency", "0.4", "--reject-name", "broken*"),
            *("--random-faults", "0.2", "--random-fault-kinds", "429,503", "--seed", "7"),
        ) as base_url,
        tempfile.TemporaryDirectory() as workdir,
    ):
        docs = Path(workdir) / "docs"
        shutil.copytree(samples, docs)
        env = {
            **OFFLINE_ENV,
            **emulator_env,
            "ELEVENLABS_API_KEY": "demo-key",
            "ELEVENLABS_BASE_URL": base_url,
            "KBSYNC_BACKOFF_BASE": "0.2",
        }
        session.log(f"ElevenLabs API double on {base_url}")
        session.run("kbsync", "upload", "--no-sync", str(docs), env=env)
        session.run("kbsync", "sync", "--verbose", env=env, success_codes=[0, 1])
        session.run("kbsync", "status", env=env)
        session.run("kbsync", "list", env=env)


@nox.session(python=PYTHON)
def bench(session: nox.Session) -> None:
    """The benchmark: prints throughput, start-up, memory and per-document costs as ratios.

    It starts its own emulator (unless FIRESTORE_EMULATOR_HOST is set) and API double, and
    asserts nothing: `nox -s bench -- --only throughput` runs one scenario.
    """
    session.install("-e", ".")
    session.run("python", "-m", "tests.support.bench", *session.posargs, env=OFFLINE_ENV)
