"""Model files are data: the guards of the static evaluator.

Resolve interprets a model statically and reaches only the DSL's vocabulary (the
operation table, static values, the model's own definitions); no text of the model
file is ever copied into generated code, initializers included (they are
interpreted too, see `resolve/initializers.py`).  What is left here: the builtin
names that would let a model do something rather than describe something, and the
formatting guards (`str.format` fields that walk attributes, format widths that
would allocate gigabytes).
"""

from __future__ import annotations

import re
import string

#: Builtins that would let a model file do something rather than describe something.
FORBIDDEN_NAMES = frozenset({
    "open", "eval", "exec", "compile", "__import__", "globals", "vars", "dir",
    "delattr", "input", "breakpoint", "exit", "quit",
    "help", "memoryview", "bytearray", "type", "object", "super", "classmethod",
    "staticmethod", "property", "id", "__builtins__", "__loader__", "__spec__",
})

_MAX_WIDTH = 1000


def is_dunder(name: str) -> bool:
    """`__class__`, `__import__`...: Python internals, never part of the DSL."""
    return len(name) > 4 and name.startswith("__") and name.endswith("__")


def spec_problem(spec: str) -> str | None:
    """A format spec whose width or precision would build a huge string, else None."""
    for number in re.findall(r"\d+", spec):
        if len(number) > 4 or int(number) > _MAX_WIDTH:
            return f"format width {number} is too large (at most {_MAX_WIDTH})"
    return None


def format_problem(fmt: str) -> str | None:
    """Why `fmt.format(...)` is not allowed at build time, else None."""
    try:
        parsed = list(string.Formatter().parse(fmt))
    except ValueError:
        return None  # str.format reports malformed strings itself
    for _, field, spec, _ in parsed:
        if field and ("." in field or "[" in field):
            return (f"replacement field {{{field}}} reads an attribute or item; use "
                    "f-strings or plain {} fields")
        problem = spec_problem(spec or "") or (format_problem(spec) if spec else None)
        if problem:
            return problem
    return None


# ------------------------------------------------------------------ emitted functions
