"""Determinism: the same models give byte-identical outputs, whatever the process.

The command line (`aot_build.py models -o OUT --no-compile`) runs in fresh
processes with different PYTHONHASHSEED values and from different working
directories (model paths given relative and absolute); every output file
(generated modules, runtime, package files, build cache) must be identical.
In-process, building twice and in another file order gives the same texts.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from aotflax.driver import front_end

ROOT = Path(__file__).resolve().parent.parent
MODELS = ROOT / "models"


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _cli(models: str, out: Path, cwd: Path, seed: str) -> dict[str, bytes]:
    env = {**os.environ, "PYTHONHASHSEED": seed, "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run([sys.executable, str(ROOT / "aot_build.py"), models, "-o", str(out),
                           "--no-compile"], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return _snapshot(out)


def test_byte_identical_across_hash_seeds_and_working_directories(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    a = _cli("models", tmp_path / "a", ROOT, "0")
    b = _cli(str(MODELS), tmp_path / "b", elsewhere, "4242")
    assert a.keys() == b.keys()
    assert [k for k in a if a[k] != b[k]] == []
    assert any(k.endswith(".py") and k not in ("__init__.py", "_runtime.py") for k in a)
    for name, data in a.items():  # nothing about this machine leaks into the outputs
        assert str(tmp_path).encode() not in data, name
        assert str(ROOT).encode() not in data, name


def test_front_end_is_order_independent_and_repeatable() -> None:
    models = sorted(MODELS.glob("*.py"))
    first = {f.out_rel: f.text for f in front_end(models, MODELS).files}
    again = {f.out_rel: f.text for f in front_end(list(reversed(models)), MODELS).files}
    assert first == again
    assert all(first.values())
