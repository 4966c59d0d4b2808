"""The text of a parsed model file, for what CPython's `ast` does not locate.

`ast` gives UTF-8 byte columns; spans are in characters.  It gives no position to a
definition's name, to a parameter's stars, to comprehension clauses or to f-string
fields, and a node's span never says whether parentheses enclose it: the parse stage
reads those next to what `ast` does locate.  CPython has parsed the text already, so
these scans only ever meet valid Python; each is linear in what it reads.
"""

from __future__ import annotations

import ast
import re
from bisect import bisect_right
from typing import Callable, NamedTuple

_NEWLINE = re.compile(r"\r\n?|\n")
#: Whitespace, comments and line continuations between two tokens.
_GAP = re.compile(r"(?:[ \t\f\r\n]+|\\(?:\r\n?|\n)|#[^\r\n]*)*")
#: The same within one logical line (no newline but escaped ones).
_LINE_GAP = r"(?:[ \t\f]|\\(?:\r\n?|\n))*"
_SEMICOLON = re.compile(_LINE_GAP + ";" + _LINE_GAP)
#: Commas, '/' and gaps after a lambda's last parameter, before its ':'.
_PARAM_TAIL = re.compile(r"(?:[ \t\f\r\n,/]+|\\(?:\r\n?|\n)|#[^\r\n]*)*")
#: An identifier as written (CPython has checked it; anything non-ASCII is part of it).
_NAME = re.compile(r"(?:\w|[^\x00-\x7f])+")
_DEF = re.compile(r"(?:async" + _LINE_GAP + ")?(?:def|class)" + _LINE_GAP)
_STRING_START = re.compile(r"([rRbBuUfF]{0,2})('''|\"\"\"|'|\")")
_STRING_BODY = {
    "'": re.compile(r"(?:[^'\\\r\n]|\\(?:\r\n|.))*'", re.S),
    '"': re.compile(r'(?:[^"\\\r\n]|\\(?:\r\n|.))*"', re.S),
    "'''": re.compile(r"(?:[^\\]|\\.)*?'''", re.S),
    '"""': re.compile(r'(?:[^\\]|\\.)*?"""', re.S),
}
_BRACKET_OR_SKIP = re.compile(r"""[()\[\]{}#'"]""")
_WIDE = re.compile(r"[^\x00-\x7f]+")


class Field(NamedTuple):
    """A replacement field of an f-string, `{expr=!c:spec}`, by offsets."""

    #: Where its expression ends (it starts after the '{').
    expr_end: int
    #: "r", "s", "a" or None.
    conversion: str | None
    #: The format spec's text after ':' (None when empty or absent).
    spec: str | None
    #: Whether the spec holds replacement fields of its own.
    nested: bool
    #: Whether it has a self-documenting '='.
    equal: bool
    #: Where the field ends (after its '}').
    end: int


class SourceText:
    """Text that CPython parsed: its columns (UTF-8 bytes) as characters, and scanning.

    Offsets are character positions in `text`.  An f-string's field is parsed as a
    text of its own; `line_delta` and `col_delta` place it in the file (`col_delta`
    applies to its first line, the only one that shares a line with the file's text).
    """

    __slots__ = ("text", "starts", "ascii", "_wide", "_pairs", "line_delta", "col_delta")

    def __init__(self, text: str, line_delta: int = 0, col_delta: int = 0):
        self.text = text
        #: Offset of each line's start (CPython's lines: "\n", "\r\n" and "\r" end them).
        self.starts = [0] + [m.end() for m in _NEWLINE.finditer(text)]
        self.ascii = text.isascii()
        self._wide: dict[int, tuple[list[int], list[int]]] = {}
        self._pairs: dict[int, int] = {}
        self.line_delta, self.col_delta = line_delta, col_delta

    # -------------------------------------------------------------- positions

    def col(self, line: int, byte_col: int) -> int:
        """The character column of a UTF-8 byte column on `line` (1-based)."""
        if self.ascii or not 0 < line <= len(self.starts):
            return byte_col
        runs = self._wide.get(line)
        if runs is None:
            runs = self._wide[line] = self._runs(line)
        if not runs[0]:
            return byte_col
        # a column is never inside a run of non-ASCII characters (an identifier, a string)
        i = bisect_right(runs[0], byte_col)
        return byte_col - (runs[1][i - 1] if i else 0)

    def _runs(self, line: int) -> tuple[list[int], list[int]]:
        """Where each run of non-ASCII characters on `line` ends, in bytes, and how many
        bytes more than characters the line has up to there (linear in the line, once)."""
        start = self.starts[line - 1]
        end = self.starts[line] if line < len(self.starts) else len(self.text)
        ends: list[int] = []
        extra: list[int] = []
        more = 0
        for m in _WIDE.finditer(self.text, start, end):
            run = m.group()
            more += len(run.encode("utf-8", "surrogatepass")) - len(run)
            ends.append(m.end() - start + more)
            extra.append(more)
        return ends, extra

    def offset(self, line: int, byte_col: int) -> int:
        return self.starts[line - 1] + self.col(line, byte_col)

    def start(self, node: ast.AST) -> int:
        return self.offset(node.lineno, node.col_offset)  # type: ignore[attr-defined]

    def end(self, node: ast.AST) -> int:
        return self.offset(node.end_lineno, node.end_col_offset)  # type: ignore[attr-defined]

    def place(self, offset: int) -> tuple[int, int]:
        """(line, column) of an offset, in the file."""
        i = bisect_right(self.starts, offset) - 1
        return i + 1 + self.line_delta, offset - self.starts[i] + (self.col_delta if i == 0
                                                                    else 0)

    # -------------------------------------------------------------- tokens

    def skip(self, offset: int, gap: re.Pattern[str] = _GAP) -> int:
        """The offset of the next token at or after `offset` (after what `gap` matches)."""
        m = gap.match(self.text, offset)
        return m.end() if m else offset

    def lambda_params_end(self, offset: int) -> int:
        """Where a lambda's ':' is, after its last parameter's text ends at `offset`."""
        return self.skip(self.outer_end(offset, len(self.text)), _PARAM_TAIL)

    def outer_end(self, offset: int, limit: int) -> int:
        """The end of an expression ending at `offset` with its grouping parentheses
        (closing parentheses before `limit`, where its container closes)."""
        while True:
            at = self.skip(offset)
            if at >= limit or self.text[at] != ")":
                return offset
            offset = at + 1

    def name_at(self, offset: int) -> tuple[int, int]:
        """The offsets of the identifier starting at `offset` (as written, not normalized)."""
        m = _NAME.match(self.text, offset)
        return offset, m.end() if m else offset

    def def_name(self, offset: int) -> tuple[int, int]:
        """The offsets of a definition's name, after `def`, `async def` or `class` at
        `offset`."""
        m = _DEF.match(self.text, offset)
        return self.name_at(m.end() if m else offset)

    def after_colon(self, offset: int) -> bool:
        """Whether a ':' ends the logical line before `offset` (`def f(): pass`)."""
        text, at = self.text, offset
        while at > 0:
            c = text[at - 1]
            if c in " \t\f":
                at -= 1
            elif c in "\r\n":  # an escaped newline continues the line
                at -= 2 if text[at - 2: at] == "\r\n" else 1
                if at == 0 or text[at - 1] != "\\":
                    return False
                at -= 1
            else:
                return c == ":"
        return False

    def joined(self, end: int, start: int) -> bool:
        """Whether only ';' (and blanks) stand between offsets `end` and `start`."""
        return _SEMICOLON.fullmatch(self.text, end, start) is not None

    def closing(self, start: int, end: int) -> int:
        """The offset of the bracket closing the one at `start` (`end` if none before).

        Every pair found is kept: a bracket pair is scanned once, however deep it nests.
        """
        known = self._pairs.get(start)
        if known is not None:
            return known if known < end else end
        text, pairs = self.text, self._pairs
        opened: list[int] = []
        at = start
        while True:
            m = _BRACKET_OR_SKIP.search(text, at, end)
            if m is None:
                return end
            c, at = m.group(), m.start()
            if c in "([{":
                inner = pairs.get(at) if opened else None
                if inner is not None:
                    at = inner + 1
                    continue
                opened.append(at)
            elif c in ")]}":
                if not opened:
                    return end
                pairs[opened.pop()] = at
                if not opened:
                    return at
            elif c == "#":
                newline = _NEWLINE.search(text, at)
                at = newline.start() if newline else len(text)
                continue
            else:
                at = self.string_end(at)
                continue
            at += 1

    def encloses(self, start: int, end: int) -> bool:
        """Whether the bracket at `start` is closed by the one at `end - 1`."""
        return self.closing(start, end) == end - 1

    # -------------------------------------------------------------- strings

    def string_end(self, offset: int) -> int:
        """The end of the string literal whose quote is at `offset`."""
        text = self.text
        quote = text[offset: offset + 3] if text[offset: offset + 3] in ("'''", '"""') else (
            text[offset])
        m = _STRING_BODY[quote].match(text, offset + len(quote))
        return m.end() if m else len(text)

    def string_start(self, offset: int) -> re.Match[str] | None:
        """The prefix (group 1) and quote (group 2) of a string literal at `offset`."""
        return _STRING_START.match(self.text, offset)

    def string_pieces(self, start: int, end: int) -> list[tuple[int, int]]:
        """The string literals written next to each other from `start` to `end`
        ("a" f"b" 'c'), as (start, end) offsets."""
        out: list[tuple[int, int]] = []
        while start < end:
            m = _STRING_START.match(self.text, start)
            if m is None:
                break
            if "f" in m.group(1).lower():
                stop = self.scan_fstring(m, self.field_end)
            else:
                stop = self.string_end(m.start(2))
            out.append((start, stop))
            start = self.skip(stop)
        return out

    def scan_fstring(self, m: re.Match[str], field: Callable[[int], int]) -> int:
        """Walk the body of the f-string whose prefix and quote `m` matched, calling
        `field(offset)` at each replacement field (it returns where the field ends).

        **Returns:** where the f-string ends.
        """
        text, quote = self.text, m.group(2)
        raw = "r" in m.group(1).lower()
        at, size = m.end(), len(text)
        while at < size:
            c = text[at]
            if text.startswith(quote, at):
                return at + len(quote)
            if c == "\\" and not raw:
                if text.startswith("N{", at + 1):
                    close = text.find("}", at)
                    at = close + 1 if close > 0 else size
                else:
                    at += 2
            elif c == "{" and not text.startswith("{{", at):
                at = field(at)
            elif c in "{}":
                at += 2
            else:
                at += 1
        return size

    def field_end(self, at: int) -> int:
        """Where the replacement field opening at `at` ends (after its '}')."""
        return self.field(at).end

    def field(self, at: int) -> Field:
        """The replacement field whose '{' is at `at`."""
        text, size = self.text, len(self.text)
        depth, k = 0, at + 1
        while k < size:
            c = text[k]
            if c in "([{":
                depth += 1
            elif c in ")]":
                depth -= 1
            elif c == "}":
                if depth == 0:
                    break
                depth -= 1
            elif c in "'\"":
                k = self.string_end(k)
                continue
            elif depth == 0 and (c == ":" or (c == "!" and text[k + 1: k + 2] != "=") or (
                    c == "=" and text[k + 1: k + 2] != "=" and text[k - 1] not in "=!<>")):
                break
            k += 1
        expr_end, equal = k, False
        if text[k: k + 1] == "=":
            equal, k = True, k + 1
            while k < size and text[k] in " \t\f\r\n":
                k += 1
        conversion = None
        if text[k: k + 1] == "!":
            conversion, k = text[k + 1: k + 2], k + 2
        spec, nested = None, False
        if text[k: k + 1] == ":":
            j, depth = k + 1, 0
            while j < size:
                if text[j] == "{":
                    depth, nested = depth + 1, True
                elif text[j] == "}":
                    if depth == 0:
                        break
                    depth -= 1
                j += 1
            spec, k = text[k + 1: j] or None, j
        return Field(expr_end, conversion, spec, nested, equal, min(k + 1, size))


def fstring_text(text: str, raw: bool) -> str:
    """Literal text of an f-string part: doubled braces, and escapes unless `raw`."""
    text = text.replace("{{", "{").replace("}}", "}")
    if raw or "\\" not in text:
        return text
    escaped = re.sub(r'\\(?:\r\n|.)|"', lambda m: '\\"' if m.group() == '"' else m.group(),
                     text, flags=re.S)
    return ast.literal_eval('"""' + escaped + '"""')
