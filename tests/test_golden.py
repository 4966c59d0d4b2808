"""Golden snapshots of generated code, and freshness of `generated/`.

Each `tests/golden/<case>.py` is a small model file; `<case>.expected.py` next to
it is the exact text aotflax generates for it (torch.fx's expected-inline
tests, mypyc's data-driven cases).  Generated code is a product: a change to
the emitter or a template shows up here as a readable diff to review.

Regenerate every snapshot after an intended change with

    python tests/test_golden.py --update

(exit status 1 when a snapshot changed; or run pytest with AOTFLAX_UPDATE_GOLDEN=1,
where every snapshot test rewrites its file and fails), then review
`git diff tests/golden`.
"""

from __future__ import annotations

import contextlib
import difflib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = ROOT / "tests" / "golden"
UPDATE_ENV = "AOTFLAX_UPDATE_GOLDEN"
UPDATE_COMMAND = "python tests/test_golden.py --update"
BUILD_COMMAND = "python aot_build.py models/"

sys.path.insert(0, str(ROOT))

from aotflax.diagnostics import BuildError  # noqa: E402
from aotflax.driver import front_end  # noqa: E402


def cases() -> list[Path]:
    """The golden model files (everything but the snapshots)."""
    return sorted(p for p in GOLDEN.glob("*.py") if not p.name.endswith(".expected.py"))


def expected_path(case: Path) -> Path:
    return case.with_name(case.stem + ".expected.py")


@contextlib.contextmanager
def _in_root() -> Iterator[None]:
    """Paths in generated comments are relative to the working directory: pin it."""
    old = os.getcwd()
    os.chdir(ROOT)
    try:
        yield
    finally:
        os.chdir(old)


def generate(case: Path) -> str:
    """The generated text for a golden case, as `aot_build.py tests/golden/` writes it."""
    with _in_root():
        report = front_end([case.relative_to(ROOT)], GOLDEN.relative_to(ROOT))
    if report.diagnostics:
        raise BuildError(report.diagnostics)
    return report.files[0].text


def _diff(want: str, got: str, name: str) -> str:
    lines = list(difflib.unified_diff(want.splitlines(keepends=True),
                                      got.splitlines(keepends=True),
                                      f"{name} (expected)", f"{name} (generated)"))
    shown = "".join(lines[:80])
    return shown + (f"... {len(lines) - 80} more diff lines\n" if len(lines) > 80 else "")


@pytest.mark.parametrize("case", cases(), ids=lambda p: p.stem)
def test_generated_code_matches_snapshot(case: Path) -> None:
    got = generate(case)
    path = expected_path(case)
    if os.environ.get(UPDATE_ENV):
        # an update run rewrites the snapshot and fails, so that it can never pass as a check
        changed = not path.is_file() or path.read_text() != got
        path.write_text(got)
        pytest.fail(f"{UPDATE_ENV} is set: {path.name} "
                    f"{'rewritten' if changed else 'unchanged'}; review `git diff tests/golden` "
                    f"and run the tests without {UPDATE_ENV}", pytrace=False)
    if not path.is_file():
        pytest.fail(f"no snapshot {path.relative_to(ROOT)}; create it with: {UPDATE_COMMAND}")
    want = path.read_text()
    if got != want:
        pytest.fail(f"generated code for {case.relative_to(ROOT)} changed:\n\n"
                    f"{_diff(want, got, path.name)}\n"
                    f"If the change is intended, regenerate the snapshots with:\n"
                    f"    {UPDATE_COMMAND}\nand review `git diff tests/golden`.", pytrace=False)


def test_the_update_mode_rewrites_the_snapshot_and_fails(tmp_path: Path, monkeypatch) -> None:
    case = cases()[0]
    target = tmp_path / expected_path(case).name
    target.write_text("stale\n")
    monkeypatch.setattr(sys.modules[__name__], "expected_path", lambda _: target)
    monkeypatch.setenv(UPDATE_ENV, "1")
    with pytest.raises(pytest.fail.Exception, match="rewritten"):
        test_generated_code_matches_snapshot(case)
    assert target.read_text() == generate(case)
    with pytest.raises(pytest.fail.Exception, match="unchanged"):
        test_generated_code_matches_snapshot(case)


def test_every_snapshot_has_a_case() -> None:
    orphans = [p.name for p in GOLDEN.glob("*.expected.py")
               if not p.with_name(p.name.removesuffix(".expected.py") + ".py").is_file()]
    assert not orphans, f"snapshots without a golden model file: {orphans}"


def test_generated_folder_is_fresh() -> None:
    """`generated/` is what the compiler makes of `models/` today (LibCST's codegen test)."""
    proc = subprocess.run(
        [sys.executable, "aot_build.py", "models/", "--check", "--no-compile"],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        pytest.fail(f"generated/ is stale:\n{proc.stdout}{proc.stderr}\n"
                    f"Rebuild it with:\n    {BUILD_COMMAND}\nand commit generated/.",
                    pytrace=False)


def update() -> int:
    """Rewrite every snapshot; print the ones that changed.

    **Returns:** the exit status: 1 when a snapshot changed (review it), 0 when none did.
    """
    changed = 0
    for case in cases():
        path, text = expected_path(case), generate(case)
        if not path.is_file() or path.read_text() != text:
            path.write_text(text)
            changed += 1
            print(f"updated {path.relative_to(ROOT)}")
    print(f"{changed} of {len(cases())} snapshot(s) changed; review `git diff tests/golden`")
    return 1 if changed else 0


if __name__ == "__main__":
    if sys.argv[1:] != ["--update"]:
        print(f"usage: {UPDATE_COMMAND}", file=sys.stderr)
        sys.exit(2)
    sys.exit(update())
