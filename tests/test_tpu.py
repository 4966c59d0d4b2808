"""Executables for TPU hosts built on this CPU machine: single hosts, pod slices, the host side.

One model file of tiny MLPs is built once per session with the real command
line (in a subprocess: it loads libtpu, which this process should not do
before the tests that need it), for a single TPU v5e host, a 4-host v5e slice,
a v4 slice with a two-axis mesh, and a target that lists tpu without naming a
topology. libtpu comes from aotflax's toolchain cache (`aotflax
install-toolchain tpu`), installed on first use; a test skips only when pip
cannot get it.

What needs a TPU is tested up to the last step that runs without one: the
host-side selection runs against libtpu's compile-only devices standing in for
the host's; the chosen executable's payload is read back bound to those
devices, and `load("tpu")` hands its XLA program to libtpu's client, which,
being compile-only, refuses to load it onto chips it does not have.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path
from typing import Any

import jax
import numpy as np
import pytest
from diag_check import run_cli

from aotflax import artifacts, toolchains
from aotflax.verify import load_package

REPO = Path(__file__).resolve().parent.parent

MODEL = """
from aotflax import nn, aot


class MLP(nn.Module):
    def apply(self, x, hidden: int = 16):
        x = nn.relu(nn.Dense(x, hidden))
        return nn.Dense(x, 3)


aot.target("mlp_v5e", MLP, x=aot.f32[8, 4], tpu="v5e:2x2")
aot.target("mlp_pod", MLP, x=aot.f32[32, 4], devices=16, tpu="v5e:4x4")
aot.target("mlp_v4", MLP, x=aot.f32[16, 4], devices=aot.mesh(data=8, model=2), tpu="v4:2x2x2",
           param_sharding=[("Dense_0/kernel", (None, "model"))])
aot.target("mlp_any", MLP, x=aot.f32[8, 4], platforms=("cpu", "tpu"))
"""


def build(models: Path, out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    """`python aot_build.py MODELS -o OUT EXTRA...` in a fresh process."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "JAX_PLATFORMS": "cpu"}
    return subprocess.run(
        [sys.executable, str(REPO / "aot_build.py"), str(models), "-o", str(out), *extra],
        capture_output=True, text=True, timeout=600, cwd=models.parent, env=env, check=False)


@pytest.fixture(scope="module")
def libtpu() -> Path:
    try:
        return toolchains.install("tpu", quiet=True)
    except toolchains.ToolchainMissing as error:
        pytest.skip(f"libtpu for jax {jax.__version__} could not be installed with pip: {error}")


@pytest.fixture(scope="module")
def tpu_build(libtpu: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The model built twice: as declared, then with `--tpu-topology v6e:2x2` elsewhere."""
    root = tmp_path_factory.mktemp("tpu")
    (root / "models").mkdir()
    (root / "models" / "tiny.py").write_text(MODEL)
    first = build(root / "models", root / "gen")
    assert first.returncode == 0, first.stdout + first.stderr
    # in two compile processes, each loading libtpu (its one-process lock does not apply)
    second = build(root / "models", root / "gen_v6e", "--tpu-topology", "v6e:2x2", "--jobs", "2")
    assert second.returncode == 0, second.stdout + second.stderr
    load_package(root / "gen", "_tpu_test_gen")
    import _tpu_test_gen.tiny as tiny  # noqa: E402  (the generated module)

    return {"root": root, "first": first, "second": second, "module": tiny,
            "runtime": sys.modules["_tpu_test_gen._runtime"]}


def manifest_of(out: Path, target: str) -> dict[str, Any]:
    return json.loads((out / "artifacts" / "tiny" / target / "manifest.json").read_text())


def check_files(folder: Path, manifest: dict[str, Any]) -> None:
    for entry in [*manifest["executables"].values(), manifest["export"]]:
        data = (folder / entry["file"]).read_bytes()
        assert artifacts.sha256_bytes(data) == entry["sha256"] and len(data) == entry["size"]


# --- the build ------------------------------------------------------------------------


def test_v5e_single_host_target(tpu_build: dict[str, Any]) -> None:
    out = tpu_build["root"] / "gen"
    manifest = manifest_of(out, "mlp_v5e")
    assert sorted(manifest["executables"]) == ["cpu", "tpu:v5e:2x2"]
    tpu = manifest["executables"]["tpu:v5e:2x2"]
    assert tpu["platform"] == "tpu" and tpu["device_kind"] == "TPU v5 lite"
    assert tpu["topology"] == "v5e:2x2" and tpu["device_count"] == 1
    assert tpu["slice"] == {"name": "v5e:2x2", "bounds": [2, 2, 1], "chips": 4, "devices": 4,
                            "hosts": 1, "chips_per_host": [2, 2, 1]}
    assert tpu["hosts"] == {"0": [0]} and tpu["toolchain"].startswith("libtpu ")
    assert tpu["file"].startswith("executable-tpu-v5e-2x2-")
    assert manifest["skipped"] == {} and manifest["export"]["platforms"] == ["cpu", "tpu"]
    check_files(out / "artifacts" / "tiny" / "mlp_v5e", manifest)


def test_pod_slice_is_one_program_with_host_ownership(tpu_build: dict[str, Any]) -> None:
    manifest = manifest_of(tpu_build["root"] / "gen", "mlp_pod")
    tpu = manifest["executables"]["tpu:v5e:4x4"]
    assert tpu["device_count"] == 16
    assert tpu["slice"]["hosts"] == 4 and tpu["slice"]["bounds"] == [4, 4, 1]
    # every host owns 4 chips, a 2x2 block of the 4x4 torus, and the devices are the slice's
    assert sorted(tpu["hosts"]) == ["0", "1", "2", "3"]
    assert sorted(i for ids in tpu["hosts"].values() for i in ids) == list(range(16))
    by_id = {d["id"]: d for d in tpu["devices"]}
    for host, ids in tpu["hosts"].items():
        coords = {tuple(by_id[i]["coords"][:2]) for i in ids}
        assert {by_id[i]["process_index"] for i in ids} == {int(host)}
        xs, ys = {c[0] for c in coords}, {c[1] for c in coords}
        assert len(coords) == 4 and len(xs) == len(ys) == 2, (host, coords)
    # 16 devices do not fit this host's one CPU: that platform gets the export, said why
    assert "cpu" not in manifest["executables"]
    assert "16 cpu devices" in manifest["skipped"]["cpu"]


def test_v4_slice_with_a_mesh(tpu_build: dict[str, Any]) -> None:
    tpu = manifest_of(tpu_build["root"] / "gen", "mlp_v4")["executables"]["tpu:v4:2x2x2"]
    assert tpu["device_kind"] == "TPU v4" and tpu["device_count"] == 16
    assert tpu["slice"]["hosts"] == 2 and tpu["slice"]["chips"] == 8
    assert {len(ids) for ids in tpu["hosts"].values()} == {8}
    # two TensorCores per v4 chip: the mesh's device order pairs them (jax's mesh_utils layout)
    assert {d["core_on_chip"] for d in tpu["devices"]} == {0, 1}


def test_build_says_what_is_native_and_what_is_export(tpu_build: dict[str, Any]) -> None:
    text = tpu_build["first"].stdout + tpu_build["first"].stderr
    assert "tiny.mlp_any: tpu: export only (no topology named)" in text
    rows = {line.split()[0]: line for line in tpu_build["first"].stdout.splitlines()
            if line.startswith("mlp_")}
    assert "cpu, tpu v5e:2x2" in rows["mlp_v5e"]
    assert "tpu v5e:4x4 (4 hosts)" in rows["mlp_pod"] and "cpu: export only" in rows["mlp_pod"]
    assert "tpu: export only (no topology named)" in rows["mlp_any"]
    header = next(line for line in tpu_build["first"].stdout.splitlines()
                  if line.startswith("target"))
    assert "native executables" in header and "export only" in header


def test_command_line_topology_for_targets_that_name_none(tpu_build: dict[str, Any]) -> None:
    out = tpu_build["root"] / "gen_v6e"
    assert sorted(manifest_of(out, "mlp_any")["executables"]) == ["cpu", "tpu:v6e:2x2"]
    assert manifest_of(out, "mlp_any")["executables"]["tpu:v6e:2x2"]["device_kind"] == \
        "TPU v6 lite"
    # a target's own tpu= wins over the command line's
    assert sorted(manifest_of(out, "mlp_v5e")["executables"]) == ["cpu", "tpu:v5e:2x2"]
    assert "export only" not in tpu_build["second"].stdout.split("mlp_any", 1)[1].split("\n")[0]


# --- errors -----------------------------------------------------------------------------


def write_model(folder: Path, body: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "net.py"
    path.write_text("from aotflax import nn, aot\n\n\nclass Net(nn.Module):\n"
                    "    def apply(self, x):\n        return nn.Dense(x, 3)\n\n\n"
                    + textwrap.dedent(body))
    return path


def test_missing_libtpu_is_a_located_error_that_says_how_to_install(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AOTFLAX_TOOLCHAINS", str(tmp_path / "empty-cache"))
    monkeypatch.delenv("TPU_LIBRARY_PATH", raising=False)
    if toolchains.missing("tpu") is None:
        pytest.skip("libtpu is installed in this environment itself")
    path = write_model(tmp_path / "m", 'aot.target("net_tpu", Net, x=aot.f32[2, 4], '
                       'tpu="v5e:2x2")\n')
    rc, output = run_cli([str(path), "-o", str(tmp_path / "out")])
    assert rc == 1, output
    assert f"{path.name}:9:1: error[AOT450]" in output, output
    assert "aotflax install-toolchain tpu" in output and "libtpu==" in output
    assert "nothing was written" in output and not (tmp_path / "out").exists()
    assert "Traceback" not in output


@pytest.mark.parametrize("tpu, message", [
    ('"v9:2x2"', "unknown TPU generation 'v9'"),
    ('"v5litepod-4"', "is not a TPU topology name"),
    ('"v5e:3x3"', "does not divide into TPU v5e hosts"),
    ('"v5e:2x2x2"', "2-D torus"),
])
def test_unknown_topology_in_a_model_file(tmp_path: Path, tpu: str, message: str) -> None:
    path = write_model(tmp_path / "m", f'aot.target("net_tpu", Net, x=aot.f32[2, 4], tpu={tpu})\n')
    rc, output = run_cli([str(path), "-o", str(tmp_path / "out"), "--no-compile"])
    assert rc == 1 and "error[AOT440]" in output and message in output, output
    assert "^" in output and not (tmp_path / "out").exists()


def test_unknown_topology_on_the_command_line(tmp_path: Path) -> None:
    path = write_model(tmp_path / "m", 'aot.target("net", Net, x=aot.f32[2, 4], '
                       'platforms=("cpu", "tpu"))\n')
    rc, output = run_cli([str(path), "-o", str(tmp_path / "out"), "--tpu-topology", "v7:2x2"])
    assert rc == 1 and "error[AOT440]: --tpu-topology: unknown TPU generation 'v7'" in output
    assert not (tmp_path / "out").exists()


def test_target_larger_than_its_topology(tmp_path: Path) -> None:
    path = write_model(tmp_path / "m", 'aot.target("net", Net, x=aot.f32[8, 4], devices=8, '
                       'tpu="v5e:2x2")\n')
    rc, output = run_cli([str(path), "-o", str(tmp_path / "out"), "--no-compile"])
    assert rc == 1 and "runs on 8 devices and TPU topology v5e:2x2 (4 chips on 1 host)" in output


def test_hardware_for_a_platform_the_target_leaves_out(tmp_path: Path) -> None:
    path = write_model(tmp_path / "m", 'aot.target("net", Net, x=aot.f32[8, 4], '
                       'platforms=("cpu",), tpu="v5e:2x2")\n')
    rc, output = run_cli([str(path), "-o", str(tmp_path / "out"), "--no-compile"])
    assert rc == 1 and "error[AOT442]" in output and 'does not list "tpu"' in output


# --- the host side ----------------------------------------------------------------------


def test_cpu_host_refuses_tpu_executable_and_falls_back_to_export(
        tpu_build: dict[str, Any]) -> None:
    tiny, runtime = tpu_build["module"], tpu_build["runtime"]
    artifacts_dir = tpu_build["root"] / "gen" / "artifacts"
    with pytest.warns(RuntimeWarning) as caught:
        run = tiny.mlp_pod.load(artifact_dir=artifacts_dir)
    message = str(caught[0].message)
    assert run.kind == "export" and run.platform == "cpu"
    assert "native executables are for tpu (TPU v5 lite, topology v5e:4x4" in message
    assert "which a cpu host cannot run" in message
    params, state = tiny.mlp_pod.init(jax.random.key(0))
    x = np.linspace(-1, 1, 32 * 4, dtype=np.float32).reshape(32, 4)
    np.testing.assert_allclose(np.asarray(run(params, state, x)[0]),
                               np.asarray(tiny.mlp_pod.apply(params, state, x)[0]),
                               rtol=1e-6, atol=1e-6)
    # asked for the TPU itself, a CPU host says it has none and that nothing can run
    with pytest.raises(runtime.ArtifactError, match="this host has no TPU") as error:
        tiny.mlp_v5e.load("tpu", artifact_dir=artifacts_dir)
    assert "its jax platform is cpu" in str(error.value)
    # and the CPU executable next to the TPU one is the one a CPU host loads
    assert tiny.mlp_v5e.load(artifact_dir=artifacts_dir).kind == "executable"


@pytest.fixture(scope="module")
def v5e_4x4(libtpu: Path) -> list[Any]:
    """libtpu's compile-only devices of a v5e 4x4 slice, standing in for a TPU host's."""
    return toolchains.load_libtpu("v5e:4x4")


def as_host(runtime: Any, monkeypatch: pytest.MonkeyPatch, devices: list[Any],
            process: int) -> None:
    """Makes `runtime` see `devices` as its TPU slice, from host `process` of it."""
    hosts = len({d.process_index for d in devices})
    own = [d for d in devices if d.process_index == process]
    monkeypatch.setattr(runtime, "_tpu_host", lambda: (list(devices), own, process, hosts))


def test_tpu_host_loads_its_slice_up_to_the_live_client(
        tpu_build: dict[str, Any], v5e_4x4: list[Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """On (a stand-in of) host 2 of a v5e 4x4 slice, `load("tpu")` picks the slice's
    executable, checks it, and deserializes it onto the slice's devices in the manifest's
    order; only handing it to a live TPU client is left, which a compile-only one refuses."""
    tiny, runtime = tpu_build["module"], tpu_build["runtime"]
    as_host(runtime, monkeypatch, v5e_4x4, process=2)
    manifest = manifest_of(tpu_build["root"] / "gen", "mlp_pod")
    entry, reason = runtime._select_executable(tiny.mlp_pod, manifest, "tpu")
    assert reason is None and entry["topology"] == "v5e:4x4"
    devices = runtime._execution_devices(entry, "tpu")
    assert [d.id for d in devices] == [d["id"] for d in entry["devices"]]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no fallback: the native path all the way
        with pytest.raises(runtime.ArtifactError,
                           match="PjRtCompiler must be constructed with a Client"):
            tiny.mlp_pod.load("tpu", artifact_dir=tpu_build["root"] / "gen" / "artifacts")


class PayloadDevices(pickle.Unpickler):
    """Reads a serialized executable's payload (jax's pickle of its unloaded executable)
    with its devices bound to `devices` and the XLA executable kept as bytes."""

    def __init__(self, payload: bytes, devices: list[Any]) -> None:
        super().__init__(io.BytesIO(payload))
        self.by_id = {d.id: d for d in devices}
        self.ids: set[int] = set()
        self.executable = b""

    def persistent_load(self, pid: Any) -> Any:
        if pid[0] == "exec":
            self.executable = pid[1]
            return None
        if pid[0] == "device":
            self.ids.add(pid[1])
            return self.by_id[pid[1]]
        return None


def test_executable_names_exactly_its_slice_devices(
        tpu_build: dict[str, Any], v5e_4x4: list[Any], libtpu: Path) -> None:
    """Bound to the v5e 4x4 slice's devices, the payload rebuilds jax's executable over
    exactly the 16 devices the manifest records; a 2x2 slice's 4 cannot hold it."""
    tiny, runtime = tpu_build["module"], tpu_build["runtime"]
    folder = tpu_build["root"] / "gen" / "artifacts" / "tiny" / "mlp_pod"
    entry = manifest_of(tpu_build["root"] / "gen", "mlp_pod")["executables"]["tpu:v5e:4x4"]
    payload = runtime.read_artifact(folder, entry, label=tiny.mlp_pod.name)
    reader = PayloadDevices(payload, v5e_4x4)
    executable = reader.load()[0]
    assert reader.ids == {d["id"] for d in entry["devices"]}
    assert [d.id for d in executable.device_list] == [d["id"] for d in entry["devices"]]
    assert len(reader.executable) > 1000  # the TPU program the client is handed
    with pytest.raises(KeyError):
        PayloadDevices(payload, toolchains.load_libtpu("v5e:2x2")).load()


@pytest.mark.parametrize("topology, process, expected", [
    ("v6e:2x2", 0, "built for TPU v5 lite, topology v5e:4x4 (16 chips on 4 hosts) and this "
                   "host has TPU v6 lite, a 2x2x1 slice (4 devices on 1 host)"),
    ("v5e:2x2", 0, "and this host is part of TPU v5 lite, a 2x2x1 slice (4 devices on 1 host)"),
    ("v5e:8x8", 0, "this host is part of TPU v5 lite, a 8x8x1 slice (64 devices on 16 hosts)"),
])
def test_tpu_host_of_another_generation_or_slice_falls_back(
        tpu_build: dict[str, Any], monkeypatch: pytest.MonkeyPatch, libtpu: Path,
        topology: str, process: int, expected: str) -> None:
    tiny, runtime = tpu_build["module"], tpu_build["runtime"]
    as_host(runtime, monkeypatch, toolchains.load_libtpu(topology), process)
    with pytest.warns(RuntimeWarning, match="portable jax.export artifact for tpu") as caught:
        run = tiny.mlp_pod.load("tpu", artifact_dir=tpu_build["root"] / "gen" / "artifacts")
    assert run.kind == "export" and expected in str(caught[0].message)
    with pytest.raises(runtime.ArtifactError, match="cannot use the native executable for tpu"):
        tiny.mlp_pod.load("tpu", artifact_dir=tpu_build["root"] / "gen" / "artifacts",
                          fallback=False)


def test_single_device_executable_on_a_host_that_does_not_own_its_device(
        tpu_build: dict[str, Any], v5e_4x4: list[Any], monkeypatch: pytest.MonkeyPatch) -> None:
    tiny, runtime = tpu_build["module"], tpu_build["runtime"]
    manifest = manifest_of(tpu_build["root"] / "gen", "mlp_v5e")
    as_host(runtime, monkeypatch, toolchains.load_libtpu("v5e:2x2"), 0)
    assert runtime._select_executable(tiny.mlp_v5e, manifest, "tpu")[1] is None
    as_host(runtime, monkeypatch, v5e_4x4, 3)
    _, reason = runtime._select_executable(tiny.mlp_v5e, manifest, "tpu")
    assert "runs on TPU device 0, which this host (process 3) does not own" in reason


# --- CUDA the same way --------------------------------------------------------------------


def test_missing_cuda_plugin_is_a_located_error(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AOTFLAX_TOOLCHAINS", str(tmp_path / "empty-cache"))
    if toolchains.missing("cuda") is None:
        pytest.skip("jax's CUDA plugin is installed in this environment itself")
    path = write_model(tmp_path / "m", 'aot.target("net_gpu", Net, x=aot.f32[2, 4], '
                       'gpu="h100")\n')
    rc, output = run_cli([str(path), "-o", str(tmp_path / "out")])
    assert rc == 1 and f"{path.name}:9:1: error[AOT450]" in output, output
    assert "aotflax install-toolchain cuda" in output and "jax-cuda12-plugin" in output
    assert not (tmp_path / "out").exists()


def test_unknown_gpu_target(tmp_path: Path) -> None:
    path = write_model(tmp_path / "m", 'aot.target("net", Net, x=aot.f32[2, 4], gpu="a100")\n')
    rc, output = run_cli([str(path), "-o", str(tmp_path / "out"), "--no-compile"])
    assert rc == 1 and "error[AOT441]: unknown GPU target 'a100'" in output
    path.write_text(path.read_text().replace('gpu="a100"', 'platforms=("cpu", "cuda")'))
    rc, output = run_cli([str(path), "-o", str(tmp_path / "out"), "--gpu-target", "b300"])
    assert rc == 1 and "error[AOT441]: --gpu-target: no GPU target 'b300'" in output


def test_h100_executable_cross_compiles_without_a_gpu(tmp_path: Path) -> None:
    """Runs where `aotflax install-toolchain cuda` was run (a 500 MB download CI skips):
    the CUDA executable compiles here; running it needs an H100, which no test has."""
    if toolchains.missing("cuda") is not None:
        pytest.skip("jax's CUDA plugin is not installed (aotflax install-toolchain cuda)")
    write_model(tmp_path / "models", 'aot.target("net_gpu", Net, x=aot.f32[2, 4], '
                'gpu="h100")\n')
    result = build(tmp_path / "models", tmp_path / "gen")
    assert result.returncode == 0, result.stdout + result.stderr
    manifest = json.loads((tmp_path / "gen" / "artifacts" / "net" / "net_gpu" /
                           "manifest.json").read_text())
    gpu = manifest["executables"]["cuda:h100"]
    assert gpu["platform"] == "cuda" and gpu["device_kind"] == "NVIDIA H100 80GB HBM3"
    assert gpu["gpu_target"] == "h100" and gpu["toolchain"].startswith("jax-cuda12-plugin")
    assert sorted(manifest["export"]["platforms"]) == ["cpu", "cuda"]
    assert "cpu, cuda h100" in result.stdout


@pytest.mark.parametrize("field, value, reason", [
    ("devices", [{"id": "0; rm -rf /"}], r"tpu:v5e:4x4\.devices\[0\]\.id must be an integer"),
    ("devices", [{"id": 0, "coords": [0, 0]}],
     r"tpu:v5e:4x4\.devices\[0\]\.coords must have 3 items"),
    ("slice", {"bounds": [4, "4", 1]},
     r"tpu:v5e:4x4\.slice\.bounds\[1\] must be an integer, got a str"),
    ("hosts", {"0": "0"}, r"tpu:v5e:4x4\.hosts\.0 must be a list"),
])
def test_malformed_tpu_fields_are_refused_before_loading(
        tpu_build: dict[str, Any], tmp_path: Path, field: str, value: Any, reason: str) -> None:
    """The slice and device fields steer which devices an executable loads onto: a
    manifest whose fields are not what aotflax writes is refused as it is read."""
    runtime = tpu_build["runtime"]
    manifest = manifest_of(tpu_build["root"] / "gen", "mlp_pod")
    manifest["executables"]["tpu:v5e:4x4"][field] = value
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(runtime.ArtifactError, match="is malformed: executables." + reason):
        runtime.read_manifest(tmp_path)


def test_an_install_another_process_finished_first_is_used(tmp_path, monkeypatch) -> None:
    """Two test workers installing libtpu at once: the one that renames second finds the
    folder there and uses it, instead of skipping every TPU test as 'not installable'."""
    monkeypatch.setattr(toolchains, "folder", lambda platform: tmp_path / "tpu")
    monkeypatch.setattr(toolchains, "requirements", lambda platform: ["libtpu==0"])
    parts = toolchains.TOOLCHAINS["tpu"].module.split(".")

    def pip(command, **kwargs):  # the other worker's install lands while ours runs
        done = tmp_path / "tpu"
        done.joinpath(*parts).mkdir(parents=True)
        done.joinpath(*parts, "__init__.py").write_text("")
        Path(command[command.index("--target") + 1], "partial").write_text("")

    monkeypatch.setattr(toolchains.subprocess, "run", pip)
    assert toolchains.install("tpu", quiet=True) == tmp_path / "tpu"
    assert not any(p.name.startswith(".tpu.") for p in tmp_path.iterdir())
