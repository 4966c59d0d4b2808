"""The compiler package type-checks under mypy (configured in pyproject.toml)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_the_compiler_package_type_checks(tmp_path: Path) -> None:
    pytest.importorskip("mypy")
    # a fresh cache each run: a stale one from another checkout must not hide errors
    proc = subprocess.run(
        [sys.executable, "-m", "mypy", "--cache-dir", str(tmp_path / "mypy-cache"),
         "--no-error-summary", "--hide-error-context"],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
        env={**os.environ, "MYPY_FORCE_COLOR": "0"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
