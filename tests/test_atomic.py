"""Builds are atomic: a build killed at any write, rename or removal leaves the output as
before or complete, and a build with nothing changed does no work.

The kills are deterministic: `AOTFLAX_FAULT_AT=N` (`artifacts.fault_point`) makes the
build SIGKILL itself at the N-th point where it is about to change its output folder
(half of a file's bytes written to its temporary file, a rename into place, a removal),
and `AOTFLAX_FAULT_AT=list` lists those points, so the test kills the build once at
every one of them.
"""

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

from helpers import write_model

ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(ROOT)}
ENV.pop("AOTFLAX_FAULT_AT", None)
POINT = re.compile(r"^aotflax fault point (\d+): (write|rename|remove) (.+)$", re.M)

MODEL = """
class MLP(nn.Module):
    def apply(self, x, hidden: int = {hidden}):
        return nn.Dense(nn.relu(nn.Dense(x, hidden)), 3)

aot.target("mlp", MLP, x=aot.f32[2, 5])
"""


def _build(model: Path, out: Path, fault: str | None = None) -> subprocess.CompletedProcess:
    env = ENV if fault is None else {**ENV, "AOTFLAX_FAULT_AT": fault}
    return subprocess.run([sys.executable, str(ROOT / "aot_build.py"), str(model), "-o",
                           str(out)], capture_output=True, text=True, env=env, timeout=300)


def _snapshot(out: Path) -> dict[str, bytes]:
    """Every file the build owns (not the temporary files an interrupted write leaves)."""
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*"))
            if p.is_file() and not (p.name.startswith(".") and p.name.endswith(".tmp"))}


def _consistent_artifacts(out: Path) -> None:
    """A manifest only names files that exist with the sha256 it records."""
    manifests = list(out.rglob("manifest.json"))
    assert manifests
    for manifest in manifests:
        data = json.loads(manifest.read_text())
        for entry in [*data["executables"].values(), data["export"]]:
            path = manifest.parent / entry["file"]
            assert hashlib.sha256(path.read_bytes()).hexdigest() == entry["sha256"]


def test_a_build_killed_at_every_write_rename_and_removal_leaves_old_or_new(
        tmp_path: Path) -> None:
    model = write_model(MODEL.format(hidden=4), name="net")
    out = tmp_path / "out"
    assert _build(model, out).returncode == 0
    old = _snapshot(out)
    model.write_text(model.read_text().replace("hidden: int = 4", "hidden: int = 6"))
    complete = tmp_path / "complete"
    shutil.copytree(out, complete)
    listed = _build(model, complete, fault="list")
    assert listed.returncode == 0, listed.stderr
    new = _snapshot(complete)
    assert new["net.py"] != old["net.py"]
    points = [(int(n), action, Path(path).relative_to(complete).as_posix())
              for n, action, path in POINT.findall(listed.stderr)]
    assert [n for n, _, _ in points] == list(range(1, len(points) + 1))
    # the rebuild changes the source, its artifacts (the old ones removed) and the cache
    actions = {(action, path.split("/")[0]) for _, action, path in points}
    assert {("write", "net.py"), ("rename", "net.py"), ("rename", "artifacts"),
            ("remove", "artifacts"), ("rename", ".aotflax-cache.json")} <= actions
    # a kill at a point stops the build just before it: after this one net.py is new
    renamed = next(n for n, action, path in points if (action, path) == ("rename", "net.py"))
    # the next build from each state a kill leaves completes the output; the old state's
    # next build is the one `complete` already made
    rebuilt = {tuple(sorted(_owned(old).items()))}
    for n, action, path in points:
        trial = tmp_path / f"trial_{n}"
        shutil.copytree(out, trial)
        killed = _build(model, trial, fault=str(n))
        assert killed.returncode == -signal.SIGKILL, (n, action, path, killed.stderr)
        got = _snapshot(trial)
        for name, data in got.items():
            assert _whole(name, data, old, new), \
                f"{name} is half-written after a kill at point {n} ({action} {path})"
        # the source is the old or the new one, and the artifacts agree with a manifest
        assert got["net.py"] == (new if n > renamed else old)["net.py"], (n, action, path)
        _consistent_artifacts(trial)
        state = tuple(sorted(_owned(got).items()))
        if state in rebuilt:
            continue  # a kill just before a rename leaves what the kill mid-write left
        rebuilt.add(state)
        # whatever state it was left in, the next build completes it
        again = _build(model, trial)
        assert again.returncode == 0, again.stderr
        done = _snapshot(trial)
        assert _shape(done) == _shape(new), (n, action, path)
        _consistent_artifacts(trial)
        cache = json.loads(done[".aotflax-cache.json"])
        assert cache["artifacts"]["net.mlp"] == hashlib.sha256(
            done["artifacts/net/mlp/manifest.json"]).hexdigest()


def _owned(snapshot: dict[str, bytes]) -> dict[str, bytes]:
    """Without the lock file, which a killed build cannot remove."""
    return {k: v for k, v in snapshot.items() if k != ".aotflax.lock"}


def _shape(snapshot: dict[str, bytes]) -> dict[str, object]:
    """A build's files up to the executables' bytes (see `_normal`), named without hashes."""
    return {re.sub(r"-[0-9a-f]{16}\.bin$", ".bin", k): _normal(k, v)
            for k, v in _owned(snapshot).items()}


def _normal(name: str, data: bytes) -> object:
    """A file's content up to the executables' bytes, which differ between two builds into
    two folders (their paths are compiled in): manifests without the files' names, hashes
    and sizes, the cache without the manifests' hashes, an artifact file by its name."""
    if name.endswith(".bin"):
        return None
    if name.endswith("manifest.json"):
        return _without(json.loads(data), ("file", "sha256", "size"))
    if name == ".aotflax-cache.json":
        cache = json.loads(data)
        return {**cache, "artifacts": sorted(cache["artifacts"])}
    return data


def _without(value: object, keys: tuple[str, ...]) -> object:
    if isinstance(value, dict):
        return {k: "-" if k in keys else _without(v, keys) for k, v in value.items()}
    if isinstance(value, list):
        return [_without(v, keys) for v in value]
    return value


def _whole(name: str, data: bytes, old: dict[str, bytes], new: dict[str, bytes]) -> bool:
    """Whether a file left by a killed build is one whole version of it."""
    if name == ".aotflax.lock":
        return True
    if name.endswith(".bin"):  # artifact files are named by their sha256
        digest = re.search(r"-([0-9a-f]{16})\.bin$", name)
        return bool(digest) and hashlib.sha256(data).hexdigest().startswith(digest.group(1))
    return _normal(name, data) in [_normal(name, v) for v in (old.get(name), new.get(name))
                                   if v is not None]


def test_a_second_build_with_nothing_changed_changes_nothing(tmp_path: Path) -> None:
    """A no-op rebuild is a hash check: jax is never imported and no file of the output
    folder, the build cache included, changes bytes or mtime."""
    model = write_model(MODEL.format(hidden=4), name="net")
    out = tmp_path / "out"
    first = _build(model, out)
    assert first.returncode == 0 and re.search(r"\d\.\d\d s\s*$", first.stdout, re.M)
    files = sorted(p for p in out.rglob("*") if p.is_file())
    assert out / ".aotflax-cache.json" in files
    before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in files}
    # the build's own entry point, with a probe after it: was jax imported?
    probe = ("import runpy, sys\n"
             f"sys.argv = ['aot_build.py', {str(model)!r}, '-o', {str(out)!r}]\n"
             "try:\n"
             f"    runpy.run_path({str(ROOT / 'aot_build.py')!r}, run_name='__main__')\n"
             "except SystemExit as e:\n"
             "    code = e.code\n"
             "print('exit', code, 'jax imported:', 'jax' in sys.modules)\n")
    second = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                            env=ENV, timeout=300)
    assert "exit 0 jax imported: False" in second.stdout, second.stdout + second.stderr
    assert "compiling" not in second.stderr and "0 file(s) written" in second.stdout
    assert "cached" in second.stdout
    after = sorted(p for p in out.rglob("*") if p.is_file())
    assert after == files
    changed = [p.name for p in files if (p.read_bytes(), p.stat().st_mtime_ns) != before[p]]
    assert not changed, changed
