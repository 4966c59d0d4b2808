"""The bad-input test set: every file of tests/data/errors/ must fail exactly as annotated.

Expectations are written inline, mypy-style: a comment `# E: AOT311` (optionally
followed by a substring of the message) on the line where the error must be
reported; several `# E:` on one line expect several errors there.  Each file is
built with the real command line (`aot_build.py FILE -o OUT --no-compile`) and
must exit 1, report exactly the annotated errors (no more, no fewer), render
the source line with a caret under each, print no traceback, and write nothing.
"""

from __future__ import annotations

import contextlib
import io
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from aotflax.codes import CODES, explain
from aotflax.driver import main

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data" / "errors"
FILES = sorted(DATA.glob("*.py"))

_EXPECT = re.compile(r"#\s*E:\s*(AOT\d{3})[ \t]*(.*?)\s*(?=#\s*E:|$)")
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


def expectations(path: Path) -> list[Expected]:
    """The `# E:` annotations of a data file (read as bytes: some are not UTF-8)."""
    text = path.read_bytes().decode("utf-8", errors="replace")
    out = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if "# E:" not in line:
            continue
        comment = line[line.index("# E:"):]
        out.extend(Expected(lineno, m.group(1), m.group(2)) for m in _EXPECT.finditer(comment))
    return out


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


def test_enough_bad_inputs() -> None:
    assert len(FILES) >= 20


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_bad_input(path: Path, tmp_path: Path) -> None:
    out_dir = tmp_path / "out"
    rc, output = run_cli([str(path), "-o", str(out_dir), "--no-compile"])
    check_output(path, rc, output, out_dir)


def test_real_command_line(tmp_path: Path) -> None:
    """The same checks through `python aot_build.py` in a subprocess, for one file."""
    path = DATA / "several_errors.py"
    out_dir = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "aot_build.py"), str(path), "-o", str(out_dir),
         "--no-compile"], capture_output=True, text=True, cwd=ROOT, timeout=120)
    check_output(path, proc.returncode, proc.stdout + proc.stderr, out_dir)


# ------------------------------------------------------------------ the catalogue


def codes_in_sources() -> set[str]:
    codes: set[str] = set()
    for p in (ROOT / "aotflax").rglob("*.py"):
        if p.name != "codes.py":
            codes.update(re.findall(r"AOT\d{3}", p.read_text()))
    return codes


def test_every_raised_code_is_explained() -> None:
    missing = sorted(codes_in_sources() - set(CODES))
    assert not missing, f"codes without an entry in aotflax/codes.py: {missing}"


def test_every_expected_code_is_explained() -> None:
    used = {e.code for p in FILES for e in expectations(p)}
    assert used <= set(CODES)


def test_explain_prints_every_code(capsys: pytest.CaptureFixture[str]) -> None:
    for code in CODES:
        assert explain(code) == 0
        text = capsys.readouterr().out
        assert text.startswith(f"{code}: "), text
        assert "Example" in text and "Fix" in text, code
    assert explain("aot311") == 0  # case-insensitive
    assert capsys.readouterr().out.startswith("AOT311")


def test_explain_unknown_code() -> None:
    rc, output = run_cli(["--explain", "AOT999"])
    assert rc == 1 and "unknown" in output


def test_explain_command_line() -> None:
    rc, output = run_cli(["--explain", "AOT311"])
    assert rc == 0 and "shared" in output
