"""`aotflax --list-ops`: the operation table as a model file spells it."""

from __future__ import annotations

import sys
from typing import TextIO

from .registry import REGISTRY, Entry

#: How a table namespace is written in a model file.
_SPELLING = {"lax": "jax.lax", "array": "x", "at": "x.at[index]"}


def spelled(namespace: str, entry: Entry) -> str:
    """`jax.lax.pad(operand, padding_value, padding_config)`, `x.sum(axis=None, ...)`."""
    if namespace == "operator":
        return entry.doc
    params = entry.signature.describe()
    if namespace in ("array", "at"):  # the receiver (and the index) are not arguments
        drop = 2 if namespace == "at" else 1
        params = ", ".join(params.split(", ")[drop:])
    return f"{_SPELLING.get(namespace, namespace)}.{entry.name}({params})"


def lines(word: str = "") -> list[str]:
    """One line per entry: its spelling and what it does; only those mentioning `word`."""
    out = []
    for key, entry in sorted(REGISTRY.entries.items()):
        namespace = key[:-len(entry.name) - 1]
        text = spelled(namespace, entry)
        doc = entry.doc
        if namespace == "operator" or doc.startswith(text.split("(")[0]):
            doc = ""  # says no more than the spelling
        line = f"{text}  # {doc}" if doc else text
        if word.lower() in line.lower():
            out.append(line)
    return out


def list_ops(word: str = "", stream: TextIO | None = None) -> int:
    """Print the table (the entries mentioning `word`); exit status 0."""
    stream = stream or sys.stdout
    found = lines(word)
    for line in found:
        print(line, file=stream)
    if not found:
        print(f"no operation mentions {word!r}", file=sys.stderr)
    return 0
