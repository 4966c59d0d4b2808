"""The output folder: the build writes and deletes only inside it, one build at a time,
all files or none, and signs manifests when given a key.

Each hostile layout is made here (links into a victim folder outside the output,
a stray file where a folder must go, a FIFO where the cache goes); the victim
must be untouched and the output as it was.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

from helpers import write_model

from aotflax import artifacts, outdir

ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(ROOT)}
ENV.pop("AOTFLAX_SIGN_KEY", None)

MODEL = """
class MLP(nn.Module):
    def apply(self, x, hidden: int = {hidden}):
        return nn.Dense(nn.relu(nn.Dense(x, hidden)), 3)

aot.target("mlp", MLP, x=aot.f32[2, 5])
"""


def build(model: Path, out: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "aot_build.py"), str(model), "-o",
                           str(out), *args], capture_output=True, text=True,
                          env={**ENV, **env}, timeout=300)


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and not p.is_symlink()}


def victim(tmp_path: Path) -> Path:
    """A folder outside the output that looks like a target's artifacts."""
    folder = tmp_path / "victim" / "old_target"
    folder.mkdir(parents=True)
    (folder / "manifest.json").write_text("{}")
    (folder / "precious.txt").write_text("keep me")
    return folder


def test_pruning_never_follows_a_link(tmp_path: Path) -> None:
    model = write_model(MODEL.format(hidden=4), name="net")
    out = tmp_path / "out"
    assert build(model, out).returncode == 0
    target = victim(tmp_path)
    module_folder = out / "artifacts" / "net"
    (module_folder / "linked").symlink_to(target, target_is_directory=True)
    stale = module_folder / "stale"
    stale.mkdir()
    (stale / "manifest.json").write_text("{}")
    result = build(model, out)
    assert result.returncode == 0, result.stderr
    assert not stale.exists()  # a real folder of a target no longer declared: pruned
    assert (module_folder / "linked").is_symlink()  # a link: left alone
    assert (target / "precious.txt").read_text() == "keep me"


def test_artifacts_folder_that_is_a_link_is_refused_before_any_write(tmp_path: Path) -> None:
    model = write_model(MODEL.format(hidden=4), name="net")
    out = tmp_path / "out"
    assert build(model, out, "--no-compile").returncode == 0
    before = snapshot(out)
    target = victim(tmp_path)
    (out / "artifacts").symlink_to(target.parent, target_is_directory=True)
    model.write_text(model.read_text().replace("hidden: int = 4", "hidden: int = 6"))
    result = build(model, out)
    assert result.returncode == 1
    assert f"{out / 'artifacts'} is a symbolic link" in result.stderr
    assert snapshot(out) == before  # not even net.py was rewritten
    assert sorted(p.name for p in target.iterdir()) == ["manifest.json", "precious.txt"]


def test_generated_file_that_is_a_link_is_not_written_through(tmp_path: Path) -> None:
    model = write_model(MODEL.format(hidden=4), name="net")
    out = tmp_path / "out"
    out.mkdir()
    precious = tmp_path / "precious.py"
    precious.write_text("keep me")
    (out / "net.py").symlink_to(precious)
    result = build(model, out, "--no-compile")
    assert result.returncode == 1
    assert f"{out / 'net.py'} is a symbolic link" in result.stderr
    assert "nothing was written" in result.stderr
    assert precious.read_text() == "keep me"
    assert not (out / "_runtime.py").exists()


def test_a_stray_file_where_a_folder_goes_leaves_every_file_as_it_was(tmp_path: Path) -> None:
    models = tmp_path / "models"
    (models / "sub").mkdir(parents=True)
    (models / "a.py").write_text(write_model(MODEL.format(hidden=4)).read_text())
    out = tmp_path / "out"
    assert build(models, out, "--no-compile").returncode == 0
    (models / "a.py").write_text(write_model(MODEL.format(hidden=6)).read_text())
    (models / "sub" / "b.py").write_text(write_model(MODEL.format(hidden=2)).read_text())
    (out / "sub").write_text("a stray file")
    before = snapshot(out)
    result = build(models, out, "--no-compile")
    assert result.returncode == 1
    assert f"{out / 'sub'} is a file where the build needs a folder" in result.stderr
    assert snapshot(out) == before  # a.py, _runtime.py, the cache: all as they were
    assert sorted(p.name for p in out.iterdir() if ".tmp" in p.name) == []


def test_a_build_waits_for_the_lock_and_gives_up_with_a_clear_message(tmp_path: Path) -> None:
    model = write_model(MODEL.format(hidden=4), name="net")
    out = tmp_path / "out"
    with outdir.build_lock(out, 5, print):
        result = build(model, out, "--no-compile", "--lock-timeout", "1")
        assert result.returncode == 1
        assert f"another aotflax build (pid {os.getpid()}) has been writing {out}" in result.stderr
        assert "--lock-timeout" in result.stderr
        assert not (out / "net.py").exists()
        waiting = subprocess.Popen(
            [sys.executable, str(ROOT / "aot_build.py"), str(model), "-o", str(out),
             "--no-compile"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
            env=ENV)
        lines: list[str] = []
        said = threading.Event()

        def read() -> None:
            for line in waiting.stderr:
                lines.append(line)
                if "waiting for another aotflax build" in line:
                    said.set()

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        assert said.wait(120), "".join(lines)  # it reached the lock and waits
        assert waiting.poll() is None
    assert waiting.wait(120) == 0, "".join(lines)
    reader.join(10)
    assert f"waiting for another aotflax build (pid {os.getpid()}) writing {out}" in lines[0]
    assert (out / "net.py").is_file() and not (out / outdir.LOCK_NAME).exists()


def test_two_builds_at_once_leave_consistent_artifacts(tmp_path: Path) -> None:
    model = write_model(MODEL.format(hidden=4), name="net")
    out = tmp_path / "out"
    results: list[subprocess.CompletedProcess] = []
    threads = [threading.Thread(target=lambda: results.append(build(model, out)))
               for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [r.returncode for r in results] == [0, 0], [r.stderr for r in results]
    manifest = json.loads((out / "artifacts/net/mlp/manifest.json").read_text())
    for entry in [*manifest["executables"].values(), manifest["export"]]:
        data = (out / "artifacts/net/mlp" / entry["file"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == entry["sha256"]


def test_a_build_leaves_no_temporary_folder(tmp_path: Path) -> None:
    model = write_model(MODEL.format(hidden=4), name="net")
    temp = tmp_path / "temp"
    temp.mkdir()
    result = build(model, tmp_path / "out", "--no-compile", TMPDIR=str(temp))
    assert result.returncode == 0, result.stderr
    assert list(temp.iterdir()) == []


def test_a_fifo_where_the_cache_goes_is_an_error_not_a_hang(tmp_path: Path) -> None:
    model = write_model(MODEL.format(hidden=4), name="net")
    out = tmp_path / "out"
    out.mkdir()
    os.mkfifo(out / ".aotflax-cache.json")
    result = build(model, out, "--no-compile")  # bounded by build()'s timeout
    assert result.returncode == 1
    assert ".aotflax-cache.json is not a regular file" in result.stderr


def test_sign_key_signs_every_manifest_and_a_new_key_re_signs(tmp_path: Path) -> None:
    model = write_model(MODEL.format(hidden=4), name="net")
    out = tmp_path / "out"
    key_file = tmp_path / "key"
    key_file.write_text("first-key-0123456789abcdef\n")
    assert build(model, out, "--sign-key", str(key_file)).returncode == 0
    folder = out / "artifacts" / "net" / "mlp"
    first = artifacts.signing_key(key_file.read_bytes())
    assert artifacts.signature_valid(folder, first)
    again = build(model, out, "--sign-key", str(key_file))
    assert again.returncode == 0 and "cached" in again.stdout  # a valid signature: no work
    second = "second-key-0123456789abcdef"
    resigned = build(model, out, AOTFLAX_SIGN_KEY=second)
    assert resigned.returncode == 0 and "cached" not in resigned.stdout
    assert artifacts.signature_valid(folder, artifacts.signing_key(second))
    assert not artifacts.signature_valid(folder, first)
    check = subprocess.run([sys.executable, "-c", LOAD_SIGNED, str(out), second],
                           capture_output=True, text=True, env=ENV, timeout=120)
    assert check.returncode == 0 and "signed-ok" in check.stdout, check.stderr[-2000:]


LOAD_SIGNED = """
import sys
from aotflax.verify import load_package
from pathlib import Path
load_package(Path(sys.argv[1]), "_signed_pkg")
import importlib
net = importlib.import_module("_signed_pkg.net")
assert net.mlp.load(verify_key=sys.argv[2]).kind == "executable"
try:
    net.mlp.load(verify_key="not-the-key-0123456789")
except net._runtime.ArtifactSignatureError as error:
    print("signed-ok", error)
"""


def test_bad_signing_keys_are_clear_errors(tmp_path: Path) -> None:
    model = write_model(MODEL.format(hidden=4), name="net")
    short = tmp_path / "short"
    short.write_text("abc")
    result = build(model, tmp_path / "out", "--no-compile", "--sign-key", str(short))
    assert result.returncode == 1 and "at least 16 random bytes" in result.stderr
    result = build(model, tmp_path / "out", "--no-compile", "--sign-key", str(tmp_path / "no"))
    assert result.returncode == 1 and "cannot read the signing key" in result.stderr
    assert "Traceback" not in result.stderr
