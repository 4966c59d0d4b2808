"""The bad-input test set: every file of tests/data/errors/ must fail exactly as annotated.

Expectations are written inline, mypy-style: a comment `# E: AOT311` (optionally
followed by a substring of the message) on the line where the error must be
reported; several `# E:` on one line expect several errors there.  Each file is
built with the real command line (`aot_build.py FILE -o OUT --no-compile`) and
must exit 1, report exactly the annotated errors (no more, no fewer), render
the source line with a caret under each, print no traceback, and write nothing.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from diag_check import check_output, expectations, run_cli

from aotflax.codes import CODES, EXAMPLE_HEADER, explain
from aotflax.driver import front_end

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data" / "errors"
FILES = sorted(DATA.glob("*.py"))


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


def _front_end_codes(source: str, folder: Path) -> tuple[list[str], list[str]]:
    """Codes of the errors and of the warnings of a one-file build."""
    path = folder / "example.py"
    path.write_text(EXAMPLE_HEADER + source)
    report = front_end([path], folder)
    return [d.code for d in report.diagnostics], [d.code for d in report.warnings]


CHECKED = [e for e in CODES.values() if e.checked]


@pytest.mark.parametrize("entry", CHECKED, ids=[e.code for e in CHECKED])
def test_catalogue_example(entry, tmp_path: Path) -> None:
    """Each entry's wrong example fails with its code and its fixed example builds."""
    (tmp_path / "wrong").mkdir()
    (tmp_path / "fixed").mkdir()
    errors, warnings = _front_end_codes(entry.wrong, tmp_path / "wrong")
    assert entry.code in errors + warnings
    errors, warnings = _front_end_codes(entry.fixed, tmp_path / "fixed")
    assert errors == [] and entry.code not in warnings


SKIPPED = sorted((Path(__file__).resolve().parent / "data" / "skipped").glob("*.py"))


@pytest.mark.parametrize("path", SKIPPED, ids=[p.stem for p in SKIPPED])
def test_skipped_code_warns(path: Path, tmp_path: Path) -> None:
    """Code no target reaches builds, runs nothing and gets one warning per statement (one
    for the file where more than three are skipped, naming them)."""
    from diag_check import check_warnings

    rc, output = run_cli([str(path), "-o", str(tmp_path / "out"), "--no-compile"])
    check_warnings(path, rc, output)
    assert not Path("/tmp/aotflax-should-never-exist").exists()
