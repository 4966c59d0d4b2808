"""Quoting: the one way text from a model file reaches generated code.

A model file is data.  Whatever it says (a hyperparameter string, a parameter
name, a mesh axis, a target name) may appear in the generated module only as
one of three things, each made here:

- a *literal* (`literal`): Python source that evaluates to exactly that value,
  built on `repr`, so no string can close its quotes;
- an *identifier* (`identifier`): a name checked to be one, in the form Python
  itself would read it (NFKC-normalized, ASCII, not a keyword), so that
  `ｊｎｐ` cannot become `jnp` behind our back;
- text inside a docstring or a comment (`docstring`, `comment`), escaped so it
  cannot end the docstring or the line.

Emit builds generated code only from these and from its own fixed text;
resolve checks user names with `identifier` where they are declared, so that a
bad one is a located error there.  Nothing here imports the rest of aotflax.
"""

from __future__ import annotations

import keyword
import math
import re
import unicodedata
from typing import Any

__all__ = ["QuotingError", "MAX_IDENTIFIER", "comment", "docstring", "identifier",
           "identifier_problem", "literal", "normalize", "string", "subscript"]

#: Longest name generated code may carry (function, target, input and collection names).
MAX_IDENTIFIER = 100

_ASCII_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class QuotingError(ValueError):
    """A value cannot appear in generated code in the form asked for; the message says why."""


def normalize(name: str) -> str:
    """A name as Python reads it: identifiers are NFKC-normalized (PEP 3131)."""
    return unicodedata.normalize("NFKC", name) if not name.isascii() else name


def identifier_problem(name: Any, what: str = "name") -> str | None:
    """Why `name` cannot be a name of generated code, or None when it can."""
    if not isinstance(name, str):
        return f"a {what} must be a string, got {type(name).__name__}"
    shown = _shown(name)
    if len(name) > MAX_IDENTIFIER:
        return f"{what} {shown} is longer than {MAX_IDENTIFIER} characters"
    if not _ASCII_IDENTIFIER.fullmatch(name):
        read = normalize(name)
        if not name.isascii() and read.isidentifier():
            return (f"{what} {shown} is not ASCII; generated code uses ASCII names only"
                    + (f" (Python reads it as {_shown(read)})" if read != name else ""))
        return f"{what} {shown} is not a Python identifier"
    if keyword.iskeyword(name):
        return f"{what} {shown} is a Python keyword"
    return None


def identifier(name: Any, what: str = "name") -> str:
    """`name` itself, checked to be a safe ASCII identifier; raises `QuotingError`."""
    problem = identifier_problem(name, what)
    if problem:
        raise QuotingError(problem)
    return name


def string(text: str) -> str:
    """A double-quoted string literal for `text` (ruff's preferred quote)."""
    if not isinstance(text, str):
        raise QuotingError(f"expected a string, got {type(text).__name__}")
    r = repr(text)
    if r.startswith("'") and '"' not in text:
        # repr escaped only the quote it used: swap to double quotes
        r = '"' + r[1:-1].replace("\\'", "'") + '"'
    return r


def literal(value: Any) -> str:
    """Python source that evaluates to `value` (plain data: scalars, strings, containers)."""
    if value is None or isinstance(value, bool):
        return repr(value)
    if isinstance(value, int):
        # past 4,300 digits Python refuses int -> decimal text; hexadecimal has no limit
        return repr(value) if value.bit_length() < 14_000 else hex(value)
    if isinstance(value, float):
        if math.isinf(value):
            return 'float("inf")' if value > 0 else 'float("-inf")'
        if math.isnan(value):
            return 'float("nan")'
        return repr(value)
    if isinstance(value, complex):
        if not (math.isfinite(value.real) and math.isfinite(value.imag)):
            return f"complex({literal(value.real)}, {literal(value.imag)})"
        return repr(value)
    if isinstance(value, str):
        return string(value)
    if value is Ellipsis:
        return "..."
    if isinstance(value, tuple):
        items = [literal(v) for v in value]
        return "(" + ", ".join(items) + ("," if len(items) == 1 else "") + ")"
    if isinstance(value, list):
        return "[" + ", ".join(literal(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{literal(k)}: {literal(v)}" for k, v in value.items()) + "}"
    raise QuotingError(f"a {type(value).__name__} has no literal form")


def subscript(root: str, path: tuple[str, ...]) -> str:
    """`root["a"]["b"]`: a path into a nested dict, every key a string literal."""
    return identifier(root) + "".join(f"[{string(p)}]" for p in path)


def docstring(text: str) -> str:
    """`text` escaped to sit between triple double quotes as one docstring, unchanged in value.

    Backslashes and characters that are not printable (control characters, lone
    surrogates, bidirectional overrides) become escapes; a `"` next to another `"`, or
    at the very end, is escaped, so no closing `\"\"\"` can appear inside.
    Newlines stay: they are part of a docstring's text.
    """
    if '"' not in text and "\\" not in text and text.replace("\n", "").isprintable():
        return text  # nothing to escape (most docstrings): no loop over the characters
    out: list[str] = []
    for i, c in enumerate(text):
        if c == "\\":
            out.append("\\\\")
        elif c == '"':
            in_run = text[i + 1:i + 2] in ('"', "") or text[i - 1:i] == '"'
            out.append('\\"' if in_run else c)
        elif c == "\n" or c.isprintable():
            out.append(c)
        else:
            out.append(_escape(c))
    return "".join(out)


def comment(text: str) -> str:
    """`text` for the end of a `#` comment: one line, printable characters only."""
    if text.isprintable():  # most are: no loop over the characters
        return text
    return "".join(c if c.isprintable() else _escape(c) for c in text)


def _escape(c: str) -> str:
    n = ord(c)
    if n < 0x100:
        return f"\\x{n:02x}"
    return f"\\u{n:04x}" if n < 0x10000 else f"\\U{n:08x}"


def _shown(name: str, limit: int = 40) -> str:
    """A name for a message: quoted, escaped, and cut when long."""
    return repr(name if len(name) <= limit else name[:limit] + "...")
