"""Source spans and compiler diagnostics.

Every stage reports user mistakes as `Diagnostic`s attached to a `Span` of the
model file, and raises `BuildError` carrying all of them at once.  The
compiler's own bugs are `InternalError`s, rendered differently (with a request
to report them), never as a user's error.

Conventions, said once: lines are 1-based, columns are 0-based in `Span` and
shown 1-based (after expanding tabs) when rendered, as compilers print them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Iterable, Sequence

__all__ = [
    "Span",
    "Note",
    "Diagnostic",
    "BuildError",
    "InternalError",
    "SourceFile",
    "render",
]

_LINE_END = re.compile(r"\r\n|\r|\n")


@dataclass(frozen=True, slots=True)
class SourceFile:
    """The text of one model file, as read (never executed)."""

    #: Path as the user named it (relative to the working directory when possible).
    path: str
    #: Full decoded text.
    text: str
    #: The name generated code uses for it: below the build folder's own name
    #: ("models/cnn.py"), the same whatever the working directory ("" until parsed).
    name: str = ""

    def lines(self) -> list[str]:
        """The text's lines as Python counts them: only `\n`, `\r\n` and `\r` end one
        (`str.splitlines` also splits at form feeds, `\x1c`-`\x1e`, `\x85`, U+2028 and
        U+2029, which Python's tokenizer treats as characters of the line)."""
        return _LINE_END.split(self.text)

    def line(self, lineno: int) -> str:
        lines = self.lines()
        if 1 <= lineno <= len(lines):
            return lines[lineno - 1]
        return ""


@dataclass(frozen=True, slots=True)
class Span:
    """A region of a model file."""

    #: The file it points into.
    file: SourceFile
    #: First line, 1-based.
    line: int
    #: First column, 0-based.
    col: int
    #: Last line, 1-based (inclusive).
    end_line: int
    #: Column one past the end on `end_line`, 0-based.
    end_col: int

    @property
    def path(self) -> str:
        return self.file.path

    def location(self) -> str:
        """`path:line:col` with a 1-based, tab-expanded column."""
        return f"{self.path}:{self.line}:{_display_col(self.file.line(self.line), self.col) + 1}"

    def __repr__(self) -> str:  # keep IR dumps short
        return f"Span({self.path}:{self.line}:{self.col}-{self.end_line}:{self.end_col})"


@dataclass(frozen=True, slots=True)
class Note:
    """A secondary message, optionally pointing somewhere else in the source."""

    #: What the note says.
    message: str
    #: Where it points; None for a note without a location.
    span: Span | None = None


@dataclass(frozen=True, slots=True)
class Diagnostic:
    """One user error: a stable code, a message, where it is, and help."""

    #: Stable code such as "AOT201"; `aotflax --explain CODE` describes it.
    code: str
    #: One line saying what was expected and what was found.
    message: str
    #: Where the error is; None only for errors about a whole file or command.
    span: Span | None
    #: Notes pointing at where values came from.
    notes: tuple[Note, ...] = ()
    #: A likely fix, or None.
    hint: str | None = None
    #: "error" or "warning".
    severity: str = "error"

    def render(self) -> str:
        return render(self)


class BuildError(Exception):
    """User errors found by a stage; carries every diagnostic it found."""

    def __init__(self, diagnostics: Sequence[Diagnostic]):
        self.diagnostics = tuple(diagnostics)
        super().__init__("\n".join(d.render() for d in self.diagnostics))


class InternalError(Exception):
    """A bug in aotflax itself (e.g. verify found resolve and JAX disagreeing)."""

    def __init__(self, message: str, dump: str = "", span: Span | None = None):
        self.message = message
        self.dump = dump
        self.span = span
        super().__init__(message)

    def render(self) -> str:
        where = f"{self.span.location()}: " if self.span else ""
        out = [f"{where}internal error: {self.message}"]
        if self.dump:
            out.append(self.dump.rstrip())
        out.append(
            "This is a bug in aotflax, not in your model. Please report it with the "
            "model file and this message."
        )
        return "\n".join(out)


def _display_col(line: str, col: int) -> int:
    """Column index after expanding tabs (tab stops every 8)."""
    return len(line[:col].expandtabs(8))


def _excerpt(span: Span) -> list[str]:
    """The source line of `span` with a caret run under the spanned text."""
    raw = span.file.line(span.line)
    text = raw.expandtabs(8)
    start = _display_col(raw, span.col)
    if span.end_line == span.line:
        end = _display_col(raw, span.end_col)
    else:
        end = len(text.rstrip())
    end = max(end, start + 1)
    return [f"    {text}", "    " + " " * start + "^" * (end - start)]


def render(d: Diagnostic) -> str:
    """Render like a compiler: location, message, source line, caret, notes, hint."""
    code = f"{d.severity}[{d.code}]"
    if d.severity == "warning" and d.span is not None and not d.notes and not d.hint:
        return f"{d.span.path}:{d.span.line}: {code}: {d.message}"  # one line each
    lines: list[str] = []
    if d.span is not None:
        lines.append(f"{d.span.location()}: {code}: {d.message}")
        lines.extend(_excerpt(d.span))
    else:
        lines.append(f"{code}: {d.message}")
    for note in d.notes:
        if note.span is not None:
            lines.append(f"  {note.span.location()}: note: {note.message}")
            lines.extend("  " + row for row in _excerpt(note.span))
        else:
            lines.append(f"  note: {note.message}")
    if d.hint:
        lines.append(f"  hint: {d.hint}")
    return "\n".join(lines)


@dataclass
class Reporter:
    """Collects diagnostics so a stage can report every error it finds."""

    diagnostics: list[Diagnostic] = field(default_factory=list)

    def error(
        self,
        code: str,
        message: str,
        span: Span | None,
        *,
        notes: Iterable[Note] = (),
        hint: str | None = None,
    ) -> Diagnostic:
        d = Diagnostic(code, message, span, tuple(notes), hint)
        self.diagnostics.append(d)
        return d

    def extend(self, diagnostics: Iterable[Diagnostic]) -> None:
        self.diagnostics.extend(diagnostics)

    def raise_if_errors(self) -> None:
        if self.diagnostics:
            raise BuildError(self.diagnostics)
