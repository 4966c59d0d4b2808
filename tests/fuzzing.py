"""Mutations of model files, for the fuzz test (tests/test_fuzz.py) and bench/fuzz.py.

A mutation takes the bytes of a model file and a `random.Random` and returns
new bytes: the edits users (and editors, and disks) make by accident.  Lines
are deleted, swapped, duplicated or re-indented; keywords, names and numbers
are replaced; random tokens are inserted; files are truncated or get bytes
that are not UTF-8.  Hypothesis drives the `Random` in the test, so failing
cases shrink and replay; the benchmark uses a seeded one.

The property both check is `check_front_end`: building the mutated file either
succeeds, or raises `BuildError` whose diagnostics are all located, known and
renderable; nothing else may escape, and nothing may take unbounded time.
"""

from __future__ import annotations

import random
import re
import signal
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

ROOT = Path(__file__).resolve().parent.parent
MODELS = sorted((ROOT / "models").glob("*.py"))

#: Diagnostics about a whole file or command, legitimately without a location.
WHOLE_FILE_CODES = frozenset({"AOT107", "AOT108", "AOT411"})

_KEYWORDS = [b"features", b"feature", b"use_bias", b"bias", b"kernel_size", b"strides",
             b"padding", b"name", b"dtype", b"param_dtype", b"axis", b"train", b"rate",
             b"deterministic", b"momentum", b"epsilon", b"shape", b"num_heads", b"platforms",
             b"method", b"devices", b"x", b"inputs", b"loss", b"optimizer", b"kernel_init"]
_NUMBERS = [b"0", b"1", b"-1", b"2", b"3", b"7", b"1000", b"10**9", b"10**100", b"2**64",
            b"0.5", b"-0.0", b"1e30", b"float('nan')", b"True", b"None", b"()", b"(1, 1, 1)",
            b'"SAME"', b"'a'", b"-5", b"65536"]
_TOKENS = [b"(", b")", b"[", b"]", b"{", b"}", b":", b",", b".", b"=", b"==", b"+", b"*",
           b"**", b"@", b"-", b"/", b"//", b"%", b"not ", b" and ", b" or ", b"lambda: 0",
           b"x", b"self", b"nn", b"jnp", b"aot", b"None", b"...", b'"', b"'", b'"""', b"#",
           b"\\", b"\t", b"\n", b"    ", b"yield ", b"return ", b"for i in range(3):",
           b"if x:", b"else:", b"def f():", b"class C:", b"import os\n", b"open('p')",
           b"__class__", b".__dict__", b"*", b"**{}", b"[0]", b"[:, None]", b".T", b".shape",
           b".reshape((-1,))", b"nn.Dense(x, 4)", b"jnp.float16", b"aot.f32[2, 3]",
           b"raise ValueError('v')", b"assert False", b"global g", b"while True: pass",
           b"\x00", b"\xef\xbb\xbf", b"\xe2\x80\x8b", b"\r", b"\x0c"]
_BAD_BYTES = [b"\xff", b"\xfe", b"\xc3", b"\x80", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80",
              b"\xc0\xaf", b"\xe9"]

Mutation = Callable[[bytes, random.Random], bytes]


def _lines(data: bytes) -> list[bytes]:
    return data.split(b"\n")


def delete_line(data: bytes, rng: random.Random) -> bytes:
    lines = _lines(data)
    del lines[rng.randrange(len(lines))]
    return b"\n".join(lines)


def swap_lines(data: bytes, rng: random.Random) -> bytes:
    lines = _lines(data)
    i, j = rng.randrange(len(lines)), rng.randrange(len(lines))
    lines[i], lines[j] = lines[j], lines[i]
    return b"\n".join(lines)


def duplicate_line(data: bytes, rng: random.Random) -> bytes:
    lines = _lines(data)
    i = rng.randrange(len(lines))
    lines.insert(rng.randrange(len(lines) + 1), lines[i])
    return b"\n".join(lines)


def reindent_line(data: bytes, rng: random.Random) -> bytes:
    lines = _lines(data)
    i = rng.randrange(len(lines))
    body = lines[i].lstrip(b" ")
    lines[i] = b" " * rng.choice([0, 2, 4, 8, 12, 16]) + body
    return b"\n".join(lines)


def wrong_keyword(data: bytes, rng: random.Random) -> bytes:
    spots = [m.span(1) for m in re.finditer(rb"[(,]\s*([A-Za-z_]\w*)=(?!=)", data)]
    if not spots:
        return insert_token(data, rng)
    start, end = rng.choice(spots)
    return data[:start] + rng.choice(_KEYWORDS) + data[end:]


def change_number(data: bytes, rng: random.Random) -> bytes:
    spots = [m.span() for m in re.finditer(rb"(?<![\w.])\d+(\.\d+)?(?![\w.])", data)]
    if not spots:
        return insert_token(data, rng)
    start, end = rng.choice(spots)
    return data[:start] + rng.choice(_NUMBERS) + data[end:]


def swap_names(data: bytes, rng: random.Random) -> bytes:
    """Replace one identifier by another of the same file (a realistic typo or mix-up)."""
    spots = [m.span() for m in re.finditer(rb"(?<![\w.])[A-Za-z_]\w*", data)]
    if not spots:
        return insert_token(data, rng)
    start, end = rng.choice(spots)
    other = rng.choice(spots)
    return data[:start] + data[other[0]:other[1]] + data[end:]


def insert_token(data: bytes, rng: random.Random) -> bytes:
    at = rng.randrange(len(data) + 1)
    return data[:at] + rng.choice(_TOKENS) + data[at:]


def delete_span(data: bytes, rng: random.Random) -> bytes:
    at = rng.randrange(len(data) + 1)
    return data[:at] + data[at + rng.randrange(1, 12):]


def truncate(data: bytes, rng: random.Random) -> bytes:
    return data[:rng.randrange(len(data) + 1)]


def non_utf8(data: bytes, rng: random.Random) -> bytes:
    at = rng.randrange(len(data) + 1)
    return data[:at] + rng.choice(_BAD_BYTES) + data[at:]


MUTATIONS: dict[str, Mutation] = {
    f.__name__: f for f in (delete_line, swap_lines, duplicate_line, reindent_line,
                            wrong_keyword, change_number, swap_names, insert_token,
                            delete_span, truncate, non_utf8)
}


def mutate(data: bytes, rng: random.Random, count: int | None = None) -> tuple[bytes, list[str]]:
    """Apply 1-3 random mutations (or `count`); returns the bytes and the mutation names."""
    names = []
    for _ in range(count if count is not None else rng.choice([1, 1, 1, 2, 3])):
        name = rng.choice(sorted(MUTATIONS))
        data = MUTATIONS[name](data, rng) if data else insert_token(data, rng)
        names.append(name)
    return data, names


# ------------------------------------------------------------------ the property


class Hang(Exception):
    """A build ran past its time limit."""


@contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Raise `Hang` in the main thread after `seconds` (SIGALRM; Unix only)."""
    def on_alarm(signum, frame):  # noqa: ARG001
        raise Hang(f"no result after {seconds} s")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def problems(diagnostics) -> list[str]:
    """What is wrong with a failed build's diagnostics (empty: a clean, located error)."""
    from aotflax.codes import CODES

    out = []
    if not diagnostics:
        out.append("BuildError without diagnostics")
    for d in diagnostics:
        if d.code not in CODES:
            out.append(f"unknown code {d.code}: {d.message}")
        if d.span is None and d.code not in WHOLE_FILE_CODES:
            out.append(f"unlocated {d.code}: {d.message}")
        if d.span is not None and not 1 <= d.span.line <= max(
                1, len(d.span.file.text.splitlines()) + 1):
            out.append(f"{d.code} points outside the file (line {d.span.line})")
        try:
            d.render()
        except Exception as e:  # noqa: BLE001 - rendering must never fail
            out.append(f"{d.code} does not render: {type(e).__name__}: {e}")
    return out
