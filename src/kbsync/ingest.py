"""Reading and checking the files a user uploads.

Every input is checked before anything is written: `read_inputs` either returns every document
or raises `InputError` listing every problem, one per path.
"""

from __future__ import annotations

import fnmatch
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from kbsync.errors import InputError, InputProblem
from kbsync.models import NewDocument

SUPPORTED_EXTENSIONS = frozenset({".md", ".markdown", ".txt", ".text", ".html", ".htm", ".rst"})
MAX_BYTES = 900_000
STDIN = "-"


@dataclass
class Inputs:
    """What `read_inputs` found: the documents to write and the files skipped in directories."""

    documents: list[NewDocument] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    """Unsupported files found inside uploaded directories (not errors, only counted)."""


def _supported(path: Path) -> bool:
    return path.suffix.lower() in SUPPORTED_EXTENSIONS


def _decode(raw: bytes) -> str:
    """The text of `raw`, or raise ValueError with the reason it is not acceptable text."""
    if b"\x00" in raw:
        raise ValueError("contains NUL bytes: not a text file")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ValueError(f"is not UTF-8 text (bad byte at offset {exc.start})") from None
    if not text.strip():
        raise ValueError("is empty or holds only whitespace")
    return text


def _read_checked(raw_source: BinaryIO | Path) -> str:
    """Read at most MAX_BYTES + 1 bytes and decode them, raising ValueError for bad input."""
    if isinstance(raw_source, Path):
        if raw_source.stat().st_size > MAX_BYTES:
            raise ValueError(f"is larger than {MAX_BYTES:,} bytes")
        with raw_source.open("rb") as handle:
            raw = handle.read(MAX_BYTES + 1)
    else:
        raw = raw_source.read(MAX_BYTES + 1)
    if len(raw) > MAX_BYTES:
        raise ValueError(f"is larger than {MAX_BYTES:,} bytes")
    return _decode(raw)


def _walk(directory: Path) -> Iterator[Path]:
    """Files below `directory`, sorted, leaving out hidden files and folders (such as .git)."""
    for path in sorted(directory.rglob("*")):
        relative = path.relative_to(directory)
        if any(part.startswith(".") for part in relative.parts):
            continue
        if path.is_file():
            yield path


@dataclass(frozen=True)
class _Candidate:
    """One file (or standard input) that will become a document, before reading it."""

    name: str
    label: str
    """How problems refer to it: the path as the user wrote it, or `-`."""
    path: Path | None
    """None for standard input."""


@dataclass(frozen=True)
class Selection:
    """Which files inside an uploaded directory count (globs on the path below it)."""

    include: tuple[str, ...] = ()
    """Only files matching one of these (none given: every file)."""
    exclude: tuple[str, ...] = ()
    """Never files matching one of these."""

    def wants(self, relative: str) -> bool:
        """True for a path below the directory (`guides/setup.md`) that the globs let in.

        A glob without `/` also matches the file's name alone (`*.md`, `draft-*`)."""

        def matches(pattern: str) -> bool:
            return fnmatch.fnmatchcase(relative, pattern) or (
                "/" not in pattern and fnmatch.fnmatchcase(relative.rsplit("/", 1)[-1], pattern)
            )

        if self.include and not any(matches(p) for p in self.include):
            return False
        return not any(matches(p) for p in self.exclude)


def read_inputs(
    paths: Sequence[str],
    name: str | None = None,
    stdin: BinaryIO | None = None,
    selection: Selection | None = None,
) -> Inputs:
    """Read and check every input; raise `InputError` listing all problems if any is bad."""
    problems: list[InputProblem] = []
    inputs = Inputs()
    candidates: list[_Candidate] = []
    for given in paths:
        candidates.extend(_expand(given, name, inputs.skipped, problems, selection or Selection()))
    candidates = _apply_name(candidates, name, problems)
    seen: dict[str, str] = {}
    for candidate in candidates:
        if candidate.name in seen:
            problems.append(
                InputProblem(
                    candidate.label,
                    f"has the same name {candidate.name!r} as {seen[candidate.name]}",
                )
            )
        seen.setdefault(candidate.name, candidate.label)
        try:
            text = _read_checked(
                candidate.path
                if candidate.path is not None
                else (stdin if stdin is not None else sys.stdin.buffer)
            )
        except ValueError as exc:
            problems.append(InputProblem(candidate.label, str(exc)))
            continue
        except OSError as exc:
            problems.append(InputProblem(candidate.label, f"cannot be read: {exc.strerror}"))
            continue
        # The absolute path, so that `--delete-missing` recognises it from any directory.
        source = str(candidate.path.resolve()) if candidate.path is not None else None
        inputs.documents.append(NewDocument(name=candidate.name, content=text, source=source))
    if problems:
        raise InputError(problems)
    return inputs


_SUPPORTED_LIST = " ".join(sorted(SUPPORTED_EXTENSIONS))


def _expand(
    given: str,
    name: str | None,
    skipped: list[str],
    problems: list[InputProblem],
    selection: Selection,
) -> list[_Candidate]:
    """The candidates one argument stands for: a file, every supported file below a
    directory, or standard input."""
    if given == STDIN:
        if name:
            return [_Candidate(name, STDIN, None)]
        problems.append(InputProblem(STDIN, "standard input needs --name"))
        return []
    path = Path(given)
    if not path.exists():
        problems.append(InputProblem(given, "no such file or directory"))
        return []
    if not path.is_dir():
        if _supported(path):
            return [_Candidate(path.name, given, path)]
        kind = path.suffix or "(no extension)"
        problems.append(
            InputProblem(given, f"unsupported file type {kind!r}; supported: {_SUPPORTED_LIST}")
        )
        return []
    found: list[_Candidate] = []
    for file in _walk(path):
        relative = file.relative_to(path).as_posix()
        if not selection.wants(relative):
            continue
        if _supported(file):
            found.append(_Candidate(relative, str(file), file))
        else:
            skipped.append(str(file))
    if not found:
        problems.append(
            InputProblem(given, f"directory holds no supported file ({_SUPPORTED_LIST})")
        )
    return found


def _apply_name(
    candidates: list[_Candidate], name: str | None, problems: list[InputProblem]
) -> list[_Candidate]:
    """Give the single input its `--name`; more than one input with `--name` is a problem."""
    if name is None:
        return candidates
    if not name.strip():
        problems.append(InputProblem("--name", "is empty"))
    if len(candidates) > 1:
        problems.append(
            InputProblem("--name", f"names one document but {len(candidates)} files were given")
        )
        return candidates
    return [_Candidate(name, c.label, c.path) for c in candidates]
