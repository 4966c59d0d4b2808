"""Targets over several processes: two local jax.distributed processes on 127.0.0.1.

The zoo's CNN is built with `processes=2` (4 forced CPU devices per process, gloo
collectives); each process loads the artifacts, feeds its half of the batch and
gets its half of the outputs back. Every number is compared with one process
running the generated source on the whole batch. Every process is bounded in
time and stopped by `aotflax.cluster.run` when another fails.
"""

import fcntl
import functools
import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import jax
import numpy as np
import pytest

from aotflax import cluster

ROOT = Path(__file__).resolve().parent.parent
NAMES = ("cnn_dp", "cnn_sharded", "cnn_sharded_export")

TARGETS = """

import optax


def cross_entropy(logp, labels):
    return -jnp.mean(jnp.sum(nn.one_hot(labels, 10) * logp, axis=-1))


SMALL = CNN.partial(widths=(8, 16), hidden=32)
SHARDING = [("Dense_0/kernel", (None, "model")), ("TiedMLP_0/tied/kernel", (None, "model")),
            ("block1/conv/kernel", (None, None, None, "model"))]
aot.train_target("cnn_dp", SMALL, loss=cross_entropy, optimizer=optax.sgd(0.1, momentum=0.9),
                 x=aot.f32[8, 16, 16, 1], labels=aot.i32[8], devices=aot.mesh(data=8),
                 processes=2)
aot.target("cnn_sharded", SMALL, x=aot.f32[8, 16, 16, 1], devices=aot.mesh(data=2, model=4),
           processes=2, param_sharding=SHARDING)
# built with --platform tpu: no native cpu executable, so each process compiles the export
aot.target("cnn_sharded_export", SMALL, x=aot.f32[8, 16, 16, 1],
           devices=aot.mesh(data=2, model=4), processes=2, param_sharding=SHARDING,
           platforms=("cpu", "tpu"))
"""

# Runs in each of the two processes: argv = package, module, results folder.
CHECK = """
import importlib, json, sys, warnings
from pathlib import Path
import numpy as np
from aotflax import cluster

rank, count = cluster.initialize(timeout=60)
import jax
from aotflax.verify import load_package

out, module, results = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
load_package(out, "_mp_pkg")
m = importlib.import_module("_mp_pkg." + module)
x = np.random.RandomState(0).randn(8, 16, 16, 1).astype(np.float32)
labels = np.arange(8, dtype=np.int32) % 10
rows = slice(rank * 4, (rank + 1) * 4)  # this process's half of the global batch

params, state = m.cnn_dp.init(jax.random.key(0))
opt_state = m.cnn_dp.init_opt(params)
step = m.cnn_dp.load_train_step()
losses = []
for _ in range(2):
    params, state, opt_state, metrics = step(params, state, opt_state, x[rows], labels[rows])
    losses.append(float(metrics["loss"]))
forward = m.cnn_sharded.load()
y, _ = forward(params, {}, x[rows])
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    exported = m.cnn_sharded_export.load()
y_export, _ = exported(params, {}, x[rows])
flat = {jax.tree_util.keystr(k): np.asarray(v) for k, v in
        jax.tree_util.tree_flatten_with_path((params, opt_state))[0]}
np.savez(results / f"rank{rank}.npz", y=np.asarray(y), y_export=np.asarray(y_export), **flat)
print(json.dumps({"step": step.kind, "forward": forward.kind, "export": exported.kind,
                  "warned": [str(w.message) for w in caught], "losses": losses,
                  "local_inputs": {k: list(v.shape) for k, v in forward.target.INPUTS.items()}}))
jax.distributed.shutdown()
"""


def _build(model: Path, out: Path, *extra: str) -> None:
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(ROOT)}
    env.pop("XLA_FLAGS", None)  # one CPU device: the build forces the workers' own
    build = subprocess.run(
        [sys.executable, str(ROOT / "aot_build.py"), str(model), "-o", str(out), *extra],
        capture_output=True, text=True, env=env, timeout=600)
    assert build.returncode == 0, build.stdout + build.stderr


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory, worker_id):
    """Builds the CNN targets, runs the two-process check; (module, results, manifests).

    Under xdist the workers share one build and one run (the first to take the lock
    makes them, the others read its files): it is the slowest setup of the suite.
    """
    root = tmp_path_factory.getbasetemp()
    if worker_id != "master":
        root = root.parent  # the folder all workers' temporary folders are in
    tmp = root / "multiprocess"
    with open(root / "multiprocess.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if not (tmp / "reports.json").exists():
            _run_two_processes(tmp)
    out = tmp / "out"
    reports = json.loads((tmp / "reports.json").read_text())
    manifests = {name: json.loads((out / "artifacts" / "mp_cnn" / name / "manifest.json")
                                  .read_text()) for name in ("cnn_dp__train_step", "cnn_sharded")}
    from aotflax.verify import load_package

    load_package(out, "_mp_cnn_single")
    import importlib

    module = importlib.import_module("_mp_cnn_single.mp_cnn")
    return module, tmp / "results", reports, manifests


def _run_two_processes(tmp: Path) -> None:
    """The build, then the check in two processes; their reports in `reports.json`."""
    shutil.rmtree(tmp, ignore_errors=True)  # what a failed attempt left
    tmp.mkdir()
    model = tmp / "mp_cnn.py"
    model.write_text((ROOT / "models" / "cnn.py").read_text() + TARGETS)
    out = tmp / "out"
    # --platform tpu limits the targets that list tpu (cnn_sharded_export) to its export
    _build(model, out, "--platform", "tpu", *(f"--target={name}" for name in NAMES))
    script = tmp / "check.py"
    script.write_text(textwrap.dedent(CHECK))
    results = tmp / "results"
    results.mkdir()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    finished = cluster.run([sys.executable, str(script), str(out), "mp_cnn", str(results)], 2,
                           devices_per_process=4, timeout=300, env=env)
    reports = [json.loads(f.stdout.strip().splitlines()[-1]) for f in finished]
    (tmp / "reports.json").write_text(json.dumps(reports))


def _batch():
    x = np.random.RandomState(0).randn(8, 16, 16, 1).astype(np.float32)
    return x, np.arange(8, dtype=np.int32) % 10


@functools.cache
def _single_process_steps(m):
    x, labels = _batch()
    params, state = m.cnn_dp.init(jax.random.key(0))
    opt_state = m.cnn_dp.init_opt(params)
    losses = []
    step = jax.jit(m.cnn_dp.train_step)  # one compile, not an op-by-op backward pass
    for _ in range(2):
        params, state, opt_state, metrics = step(params, state, opt_state, x, labels)
        losses.append(float(metrics["loss"]))
    return params, opt_state, losses


def test_multiprocess_executables_are_native_and_record_their_processes(two_processes):
    _, _, reports, manifests = two_processes
    for manifest in manifests.values():
        entry = manifest["executables"]["cpu"]
        assert manifest["processes"] == 2 and entry["processes"] == 2
        assert entry["device_count"] == 8 and sorted(entry["hosts"]) == ["0", "1"]
        assert all(len(ids) == 4 for ids in entry["hosts"].values())
    assert manifests["cnn_dp__train_step"]["donate_argnums"] == [0, 1]
    for report in reports:
        assert report["step"] == report["forward"] == "executable"
        assert report["local_inputs"] == {"x": [4, 16, 16, 1]}


def test_data_parallel_train_step_over_two_processes_equals_one_process(two_processes):
    m, results, reports, _ = two_processes
    params, opt_state, losses = _single_process_steps(m)
    want = {jax.tree_util.keystr(k): np.asarray(v) for k, v in
            jax.tree_util.tree_flatten_with_path((params, opt_state))[0]}
    for rank, report in enumerate(reports):
        np.testing.assert_allclose(report["losses"], losses, rtol=1e-5)
        got = np.load(results / f"rank{rank}.npz")
        for name, value in want.items():  # parameters and momentum, replicated
            np.testing.assert_allclose(got[name], value, rtol=2e-5, atol=2e-6, err_msg=name)


def test_sharded_forward_returns_each_process_its_rows(two_processes):
    m, results, reports, _ = two_processes
    params, _, _ = _single_process_steps(m)
    y, _ = m.cnn_sharded.apply(params, {}, _batch()[0])
    for rank in range(2):
        got = np.load(results / f"rank{rank}.npz")
        rows = np.asarray(y)[rank * 4:(rank + 1) * 4]
        np.testing.assert_allclose(got["y"], rows, rtol=1e-5, atol=1e-6)
        # the portable export, compiled by each process for the global mesh
        np.testing.assert_allclose(got["y_export"], rows, rtol=1e-5, atol=1e-6)
    for report in reports:
        assert report["export"] == "export"
        assert any("portable jax.export" in w for w in report["warned"]), report["warned"]


def test_single_process_load_of_a_two_process_target_says_what_it_needs(two_processes):
    m, *_ = two_processes
    with pytest.warns(RuntimeWarning, match="runs on 2 processes and this run has 1"):
        run = m.cnn_sharded.load()
    assert run.kind == "export"  # which a run with 8 devices can call on the whole batch


def test_cluster_run_stops_every_process_when_one_fails():
    code = ("import os, sys, time\n"
            "if os.environ['AOTFLAX_PROCESS_ID'] == '0': sys.exit(3)\n"
            "time.sleep(120)\n")
    start = time.monotonic()
    with pytest.raises(cluster.ClusterError, match="process 0 of 2 exited with status 3"):
        cluster.run([sys.executable, "-c", code], 2, devices_per_process=1, timeout=60)
    assert time.monotonic() - start < 30


def test_cluster_run_is_bounded_in_time():
    start = time.monotonic()
    with pytest.raises(cluster.ClusterError, match="did not finish in 2 s"):
        cluster.run([sys.executable, "-c", "import time; time.sleep(120)"], 2,
                    devices_per_process=1, timeout=2)
    assert time.monotonic() - start < 30


def test_a_model_file_cannot_make_the_build_start_many_processes(tmp_path, monkeypatch, capsys):
    """processes=16 is more than the build host starts: no run, the export covers cpu."""
    from helpers import write_model

    from aotflax.driver import main

    def no_run(*args, **kwargs):
        raise AssertionError("the build started a local cluster")

    monkeypatch.setattr(cluster, "run", no_run)
    model = write_model("""
    class M(nn.Module):
        def apply(self, x):
            return nn.Dense(x, 2)

    aot.target("wide", M, x=aot.f32[16, 3], devices=aot.mesh(data=16), processes=16)
    """, name="wide_cluster")
    assert main([str(model), "-o", str(tmp_path / "out")]) == 0
    manifest = json.loads(
        (tmp_path / "out" / "artifacts" / "wide_cluster" / "wide" / "manifest.json").read_text())
    assert "cpu" not in manifest["executables"] and manifest["export"]["platforms"] == ["cpu"]
    assert "at most 8 processes" in manifest["skipped"]["cpu"]
    assert "cpu: export only (a 16-process compile" in capsys.readouterr().out
