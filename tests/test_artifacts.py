"""Artifacts: compile a hand-written generated module, load it back, refuse bad artifacts.

The fixture package `tests/fixtures/generated_sample/` stands in for an
emitted `generated/`; each test session copies it to a temporary folder,
renders `_runtime.py` from `templates/runtime.py.j2` into it, and builds its
artifacts once. Tests that damage artifacts work on copies (`load(artifact_dir=...)`).
"""

from __future__ import annotations

import ast
import importlib
import json
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import jax
import numpy as np
import pytest

from aotflax import artifacts
from aotflax.compile import compile_target, stale_reason

REPO = Path(__file__).resolve().parent.parent
FIXTURE = Path(__file__).resolve().parent / "fixtures" / "generated_sample"
PACKAGE = "generated_sample"


def render_package(root: Path) -> Path:
    """Copies the fixture package under `root` and renders its `_runtime.py`."""
    package = root / PACKAGE
    shutil.copytree(
        FIXTURE,
        package,
        ignore=shutil.ignore_patterns("__pycache__", "artifacts", "_runtime.py"),
    )
    (package / "_runtime.py").write_text(
        artifacts.render_runtime("0.test"), encoding="utf-8"
    )
    return package


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The imported sample module, with artifacts for all its targets."""
    root = tmp_path_factory.mktemp("pkg")
    package = render_package(root)
    sys.path.insert(0, str(root))
    try:
        for name in [
            m for m in sys.modules if m == PACKAGE or m.startswith(PACKAGE + ".")
        ]:
            del sys.modules[name]
        sample = importlib.import_module(f"{PACKAGE}.sample")
        for target in sample.TARGETS.values():
            compile_target(target, package / "artifacts")
        yield sample
    finally:
        sys.path.remove(str(root))


@pytest.fixture
def artifact_copy(built: Any, tmp_path: Path) -> Path:
    """A private copy of the artifacts root, to damage."""
    source = Path(built.__file__).parent / "artifacts"
    shutil.copytree(source, tmp_path / "artifacts")
    return tmp_path / "artifacts"


def folder_of(root: Path, target: Any) -> Path:
    return artifacts.target_folder(root, target.module, target.name)


def edit_manifest(root: Path, target: Any, edit: Any) -> None:
    path = folder_of(root, target) / "manifest.json"
    manifest = json.loads(path.read_text())
    edit(manifest)
    path.write_text(json.dumps(manifest))


def mlp_args(target: Any, batch: int = 2) -> tuple[Any, Any, np.ndarray]:
    params, state = target.init(jax.random.key(0))
    x = np.linspace(-1.0, 1.0, batch * 4, dtype=np.float32).reshape(batch, 4)
    return params, state, x


def assert_trees_close(a: Any, b: Any) -> None:
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-6, atol=1e-6)


# --- the runtime template ----------------------------------------------------------


def test_runtime_renders_and_imports_only_jax_numpy_stdlib() -> None:
    source = artifacts.render_runtime("1.2.3")
    tree = ast.parse(source)
    imported = {
        alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, (ast.Import, ast.ImportFrom))
        for alias in (
            node.names
            if isinstance(node, ast.Import)
            else [ast.alias(node.module or "")]
        )
    }
    assert imported - {"jax", "numpy"} <= set(sys.stdlib_module_names), imported
    assert f"MANIFEST_FORMAT_VERSION = {artifacts.FORMAT_VERSION}" in source
    assert '"1.2.3"' in source and "{{" not in source


def test_rendered_runtime_and_generated_modules_are_lint_clean(tmp_path: Path) -> None:
    """Generated files must be ruff-clean (DESIGN section 3), under the project's rules and
    under ruff's own defaults (`--isolated`: no configuration), which a user's repository
    that vendors generated/ most likely applies. The runtime is also `ruff format`-stable;
    model modules keep one line per DSL operation with its `# file:line  shape` comment,
    which the formatter would wrap, so they are checked for lint only."""
    ruff = shutil.which("ruff") or str(Path(sys.executable).parent / "ruff")
    if not Path(ruff).exists():
        pytest.skip("ruff is not installed")
    path = tmp_path / "_runtime.py"
    path.write_text(artifacts.render_runtime("1.2.3"), encoding="utf-8")
    modules = sorted(str(p) for p in (REPO / "generated").glob("*.py") if p.name != "_runtime.py")
    assert modules, "generated/ has no modules"
    for files, formatted in (([str(path)], True), (modules, False)):
        commands = [[ruff, "check", *files], [ruff, "check", "--isolated", *files]]
        for command in commands + [[ruff, "format", "--check", *files]] * formatted:
            result = subprocess.run(command, check=False, capture_output=True, text=True,
                                    cwd=REPO)
            assert result.returncode == 0, " ".join(command) + "\n" + result.stdout + result.stderr


# --- round trips ---------------------------------------------------------------------


def test_layout_and_manifest(built: Any) -> None:
    folder = folder_of(Path(built.__file__).parent / "artifacts", built.mlp_b2)
    manifest = artifacts.read_manifest(folder)
    cpu = manifest["executables"]["cpu"]
    assert cpu["file"].startswith("executable-cpu-") and manifest["export"][
        "file"
    ].startswith("export-")
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        ["manifest.json", cpu["file"], manifest["export"]["file"]]
    )
    for entry in (cpu, manifest["export"]):
        assert artifacts.sha256_file(folder / entry["file"]) == entry["sha256"]
    assert manifest["inputs"] == {"x": {"shape": [2, 4], "dtype": "float32"}}
    assert manifest["jax"] == jax.__version__ and cpu["device_kind"] == "cpu"
    assert manifest["param_count"] == 4 * 8 + 8 + 8 * 3 + 3


def test_executable_round_trip_equals_apply(built: Any) -> None:
    run = built.mlp_b2.load()
    assert run.kind == "executable"
    params, state, x = mlp_args(built.mlp_b2)
    out, new_state = run(params, state, x)
    assert_trees_close((out, new_state), built.mlp_b2.apply(params, state, x))
    assert int(new_state["counter"]["count"]) == 1


def test_stochastic_executable_takes_typed_and_raw_keys(built: Any) -> None:
    target = built.dropout_b2
    run = target.load()
    params, state, x = mlp_args(target)
    key = jax.random.key(7)
    expected = target.apply(params, state, x, rng=key)
    assert_trees_close(run(params, state, x, rng=key), expected)
    assert_trees_close(run(params, state, x, rng=jax.random.key_data(key)), expected)
    assert_trees_close(
        target.apply(params, state, x, rng=jax.random.key_data(key)), expected
    )


def test_export_fallback_equals_apply_and_warns(
    built: Any, artifact_copy: Path
) -> None:
    edit_manifest(artifact_copy, built.dropout_b2, lambda m: m["executables"].clear())
    with pytest.warns(
        RuntimeWarning,
        match="portable jax.export artifact.*no executable was built for cpu",
    ):
        run = built.dropout_b2.load(artifact_dir=artifact_copy)
    assert run.kind == "export"
    params, state, x = mlp_args(built.dropout_b2)
    key = jax.random.key(3)
    assert_trees_close(
        run(params, state, x, rng=key),
        built.dropout_b2.apply(params, state, x, rng=key),
    )


def test_symbolic_batch_export_runs_at_several_sizes(built: Any) -> None:
    target = built.mlp_batch
    # no buckets: the export is the artifact, and it compiles once per new shape
    with pytest.warns(RuntimeWarning, match="compiles once per new input shape"):
        run = target.load()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # said once per process
        target.load()
    assert run.kind == "export"
    for batch in (1, 3, 8):
        params, state, x = mlp_args(target, batch)
        out, _ = run(params, state, x)
        assert out.shape == (batch, 3)
        assert_trees_close(run(params, state, x), target.apply(params, state, x))
    manifest = run.manifest
    assert manifest["inputs"]["x"]["shape"] == ["batch", 4]
    assert manifest["outputs"]["tuple"][0]["shape"] == ["batch", 3]
    assert set(manifest["export"]["platforms"]) == {"cpu", "cuda", "tpu"}


# --- refusals ------------------------------------------------------------------------


def test_tampered_executable_is_never_deserialized(
    built: Any, artifact_copy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from jax.experimental import serialize_executable

    def must_not_run(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("a tampered executable reached the deserializer")

    monkeypatch.setattr(serialize_executable, "deserialize_and_load", must_not_run)
    folder = folder_of(artifact_copy, built.mlp_b2)
    path = folder / artifacts.read_manifest(folder)["executables"]["cpu"]["file"]
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(
        built._runtime.ArtifactIntegrityError, match="sha256.*not loaded"
    ):
        built.mlp_b2.load(artifact_dir=artifact_copy)


def test_truncated_file_is_refused(built: Any, artifact_copy: Path) -> None:
    folder = folder_of(artifact_copy, built.mlp_b2)
    path = folder / artifacts.read_manifest(folder)["executables"]["cpu"]["file"]
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(built._runtime.ArtifactIntegrityError, match="100 bytes"):
        built.mlp_b2.load(artifact_dir=artifact_copy)


def test_grown_file_is_refused_before_a_byte_of_it_is_read(
    built: Any, artifact_copy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The size is compared with the manifest's before reading: a file that grew by
    1 MiB (or by terabytes) costs no read of it."""
    import os

    folder = folder_of(artifact_copy, built.mlp_b2)
    path = folder / artifacts.read_manifest(folder)["executables"]["cpu"]["file"]
    size = path.stat().st_size
    with path.open("ab") as f:
        f.write(b"\0" * (1 << 20))
    read, real_read = [], os.read

    def counting_read(fd: int, n: int) -> bytes:
        data = real_read(fd, n)
        read.append(len(data))
        return data

    monkeypatch.setattr(os, "read", counting_read)
    with pytest.raises(built._runtime.ArtifactIntegrityError, match=f"found {size + (1 << 20)} bytes"):
        built.mlp_b2.load(artifact_dir=artifact_copy)
    monkeypatch.undo()
    assert sum(read) < size  # the manifest only


def test_export_corrupted_in_place_is_refused(
    built: Any, artifact_copy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One byte changed, same size: only the sha256 can tell, and it must."""

    def must_not_run(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("a corrupted export reached the deserializer")

    monkeypatch.setattr(jax.export, "deserialize", must_not_run)
    folder = folder_of(artifact_copy, built.mlp_batch)
    path = folder / artifacts.read_manifest(folder)["export"]["file"]
    data = bytearray(path.read_bytes())
    data[len(data) // 3] ^= 0x01
    path.write_bytes(bytes(data))
    assert path.stat().st_size == len(data)
    with pytest.raises(built._runtime.ArtifactIntegrityError, match="sha256.*not loaded"):
        built.mlp_batch.load(artifact_dir=artifact_copy)


def test_wrong_jax_version_falls_back_or_is_refused(
    built: Any, artifact_copy: Path
) -> None:
    edit_manifest(artifact_copy, built.mlp_b2, lambda m: m.update(jax="0.0.1"))
    with pytest.raises(
        built._runtime.ArtifactError,
        match=f"built with jax 0.0.1 and this host has jax {jax.__version__}",
    ):
        built.mlp_b2.load(artifact_dir=artifact_copy, fallback=False)
    with pytest.warns(RuntimeWarning, match="jax 0.0.1"):
        run = built.mlp_b2.load(artifact_dir=artifact_copy)
    assert run.kind == "export"
    params, state, x = mlp_args(built.mlp_b2)
    assert_trees_close(run(params, state, x), built.mlp_b2.apply(params, state, x))


def test_wrong_platform_is_refused(built: Any, artifact_copy: Path) -> None:
    with pytest.raises(
        built._runtime.ArtifactError, match="export covers cpu, not tpu"
    ):
        built.mlp_b2.load("tpu")
    edit_manifest(
        artifact_copy,
        built.mlp_b2,
        lambda m: m["executables"]["cpu"].update(device_kind="TPU v5 lite"),
    )
    with pytest.raises(
        built._runtime.ArtifactError,
        match="built for TPU v5 lite and this host has cpu",
    ):
        built.mlp_b2.load(artifact_dir=artifact_copy, fallback=False)
    edit_manifest(
        artifact_copy,
        built.mlp_b2,
        lambda m: m["executables"]["cpu"].update(device_kind="cpu"),
    )
    edit_manifest(
        artifact_copy,
        built.mlp_b2,
        lambda m: m["executables"]["cpu"]["cpu"].update(machine="riscv64"),
    )
    with pytest.raises(built._runtime.ArtifactError, match="built for a riscv64 CPU"):
        built.mlp_b2.load(artifact_dir=artifact_copy, fallback=False)


def test_missing_or_foreign_manifest_is_refused(
    built: Any, artifact_copy: Path
) -> None:
    with pytest.raises(
        built._runtime.ArtifactError, match="no manifest at .*build the artifacts"
    ):
        built.mlp_b2.load(artifact_dir=artifact_copy.parent / "nowhere")
    edit_manifest(artifact_copy, built.mlp_b2, lambda m: m.update(format_version=99))
    with pytest.raises(built._runtime.ArtifactError, match="format_version 99"):
        built.mlp_b2.load(artifact_dir=artifact_copy)
    edit_manifest(
        artifact_copy, built.inv_3, lambda m: m.update(source_sha256="f" * 64)
    )
    with pytest.raises(
        built._runtime.ArtifactError, match="another version of the model source"
    ):
        built.inv_3.load(artifact_dir=artifact_copy)
    (folder_of(artifact_copy, built.dropout_b2) / "manifest.json").write_text(
        "{not json"
    )
    with pytest.raises(built._runtime.ArtifactError, match="cannot read manifest"):
        built.dropout_b2.load(artifact_dir=artifact_copy)


# --- calling mistakes ----------------------------------------------------------------


def test_input_mismatch_gives_clear_error(built: Any) -> None:
    run = built.mlp_b2.load()
    params, state, x = mlp_args(built.mlp_b2)
    # float64 is what jit takes too (canonicalized to float32); int32 is not
    assert_trees_close(run(params, state, x.astype(np.float64)), run(params, state, x))
    with pytest.raises(
        TypeError, match=r"input 'x' expected float32\[2, 4\], got int32\[2, 4\]"
    ):
        run(params, state, x.astype(np.int32))
    with pytest.raises(
        ValueError, match=r"input 'x' expected float32\[2, 4\], got float32\[3, 4\]"
    ):
        run(params, state, np.zeros((3, 4), np.float32))
    with pytest.raises(TypeError, match=r"takes \(params, state, x\)"):
        run(params, state)
    with pytest.raises(TypeError, match=r"missing params\['Dense_1'\]"):
        run({"Dense_0": params["Dense_0"]}, state, x)
    bad = jax.tree.map(lambda a: a[:1], params)
    with pytest.raises(
        TypeError, match=r"params\['Dense_0'\]\['bias'\] expected float32\[8\]"
    ):
        run(bad, state, x)


def test_stochastic_target_without_rng_gives_clear_error(built: Any) -> None:
    run = built.dropout_b2.load()
    params, state, x = mlp_args(built.dropout_b2)
    for call in (run, built.dropout_b2.apply):
        with pytest.raises(
            TypeError, match="dropout_b2 is stochastic.*rng=jax.random.key"
        ):
            call(params, state, x)
    with pytest.raises(TypeError, match=r"raw uint32\[2\] key, got float32\[2\]"):
        run(params, state, x, rng=np.zeros(2, np.float32))


# --- fresh processes -----------------------------------------------------------------

FRESH_LOAD = """
import sys
import jax, numpy as np
from generated_sample import sample
for target, args in (
    (sample.mlp_b2, (np.ones((2, 4), np.float32),)),
    (sample.inv_3, (np.eye(3, dtype=np.float32),)),  # calls LAPACK (jax#28908)
):
    params, state = target.init(jax.random.key(0))
    run = target.load()
    assert run.kind == "executable", run
    got, want = run(params, state, *args)[0], target.apply(params, state, *args)[0]
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-6, atol=1e-6)
leaked = [m for m in sys.modules if m.split(".")[0] in ("flax", "aotflax", "optax")]
assert not leaked, leaked
print("fresh-ok")
"""


def run_python(code: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "PYTHONPATH": str(cwd), **env}
    return subprocess.run(
        [sys.executable, "-c", code],
        check=False,
        cwd=cwd,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_load_in_fresh_process(built: Any) -> None:
    result = run_python(FRESH_LOAD, Path(built.__file__).parent.parent)
    assert result.returncode == 0 and "fresh-ok" in result.stdout, result.stderr[-3000:]


DATA_PARALLEL = """
from pathlib import Path
import jax, numpy as np
from generated_sample import sample, _runtime
from aotflax.compile import compile_target
t = sample.mlp_b2
dp = _runtime.Target(name="mlp_dp", module="sample", source_sha256=t.source_sha256, init=t.init_fn,
                     apply=t.apply_fn, inputs=t.inputs, param_shapes=t.param_shapes,
                     state_shapes=t.state_shapes, devices=2)
manifest = compile_target(dp, Path("dp_artifacts"))
assert manifest["executables"]["cpu"]["device_count"] == 2
run = dp.load(artifact_dir="dp_artifacts")
params, state = dp.init(jax.random.key(0))
x = np.arange(8, dtype=np.float32).reshape(2, 4)
out = run(params, state, x)[0]
assert len(out.sharding.device_set) == 2
np.testing.assert_allclose(np.asarray(out), np.asarray(dp.apply(params, state, x)[0]), rtol=1e-5, atol=1e-5)
print("dp-ok")
"""


def test_data_parallel_executable_on_two_cpu_devices(
    built: Any, tmp_path: Path
) -> None:
    package_root = Path(built.__file__).parent.parent
    code = (
        f"import sys; sys.path.insert(0, {str(REPO)!r}); import os; os.chdir({str(tmp_path)!r})\n"
        + DATA_PARALLEL
    )
    result = run_python(
        code, package_root, XLA_FLAGS="--xla_force_host_platform_device_count=2"
    )
    assert result.returncode == 0 and "dp-ok" in result.stdout, result.stderr[-3000:]


# --- incremental builds --------------------------------------------------------------


def test_stale_reason(built: Any) -> None:
    root = Path(built.__file__).parent / "artifacts"
    assert stale_reason(built.mlp_b2, root) is None
    assert "xla_portable" in stale_reason(built.mlp_b2, root, xla_portable=False)
    assert "platforms" in stale_reason(built.mlp_b2, root, platforms=("cpu", "tpu"))
    assert "no manifest" in stale_reason(built.mlp_b2, root / "elsewhere")


def test_rebuild_replaces_files_atomically(built: Any, artifact_copy: Path) -> None:
    folder = folder_of(artifact_copy, built.inv_3)
    (folder / "executable-cpu-0123456789abcdef.bin").write_bytes(b"old build")
    manifest = compile_target(built.inv_3, artifact_copy, xla_portable=False)
    names = sorted(p.name for p in folder.iterdir())
    assert names == sorted(
        [
            "manifest.json",
            manifest["executables"]["cpu"]["file"],
            manifest["export"]["file"],
        ]
    )
    assert manifest["executables"]["cpu"]["cpu"]["max_isa"] is None
    assert built.inv_3.load(artifact_dir=artifact_copy).kind == "executable"
