"""Device meshes: data parallel inputs, parameters sharded by path, on 8 forced CPU devices."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from helpers import build_errors, write_model

ROOT = Path(__file__).resolve().parent.parent

SOURCE = """
class MLP(nn.Module):
    def apply(self, x):
        x = nn.relu(nn.Dense(x, 16))
        return nn.Dense(x, 8)

aot.target("sharded", MLP, x=aot.f32[8, 12], devices=aot.mesh(data=2, model=4),
           param_sharding=[("*/kernel", (None, "model")), ("Dense_0/bias", ("model",))])
"""

CHECK = """
import importlib, sys
import jax, numpy as np
from aotflax.verify import load_package
assert len(jax.devices()) == 8
from pathlib import Path
load_package(Path(sys.argv[1]), "_mesh_pkg")
m = importlib.import_module("_mesh_pkg." + sys.argv[2])
params, state = m.sharded.init(jax.random.key(0))
x = np.linspace(-1, 1, 96, dtype=np.float32).reshape(8, 12)
run = m.sharded.load()
assert run.kind == "executable", run.kind
assert run.manifest["executables"]["cpu"]["device_count"] == 8
y, _ = run(params, state, x)
want, _ = m.sharded.apply(params, state, x)
np.testing.assert_allclose(np.asarray(y), np.asarray(want), rtol=1e-5, atol=1e-6)
specs = {tuple(s.spec) for s in jax.tree_util.tree_leaves(run._call.input_shardings)}
assert {(None, "model"), ("model",), ("data",)} <= specs, specs
print("OK", specs)
"""


def test_sharded_target_compiles_loads_and_matches(tmp_path):
    model = write_model(SOURCE, name="meshy")
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=8",
           "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(ROOT)}
    out = tmp_path / "out"
    build = subprocess.run([sys.executable, str(ROOT / "aot_build.py"), str(model), "-o",
                            str(out)], capture_output=True, text=True, env=env)
    assert build.returncode == 0, build.stderr
    text = (out / "meshy.py").read_text()
    assert 'mesh={"data": 2, "model": 4}' in text and '"kernel": (None, "model")' in text
    check = subprocess.run([sys.executable, "-c", textwrap.dedent(CHECK), str(out), "meshy"],
                           capture_output=True, text=True, env=env)
    assert check.returncode == 0 and "OK" in check.stdout, check.stderr[-3000:]


def test_sharding_that_does_not_divide_is_located():
    errors = build_errors("""
    class MLP(nn.Module):
        def apply(self, x):
            return nn.Dense(x, 6)

    aot.target("bad", MLP, x=aot.f32[8, 12], devices=aot.mesh(data=2, model=4),
               param_sharding=[("*/kernel", (None, "model"))])
    """)
    assert "error[AOT432]" in errors and "does not divide" in errors


def test_sharding_names_an_unknown_axis():
    errors = build_errors("""
    class MLP(nn.Module):
        def apply(self, x):
            return nn.Dense(x, 8)

    aot.target("bad", MLP, x=aot.f32[8, 12], devices=aot.mesh(data=8),
               param_sharding=[("*/kernel", (None, "model"))])
    """)
    assert "error[AOT431]" in errors and "'model'" in errors
