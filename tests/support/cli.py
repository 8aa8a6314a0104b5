"""Driving the real `kbsync` command in-process, as the end-to-end tests do."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner, Result

from kbsync.cli import app

KEY = "sk-test-4f1d9a7c2e8b6053"
"""A distinctive key, so that any leak into output is easy to spot."""

CREATE = ("POST", "/v1/convai/knowledge-base/text")


def kbsync(*args: str, stdin: str | None = None) -> Result:
    """Run the CLI in-process; fail on a traceback or on the key appearing anywhere."""
    result = CliRunner().invoke(app, list(args), input=stdin)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    assert KEY not in result.stdout
    assert KEY not in result.stderr
    return result


def write(folder: Path, name: str, text: str = "Some useful knowledge.\n") -> Path:
    """A file below `folder`, with its folders."""
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path
