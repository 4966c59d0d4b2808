"""load() on hostile artifact folders: every one is refused with a reason, quickly, and runs nothing.

The hostile folders are written here: pickle payloads that would create a marker file
if unpickled (with their matching sha256 in the manifest), manifests naming files
outside their folder, links, FIFOs and /dev/zero, malformed and deeply nested
manifests, another target's executable, and unsigned or wrongly signed folders.
Each case works on a private copy of artifacts compiled once per module.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import pickle
import shutil
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, Callable

import jax
import numpy as np
import pytest
from test_artifacts import PACKAGE, assert_trees_close, mlp_args, render_package

from aotflax import artifacts
from aotflax.compile import compile_target

KEY = b"0123456789abcdef0123456789abcdef"
OTHER_KEY = b"fedcba9876543210fedcba9876543210"


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The sample module with artifacts for mlp_b2, dropout_b2 and mlp_batch (export only)."""
    root = tmp_path_factory.mktemp("secpkg")
    package = render_package(root)
    sys.path.insert(0, str(root))
    try:
        for name in [m for m in sys.modules if m == PACKAGE or m.startswith(PACKAGE + ".")]:
            del sys.modules[name]
        module = importlib.import_module(f"{PACKAGE}.sample")
        for target in (module.mlp_b2, module.dropout_b2, module.mlp_batch):
            compile_target(target, package / "artifacts")
        signed = root / "signed"
        compile_target(module.mlp_b2, signed, sign_key=KEY)
        module.signed_root = signed
        yield module
    finally:
        sys.path.remove(str(root))


@pytest.fixture
def copy(sample: Any, tmp_path: Path) -> Path:
    """A private copy of the artifacts root, to damage."""
    shutil.copytree(Path(sample.__file__).parent / "artifacts", tmp_path / "artifacts")
    return tmp_path / "artifacts"


def folder(root: Path, target: Any) -> Path:
    return artifacts.target_folder(root, target.module, target.name)


def manifest_of(root: Path, target: Any) -> dict:
    return json.loads((folder(root, target) / "manifest.json").read_text())


def write_manifest(root: Path, target: Any, manifest: dict) -> None:
    (folder(root, target) / "manifest.json").write_text(json.dumps(manifest))


def plant(root: Path, target: Any, payload: bytes, *, export: bool = False) -> None:
    """Replaces the target's executable (or export) with `payload`, and fixes up its hash."""
    manifest = manifest_of(root, target)
    entry = manifest["export"] if export else manifest["executables"]["cpu"]
    (folder(root, target) / entry["file"]).write_bytes(payload)
    entry.update(sha256=hashlib.sha256(payload).hexdigest(), size=len(payload))
    if export:
        manifest["executables"] = {}
    write_manifest(root, target, manifest)


def within(seconds: float, call: Callable[[], Any]) -> Any:
    """Runs `call` in a thread and fails the test if it does not finish in time (a hang)."""
    result: dict[str, Any] = {}

    def run() -> None:
        try:
            result["value"] = call()
        except BaseException as error:  # handed to the test below
            result["error"] = error

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still running after {seconds} s"
    if "error" in result:
        raise result["error"]
    return result.get("value")


def refused(sample: Any, root: Path, match: str, target: Any = None, **options: Any) -> str:
    """Loads and expects an ArtifactError matching `match`, within 20 seconds."""
    target = target or sample.mlp_b2
    with pytest.raises(sample._runtime.ArtifactError, match=match) as info:
        within(20, lambda: target.load(artifact_dir=root, **options))
    return str(info.value)


# --- pickle payloads ---------------------------------------------------------------


class Reduce:
    """Pickles as a call of `func(*args)`: what a hostile payload does."""

    def __init__(self, func: Any, *args: Any) -> None:
        self.func, self.args = func, args

    def __reduce__(self) -> Any:
        return self.func, self.args


def payloads(marker: Path) -> dict[str, bytes]:
    touch = f"open({str(marker)!r}, 'w').write('ran')"
    return {
        "os.system": pickle.dumps(Reduce(os.system, f"touch {marker}")),
        "builtins.exec": pickle.dumps(Reduce(exec, touch)),
        "builtins.eval in a tuple": pickle.dumps((Reduce(eval, touch), [], False)),
        "subprocess.call": pickle.dumps(Reduce(subprocess.call, ["touch", str(marker)])),
        "importlib": pickle.dumps(Reduce(importlib.import_module, "this")),
        "a jax function": pickle.dumps(Reduce(jax.jit, len)),
    }


@pytest.mark.parametrize("kind", list(payloads(Path("m"))))
def test_pickle_payload_with_matching_hash_never_runs(
    sample: Any, copy: Path, tmp_path: Path, kind: str
) -> None:
    marker = tmp_path / "marker"
    plant(copy, sample.mlp_b2, payloads(marker)[kind])
    message = refused(sample, copy, "is not a serialized executable: it names")
    assert "no code in it ran" in message
    assert not marker.exists()


def test_pickle_of_allowed_classes_but_no_executable_is_refused(sample: Any, copy: Path) -> None:
    plant(copy, sample.mlp_b2, pickle.dumps((1, [], False)))
    refused(sample, copy, "jax could not load .*not an executable")
    plant(copy, sample.mlp_b2, b"\x80\x05not a pickle")
    refused(sample, copy, "jax could not load")


def test_every_executable_the_build_makes_passes_the_restricted_unpickler(sample: Any) -> None:
    """Single device, stochastic (key data), LAPACK: the allowlist admits them all.

    (Meshes, parameter sharding and train steps load through it in test_mesh.py,
    test_artifacts.py and test_training.py.)"""
    for target in (sample.mlp_b2, sample.dropout_b2):
        run = target.load()
        assert run.kind == "executable"
        params, state, x = mlp_args(target)
        rng = jax.random.key(1) if target.stochastic else None
        assert_trees_close(run(params, state, x, rng=rng),
                           target.apply(params, state, x, rng=rng))


# --- files the manifest names ---------------------------------------------------------


@pytest.mark.parametrize("name", ["../mlp_b2/manifest.json", "/etc/hostname", "sub/x.bin",
                                  "..", "", ".hidden.bin", "manifest.json", "a\0b.bin",
                                  "x" * 300])
def test_manifest_names_only_plain_files_in_its_folder(
    sample: Any, copy: Path, name: str
) -> None:
    manifest = manifest_of(copy, sample.mlp_b2)
    manifest["executables"]["cpu"]["file"] = name
    write_manifest(copy, sample.mlp_b2, manifest)
    refused(sample, copy, "malformed: executables.cpu.file .*plain file name")


def test_symlinked_executable_is_refused(sample: Any, copy: Path, tmp_path: Path) -> None:
    entry = manifest_of(copy, sample.mlp_b2)["executables"]["cpu"]
    path = folder(copy, sample.mlp_b2) / entry["file"]
    real = tmp_path / "elsewhere.bin"
    shutil.move(path, real)
    path.symlink_to(real)  # same bytes, same hash: still refused
    refused(sample, copy, "is a symbolic link; artifacts must be plain files")


def test_link_to_dev_zero_does_not_read_forever(sample: Any, copy: Path) -> None:
    manifest = manifest_of(copy, sample.mlp_b2)
    entry = manifest["executables"]["cpu"]
    path = folder(copy, sample.mlp_b2) / entry["file"]
    path.unlink()
    path.symlink_to("/dev/zero")
    entry["size"] = 1 << 30
    write_manifest(copy, sample.mlp_b2, manifest)
    refused(sample, copy, "symbolic link")
    manifest_path = folder(copy, sample.mlp_b2) / "manifest.json"
    manifest_path.unlink()
    manifest_path.symlink_to("/dev/zero")
    refused(sample, copy, "manifest.json is a symbolic link")


def test_fifo_does_not_hang_load(sample: Any, copy: Path) -> None:
    entry = manifest_of(copy, sample.mlp_b2)["executables"]["cpu"]
    path = folder(copy, sample.mlp_b2) / entry["file"]
    path.unlink()
    os.mkfifo(path)
    refused(sample, copy, "is a FIFO, not a regular file")
    manifest_path = folder(copy, sample.mlp_b2) / "manifest.json"
    manifest_path.unlink()
    os.mkfifo(manifest_path)
    refused(sample, copy, "manifest.json is a FIFO")


def test_folder_named_like_the_executable_is_refused(sample: Any, copy: Path) -> None:
    entry = manifest_of(copy, sample.mlp_b2)["executables"]["cpu"]
    path = folder(copy, sample.mlp_b2) / entry["file"]
    path.unlink()
    path.mkdir()
    refused(sample, copy, "is a directory, not a regular file")


def test_size_is_checked_before_reading(sample: Any, copy: Path) -> None:
    manifest = manifest_of(copy, sample.mlp_b2)
    manifest["executables"]["cpu"]["size"] = 7
    write_manifest(copy, sample.mlp_b2, manifest)
    refused(sample, copy, r"expected sha256 \w+ and 7 bytes, found \d+ bytes")
    huge = folder(copy, sample.mlp_b2) / "manifest.json"
    with open(huge, "wb") as file:  # sparse: 65 MiB of nothing, past the manifest limit
        file.truncate(65 << 20)
    refused(sample, copy, "more than the .* an artifact may have")


# --- malformed manifests ------------------------------------------------------------------


def _drop(key: str) -> Callable[[dict], None]:
    return lambda m: m.pop(key)


def _set(path: str, value: Any) -> Callable[[dict], None]:
    def edit(manifest: dict) -> None:
        *parents, last = path.split(".")
        node = manifest
        for part in parents:
            node = node[part]
        node[last] = value

    return edit


def _deep(manifest: dict) -> None:
    node: dict = {"shape": [2], "dtype": "float32"}
    for _ in range(200):
        node = {"tuple": [node]}
    manifest["outputs"] = node


MALFORMED = {
    "no target": (_drop("target"), "target must be a string, got missing"),
    "no executables": (_drop("executables"), "executables must be an object"),
    "executables: []": (_set("executables", []), "executables must be an object, got a list"),
    "inputs a string": (_set("inputs", "x"), "inputs must be an object"),
    "outputs a number": (_set("outputs", 3), "outputs must be an object"),
    "output with two kinds": (_set("outputs", {"tuple": [], "dict": {}}), "exactly one of"),
    "shape of strings in an arg": (_set("executables.cpu.arguments", [{"shape": [[1]],
                                                                         "dtype": "f"}]),
                                   r"arguments\[0\].shape\[0\] must be"),
    "size a string": (_set("executables.cpu.size", "12"), "size must be an integer"),
    "size a bool": (_set("executables.cpu.size", True), "size must be an integer"),
    "negative size": (_set("executables.cpu.size", -1), "size must be between"),
    "device_count 0": (_set("executables.cpu.device_count", 0), "device_count must be at least"),
    "no device kind": (lambda m: m["executables"]["cpu"].pop("device_kind"), "device_kind"),
    "no binding": (lambda m: m["executables"]["cpu"].pop("target"), "cpu.target"),
    "bad sha256": (_set("executables.cpu.sha256", "zz"), "64 lowercase hex"),
    "rng a number": (_set("rng", 5), "rng must be an object or null"),
    "export a list": (_set("export", []), "export must be an object or null"),
    "export platforms": (_set("export.platforms", "cpu"), "export.platforms must be a list"),
    "skipped a list": (_set("skipped", ["tpu"]), "skipped must be an object"),
    "dtype with code": (_set("inputs.x.dtype", "__import__('os')"), "not a dtype name"),
    "cpu features": (_set("executables.cpu.cpu", {"features": "avx"}), "features must be a list"),
    "a deep tree": (_deep, "nested deeper than"),
    "not an object": (lambda m: m.clear() or m.update(format_version=artifacts.FORMAT_VERSION,
                                                     target=[]),
                      "target must be a string"),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_manifest_is_an_artifact_error(sample: Any, copy: Path, case: str) -> None:
    edit, reason = MALFORMED[case]
    manifest = manifest_of(copy, sample.mlp_b2)
    edit(manifest)
    write_manifest(copy, sample.mlp_b2, manifest)
    message = refused(sample, copy, reason)
    assert "malformed" in message


@pytest.mark.parametrize("text", ["[" * 100_000 + "]" * 100_000, '{"a":' * 50_000 + "1" +
                                  "}" * 50_000, "\xff\xfe", "[1, 2]", "1" * 5000, "null"])
def test_unparseable_manifest_is_an_artifact_error(sample: Any, copy: Path, text: str) -> None:
    path = folder(copy, sample.mlp_b2) / "manifest.json"
    path.write_bytes(text.encode("latin-1"))
    refused(sample, copy, "cannot read manifest|format_version None")


# --- malformed exports ------------------------------------------------------------------------


@pytest.mark.parametrize("payload", [b"", b"\0" * 64, b"garbage" * 100, b"\x10\0\0\0" + b"\xff" * 60])
def test_malformed_export_is_an_artifact_error(sample: Any, copy: Path, payload: bytes) -> None:
    plant(copy, sample.mlp_b2, payload, export=True)
    with pytest.raises(sample._runtime.ArtifactError, match="not a jax.export artifact"):
        within(20, lambda: sample.mlp_b2.load(artifact_dir=copy))


def test_truncated_export_with_its_hash_is_an_artifact_error(sample: Any, copy: Path) -> None:
    entry = manifest_of(copy, sample.mlp_b2)["export"]
    data = (folder(copy, sample.mlp_b2) / entry["file"]).read_bytes()
    plant(copy, sample.mlp_b2, data[: len(data) // 2], export=True)
    with pytest.raises(sample._runtime.ArtifactError, match="not a jax.export artifact"):
        within(20, lambda: sample.mlp_b2.load(artifact_dir=copy))


# --- another target's artifacts --------------------------------------------------------------


def _swap(copy: Path, into: Any, other: Any, *, forge: bool) -> None:
    """Puts `other`'s executable into `into`'s folder, with its hash (and, if `forge`,
    with `into`'s binding fields, as a careful forger would)."""
    mine = manifest_of(copy, into)
    theirs = manifest_of(copy, other)["executables"]["cpu"]
    shutil.copy(folder(copy, other) / theirs["file"], folder(copy, into) / theirs["file"])
    entry = dict(theirs)
    if forge:
        entry.update(target=mine["executables"]["cpu"]["target"],
                     arguments=mine["executables"]["cpu"]["arguments"])
    mine["executables"]["cpu"] = entry
    write_manifest(copy, into, mine)


def test_another_targets_executable_is_refused(sample: Any, copy: Path) -> None:
    _swap(copy, sample.mlp_b2, sample.dropout_b2, forge=False)
    refused(sample, copy, "is not an executable of sample.mlp_b2: it was built for "
            "sample.dropout_b2")


def test_another_targets_executable_with_forged_binding_is_refused_after_loading(
    sample: Any, copy: Path
) -> None:
    _swap(copy, sample.mlp_b2, sample.dropout_b2, forge=True)
    refused(sample, copy, r"is not the artifact its manifest describes: its argument 4 is "
            r"float32\[2, 4\] and this target's is int32\[\]")


def test_binding_names_the_differing_argument(sample: Any, copy: Path) -> None:
    manifest = manifest_of(copy, sample.mlp_b2)
    manifest["executables"]["cpu"]["arguments"][-1]["shape"] = [3, 4]
    write_manifest(copy, sample.mlp_b2, manifest)
    refused(sample, copy, r"its argument 5 is float32\[3, 4\] and this target's is "
            r"float32\[2, 4\]")


def test_another_targets_export_is_refused(sample: Any, copy: Path) -> None:
    other = manifest_of(copy, sample.dropout_b2)["export"]
    data = (folder(copy, sample.dropout_b2) / other["file"]).read_bytes()
    plant(copy, sample.mlp_b2, data, export=True)
    with pytest.raises(sample._runtime.ArtifactError,
                       match=r"not the artifact its manifest describes: its argument 4 is "
                       r"float32\[2, 4\]"):
        sample.mlp_b2.load(artifact_dir=copy)


# --- signatures -----------------------------------------------------------------------------------


def test_signed_artifacts_load_with_the_key_in_every_form(sample: Any, tmp_path: Path) -> None:
    root = sample.signed_root
    assert (folder(root, sample.mlp_b2) / "manifest.sig").read_text().startswith("hmac-sha256:")
    key_file = tmp_path / "key"
    key_file.write_bytes(KEY + b"\n")
    mounted = tmp_path / "mounted-secret"  # secrets are often mounted as links
    mounted.symlink_to(key_file)
    params, state, x = mlp_args(sample.mlp_b2)
    for key in (KEY, KEY.decode(), KEY + b"\n", key_file, mounted):
        run = sample.mlp_b2.load(artifact_dir=root, verify_key=key)
        assert run.kind == "executable"
    assert_trees_close(run(params, state, x), sample.mlp_b2.apply(params, state, x))


def test_wrong_key_or_unsigned_is_refused(sample: Any, copy: Path) -> None:
    errors = sample._runtime.ArtifactSignatureError
    with pytest.raises(errors, match="does not match the manifest and the key given"):
        sample.mlp_b2.load(artifact_dir=sample.signed_root, verify_key=OTHER_KEY)
    with pytest.raises(errors, match="is not signed"):
        sample.mlp_b2.load(artifact_dir=copy, verify_key=KEY)
    with pytest.raises(sample._runtime.ArtifactError, match="at least 16"):
        sample.mlp_b2.load(artifact_dir=sample.signed_root, verify_key="short")


def test_signed_folder_edited_after_signing_is_refused(sample: Any, tmp_path: Path) -> None:
    root = tmp_path / "signed"
    shutil.copytree(sample.signed_root, root)
    target_folder = folder(root, sample.mlp_b2)
    manifest = json.loads((target_folder / "manifest.json").read_text())
    entry = manifest["executables"]["cpu"]
    marker = tmp_path / "marker"
    payload = pickle.dumps(Reduce(os.system, f"touch {marker}"))
    (target_folder / entry["file"]).write_bytes(payload)
    entry.update(sha256=hashlib.sha256(payload).hexdigest(), size=len(payload))
    (target_folder / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True))
    with pytest.raises(sample._runtime.ArtifactSignatureError, match="modified after signing"):
        sample.mlp_b2.load(artifact_dir=root, verify_key=KEY)
    # the signature is checked before the manifest is even parsed
    (target_folder / "manifest.json").write_text("[" * 100_000)
    with pytest.raises(sample._runtime.ArtifactSignatureError):
        sample.mlp_b2.load(artifact_dir=root, verify_key=KEY)
    assert not marker.exists()


def test_build_and_runtime_agree_on_signatures(sample: Any, copy: Path) -> None:
    target_folder = folder(copy, sample.mlp_b2)
    data = (target_folder / "manifest.json").read_bytes()
    (target_folder / "manifest.sig").write_text(artifacts.sign_manifest(data, KEY) + "\n")
    assert artifacts.signature_valid(target_folder, KEY)
    assert not artifacts.signature_valid(target_folder, OTHER_KEY)
    assert sample.mlp_b2.load(artifact_dir=copy, verify_key=KEY).kind == "executable"


def test_unsigned_rebuild_removes_an_old_signature(sample: Any, tmp_path: Path) -> None:
    root = tmp_path / "signed"
    shutil.copytree(sample.signed_root, root)
    compile_target(sample.mlp_b2, root)
    assert not (folder(root, sample.mlp_b2) / "manifest.sig").exists()


def test_symbolic_export_only_target_checks_its_export_signature(sample: Any) -> None:
    run = sample.mlp_batch.load()
    assert run.kind == "export"
    params, state, _ = mlp_args(sample.mlp_batch)
    out, _ = run(params, state, np.zeros((5, 4), np.float32))
    assert out.shape == (5, 3)
