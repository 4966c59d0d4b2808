"""Checking a failed build's output against `# E: CODE message` annotations (mypy style).

Shared by the bad-input tests (tests/data/errors/) and the canary tests: the
command line is run in-process (`aotflax.driver.main`, the console script's
code path) and its output must report exactly the annotated errors, each with
the source line and a caret, no traceback, exit status 1, and nothing written.
"""

from __future__ import annotations

import contextlib
import io
import re
from dataclasses import dataclass
from pathlib import Path

from aotflax.driver import main

_EXPECT = re.compile(r"#\s*E:\s*(AOT\d{3})[ \t]*(.*?)\s*(?=#\s*[EW]:|$)")
_WARN = re.compile(r"#\s*W:\s*(AOT\d{3})[ \t]*(.*?)\s*(?=#\s*[EW]:|$)")
_WARNING = re.compile(r"^(?P<path>\S.*?):(?P<line>\d+): warning\[(?P<code>AOT\d{3})\]: "
                      r"(?P<msg>.*)$")
_HEADER = re.compile(r"^(?P<path>\S.*?):(?P<line>\d+):(?P<col>\d+): error\[(?P<code>AOT\d{3})\]: "
                     r"(?P<msg>.*)$")


@dataclass(frozen=True)
class Expected:
    line: int
    code: str
    substring: str


@dataclass(frozen=True)
class Reported:
    line: int
    col: int
    code: str
    message: str
    index: int  # line number in the output, to look at the excerpt below it


def expectations(path: Path, marker: str = "E") -> list[Expected]:
    """The `# E:` (errors) or `# W:` (warnings) annotations of a data file (read as bytes:
    some are not UTF-8)."""
    text = path.read_bytes().decode("utf-8", errors="replace")
    pattern = _EXPECT if marker == "E" else _WARN
    out = []
    for lineno, line in enumerate(text.splitlines(), 1):
        at = re.search(rf"#\s*{marker}:", line)
        if at is None:
            continue
        comment = line[at.start():]
        out.extend(Expected(lineno, m.group(1), m.group(2)) for m in pattern.finditer(comment))
    return out


def check_warnings(path: Path, rc: int, output: str) -> None:
    """A build that succeeds and warns exactly about the `# W:` lines (skipped code)."""
    want = expectations(path, "W")
    assert want, f"{path.name} has no '# W:' annotations"
    assert rc == 0, output
    assert "Traceback" not in output and "error" not in output, output
    got = []
    for row in output.splitlines():
        m = _WARNING.match(row)
        if m and Path(m["path"]).resolve() == path.resolve():
            got.append((int(m["line"]), m["code"], m["msg"]))
    for w in want:
        hit = next((g for g in got if g[0] == w.line and g[1] == w.code
                    and w.substring in g[2]), None)
        assert hit is not None, (f"{path.name}:{w.line}: expected warning[{w.code}] "
                                 f"containing {w.substring!r}\n--- output:\n{output}")
        got.remove(hit)
    assert not got, f"unexpected warnings: {got}"


def run_cli(args: list[str]) -> tuple[int, str]:
    """`aotflax ARGS` in-process (same code path as the console script); rc, stdout+stderr."""
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
        try:
            rc = main(args)
        except SystemExit as e:  # argparse
            rc = int(e.code or 0)
    return rc, buf.getvalue()


def reported(output: str, path: Path) -> list[Reported]:
    rows = output.splitlines()
    out = []
    for i, row in enumerate(rows):
        m = _HEADER.match(row)
        if m:
            assert Path(m["path"]).resolve() == path.resolve(), row
            out.append(Reported(int(m["line"]), int(m["col"]), m["code"], m["msg"], i))
    return out


def check_output(path: Path, rc: int, output: str, out_dir: Path) -> None:
    want = expectations(path)
    assert want, f"{path.name} has no '# E:' annotations"
    assert "Traceback" not in output, output
    assert "internal error" not in output, output
    assert rc == 1, output
    assert not out_dir.exists() or not any(out_dir.iterdir()), "a failed build wrote files"
    got = reported(output, path)
    rows = output.splitlines()
    source = path.read_bytes().decode("utf-8", errors="replace").splitlines()
    for r in got:  # every error shows its source line with a caret run under the span
        assert rows[r.index + 1] == "    " + source[r.line - 1].expandtabs(8), output
        caret = rows[r.index + 2]
        assert re.fullmatch(r" {4,}\^+", caret), output
        assert caret.index("^") - 4 == r.col - 1, output
    unmatched = list(got)
    for w in want:
        hit = next((r for r in unmatched if r.line == w.line and r.code == w.code
                    and w.substring in r.message), None)
        assert hit is not None, (f"{path.name}:{w.line}: expected error[{w.code}] "
                                 f"containing {w.substring!r}\n--- output:\n{output}")
        unmatched.remove(hit)
    assert not unmatched, "unexpected errors:\n" + "\n".join(
        f"{path.name}:{r.line}: error[{r.code}]: {r.message}" for r in unmatched)
    n = len(want)
    assert f"{n} error{'s' if n != 1 else ''}; nothing was written" in output, output
