"""`aotflax inspect ARTIFACT_DIR`: the manifest in words, every file checked, the verdict.

Runs the real command line (`aotflax.driver.main`) on artifacts compiled once per
module; `--run-check` runs each executable in a subprocess.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import pickle
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest
from test_artifacts import PACKAGE, render_package

from aotflax import artifacts
from aotflax.compile import compile_target
from aotflax.driver import main

KEY = b"inspect-key-0123456789abcdef"


@pytest.fixture(scope="module")
def roots(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Artifacts of mlp_b2 and mlp_batch, unsigned and (mlp_b2) signed."""
    root = tmp_path_factory.mktemp("inspectpkg")
    render_package(root)
    sys.path.insert(0, str(root))
    try:
        for name in [m for m in sys.modules if m == PACKAGE or m.startswith(PACKAGE + ".")]:
            del sys.modules[name]
        sample = importlib.import_module(f"{PACKAGE}.sample")
        compile_target(sample.mlp_b2, root / "plain")
        compile_target(sample.mlp_batch, root / "plain")
        compile_target(sample.mlp_b2, root / "signed", sign_key=KEY)
    finally:
        sys.path.remove(str(root))
    return {"plain": root / "plain", "signed": root / "signed"}


@pytest.fixture
def plain(roots: dict[str, Path], tmp_path: Path) -> Path:
    shutil.copytree(roots["plain"], tmp_path / "plain")
    return tmp_path / "plain"


def inspect(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    status = main(["inspect", *map(str, args)])
    captured = capsys.readouterr()
    return status, captured.out + captured.err


def mlp_folder(root: Path) -> Path:
    return root / "sample" / "mlp_b2"


def test_inspect_describes_a_good_folder(roots: dict[str, Path], capsys: Any) -> None:
    status, out = inspect(capsys, roots["plain"])
    assert status == 0, out
    assert "sample.mlp_b2" in out and "sample.mlp_batch" in out
    assert "x: float32[2, 4]" in out and "x: float32[batch, 4]" in out
    assert "sha256 verified" in out and "FAILED" not in out
    assert "native executable for 1 x cpu" in out and "this host can load it" in out
    assert "symbolic input dimensions" in out
    assert "portable jax.export for cpu, cuda, tpu" in out
    assert "2 artifact folder(s) checked: all passed" in out


def test_inspect_names_the_corrupted_file(plain: Path, capsys: Any) -> None:
    folder = mlp_folder(plain)
    name = artifacts.read_manifest(folder)["executables"]["cpu"]["file"]
    data = bytearray((folder / name).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (folder / name).write_bytes(bytes(data))
    status, out = inspect(capsys, plain)
    assert status == 1
    bad = [line for line in out.splitlines() if "FAILED" in line]
    assert len(bad) == 1 and name in bad[0] and "does not match its manifest" in bad[0], out
    assert "1 of 2 failed" in out


def test_inspect_reports_a_malformed_manifest(plain: Path, capsys: Any) -> None:
    path = mlp_folder(plain) / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["executables"]["cpu"]["file"] = "../../etc/passwd"
    path.write_text(json.dumps(manifest))
    status, out = inspect(capsys, mlp_folder(plain))
    assert status == 1 and "plain file name" in out


def test_inspect_checks_signatures(roots: dict[str, Path], tmp_path: Path,
                                   capsys: Any) -> None:
    key = tmp_path / "key"
    key.write_bytes(KEY + b"\n")
    status, out = inspect(capsys, roots["signed"], "--key", key)
    assert status == 0 and "valid (hmac-sha256" in out, out
    status, out = inspect(capsys, roots["signed"])
    assert status == 0 and "present, not checked" in out
    key.write_bytes(b"another-key-0123456789abcdef")
    status, out = inspect(capsys, roots["signed"], "--key", key)
    assert status == 1 and "does not match the manifest and the key given" in out
    status, out = inspect(capsys, mlp_folder(roots["plain"]), "--key", key)
    assert status == 1 and "is not signed" in out


def test_run_check_runs_each_executable_in_a_subprocess(roots: dict[str, Path],
                                                        capsys: Any) -> None:
    status, out = inspect(capsys, mlp_folder(roots["plain"]), "--run-check")
    assert status == 0, out
    assert "cpu: loaded and ran on zeros in" in out and "-> float32[2, 3], int32[]" in out


def test_run_check_is_bounded_in_time(roots: dict[str, Path], capsys: Any) -> None:
    status, out = inspect(capsys, mlp_folder(roots["plain"]), "--run-check", "--timeout",
                          "0.01")
    assert status == 1 and "did not finish within 0.01 s (killed)" in out


def test_run_check_on_a_hostile_payload_runs_nothing(plain: Path, tmp_path: Path,
                                                     capsys: Any) -> None:
    folder = mlp_folder(plain)
    manifest = json.loads((folder / "manifest.json").read_text())
    entry = manifest["executables"]["cpu"]
    marker = tmp_path / "marker"

    class Payload:
        def __reduce__(self) -> Any:
            return os.system, (f"touch {marker}",)

    payload = pickle.dumps(Payload())
    (folder / entry["file"]).write_bytes(payload)
    entry.update(sha256=hashlib.sha256(payload).hexdigest(), size=len(payload))
    (folder / "manifest.json").write_text(json.dumps(manifest))
    status, out = inspect(capsys, folder, "--run-check")
    assert status == 1 and "it names posix.system" in out, out
    assert not marker.exists()


def test_inspect_usage_errors(tmp_path: Path, capsys: Any) -> None:
    status, out = inspect(capsys, tmp_path / "nowhere")
    assert status == 1 and "not a folder" in out
    status, out = inspect(capsys, tmp_path)
    assert status == 1 and "no manifest.json at or below" in out
