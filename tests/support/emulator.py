"""Start and stop the real Firestore emulator (``gcloud emulators firestore start``).

Standard library only: the noxfile imports this module without kbsync installed.

As a library::

    with FirestoreEmulator() as emulator:
        os.environ["FIRESTORE_EMULATOR_HOST"] = emulator.host
        ...
        emulator.clear("kbsync-test")

As a command, it runs another command against a fresh emulator and exits with its exit code::

    python tests/support/emulator.py -- pytest -q
    python -m tests.support.emulator -- kbsync status
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import FrameType, TracebackType

DEFAULT_PROJECT = "kbsync-test"
"""The project the command line hands to the command, unless GOOGLE_CLOUD_PROJECT is set."""

START_TIMEOUT = 60.0
"""Seconds to wait for the emulator to answer; a start usually takes 5-10 s."""

STOP_GRACE = 5.0
"""Seconds the emulator gets to exit after SIGTERM before it is killed."""


class EmulatorError(RuntimeError):
    """The emulator could not be started."""


def free_port() -> int:
    """A loopback TCP port that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def clear_emulator(host: str, project: str) -> None:
    """Delete every document of `project`'s default database in the emulator at `host`."""
    url = f"http://{host}/emulator/v1/projects/{project}/databases/(default)/documents"
    request = urllib.request.Request(url, method="DELETE")
    with urllib.request.urlopen(request, timeout=10) as response:
        response.read()


class FirestoreEmulator:
    """One Firestore emulator process (and its Java child) on a free loopback port."""

    def __init__(self, *, start_timeout: float = START_TIMEOUT) -> None:
        self.start_timeout = start_timeout
        self.port: int | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._log_path: Path | None = None

    @property
    def host(self) -> str:
        """``127.0.0.1:PORT``, the value for FIRESTORE_EMULATOR_HOST."""
        if self.port is None:
            raise EmulatorError("the Firestore emulator is not running: call start() first")
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        """Start the emulator and return once it answers HTTP requests."""
        if self._process is not None:
            raise EmulatorError("the Firestore emulator is already running")
        gcloud = shutil.which("gcloud")
        if gcloud is None:
            raise EmulatorError(
                "gcloud is not on PATH: install the Google Cloud SDK with the "
                "cloud-firestore-emulator component (and Java 17+)"
            )
        self.port = free_port()
        fd, log_name = tempfile.mkstemp(prefix="firestore-emulator-", suffix=".log")
        self._log_path = Path(log_name)
        command = [gcloud, "emulators", "firestore", "start", f"--host-port={self.host}"]
        try:
            with os.fdopen(fd, "wb") as log:
                # Its own session, so that stop() can signal the whole group (the Java child
                # included) and a Ctrl-C in the terminal does not reach it before we stop it.
                self._process = subprocess.Popen(
                    command,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            self._wait_until_ready()
        except BaseException:
            self.stop(keep_log=True)
            raise

    def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self._process is not None and self._process.poll() is not None:
                raise EmulatorError(
                    f"the Firestore emulator exited with code {self._process.returncode} "
                    f"while starting:\n{self.log_tail()}"
                )
            try:
                with urllib.request.urlopen(f"http://{self.host}/", timeout=1) as response:
                    response.read()
            except (urllib.error.URLError, OSError):
                time.sleep(0.2)
            else:
                return
        raise EmulatorError(
            f"the Firestore emulator did not answer on {self.host} within "
            f"{self.start_timeout:.0f} s:\n{self.log_tail()}"
        )

    def log_tail(self, lines: int = 30) -> str:
        """The last lines the emulator printed (for error messages)."""
        if self._log_path is None or not self._log_path.exists():
            return "(no log)"
        text = self._log_path.read_text(encoding="utf-8", errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, *, keep_log: bool = False) -> None:
        """Stop the emulator's whole process group: SIGTERM, then SIGKILL if it lingers."""
        process, self._process = self._process, None
        if process is not None:
            _signal_group(process.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=STOP_GRACE)
            # The gcloud wrapper may be gone while the Java child still runs: kill the group.
            _signal_group(process.pid, signal.SIGKILL)
            process.wait()
        self.port = None
        if self._log_path is not None and not keep_log:
            self._log_path.unlink(missing_ok=True)
            self._log_path = None

    def clear(self, project: str) -> None:
        """Delete every document of `project` (the emulator's own reset endpoint)."""
        clear_emulator(self.host, project)

    def __enter__(self) -> FirestoreEmulator:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def _signal_group(pgid: int, signum: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


class _Terminated(Exception):
    """SIGTERM arrived."""


def _raise_terminated(signum: int, frame: FrameType | None) -> None:
    raise _Terminated


def _end_child(child: subprocess.Popen[bytes], *, already_signalled: bool) -> None:
    """Stop the command: give it a moment if it already got the signal, then SIGTERM, SIGKILL."""
    if already_signalled:
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(timeout=STOP_GRACE)
    if child.poll() is None:
        child.terminate()
        try:
            child.wait(timeout=STOP_GRACE)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def _exit_code(returncode: int) -> int:
    """A child's return code as a shell reports it (128 + N when killed by signal N)."""
    return 128 - returncode if returncode < 0 else returncode


def _run_command(command: list[str], host: str) -> int:
    env = dict(os.environ)
    env["FIRESTORE_EMULATOR_HOST"] = host
    env.setdefault("GOOGLE_CLOUD_PROJECT", DEFAULT_PROJECT)
    try:
        child = subprocess.Popen(command, env=env)
    except OSError as error:
        print(f"emulator.py: cannot run {command[0]}: {error}", file=sys.stderr)
        return 127
    try:
        return _exit_code(child.wait())
    except KeyboardInterrupt:
        # A terminal's Ctrl-C reaches the command too (same process group): let it finish.
        _end_child(child, already_signalled=True)
        return 130
    except _Terminated:
        _end_child(child, already_signalled=False)
        return 128 + signal.SIGTERM


def run(command: list[str]) -> int:
    """Run `command` against a fresh emulator, stop the emulator, return the exit code."""
    signal.signal(signal.SIGTERM, _raise_terminated)
    emulator = FirestoreEmulator()
    try:
        emulator.start()
        return _run_command(command, emulator.host)
    except KeyboardInterrupt:
        return 130
    except _Terminated:
        return 128 + signal.SIGTERM
    finally:
        # A second Ctrl-C or SIGTERM must not cut the cleanup short and orphan the Java child.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        emulator.stop()


def main(argv: list[str] | None = None) -> int:
    """The command line: ``emulator.py -- COMMAND [ARGS...]``."""
    parser = argparse.ArgumentParser(
        prog="emulator.py",
        description=(
            "Start the Firestore emulator on a free loopback port, run COMMAND with "
            "FIRESTORE_EMULATOR_HOST and GOOGLE_CLOUD_PROJECT set, stop the emulator and exit "
            "with COMMAND's exit code."
        ),
    )
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- COMMAND [ARGS...]")
    command = parser.parse_args(argv).command
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        parser.error("no command given: emulator.py -- COMMAND [ARGS...]")
    try:
        return run(command)
    except EmulatorError as error:
        print(f"emulator.py: {error}", file=sys.stderr)
        return 3


if __name__ == "__main__":
    sys.exit(main())
