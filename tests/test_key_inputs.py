"""Random keys as target inputs (`z_rng=aot.key`) through compile and load.

A key input crosses the executable boundary as its raw key data (uint32[..., 2]
for threefry2x32) and is wrapped back inside the computation; a call takes a
typed key (`jax.random.key`) or raw key data (`jax.random.PRNGKey`) for it, as
jax's random functions do. Each check compares the loaded executable with the
generated module's `apply` under `jax.jit`, and the dropout itself with Flax
Linen's `nn.Dropout` given the same key.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import flax.linen as linen
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import build

from aotflax import artifacts
from aotflax.compile import compile_target

MODEL = """
class Noisy(nn.Module):
    def apply(self, x, z_rng):
        h = nn.Dense(x, 4, name="fc")
        return nn.dropout(h, 0.5, rng=z_rng)


class Scaled(nn.Module):
    def apply(self, x, z_rng):
        return nn.Dense(x, 4, name="fc") * jax.random.uniform(z_rng)


class Pair(nn.Module):
    def apply(self, x, keys):
        return x + jax.random.normal(keys[1], x.shape)


aot.target("noisy", Noisy, x=aot.f32[3, 5], z_rng=aot.key)
aot.target("scaled_sym", Scaled, x=aot.f32["batch", 5], z_rng=aot.key)
aot.target("pair", Pair, x=aot.f32[2, 3], keys=aot.key[2])
"""


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Path]:
    module = build(MODEL)
    out = tmp_path_factory.mktemp("keys") / "artifacts"
    for name in ("noisy", "scaled_sym", "pair"):
        compile_target(module.TARGETS[name], out)
    return module, out


def _folder(module: Any, root: Path, name: str) -> Path:
    return artifacts.target_folder(root, module.TARGETS[name].module, name)


def _x(shape: tuple[int, ...]) -> np.ndarray:
    return np.linspace(-1.0, 1.0, int(np.prod(shape)), dtype=np.float32).reshape(shape)


def test_a_loaded_dropout_takes_its_key_as_jit_of_apply_does(built: tuple[Any, Path]) -> None:
    module, out = built
    target = module.noisy
    run = target.load(artifact_dir=out)
    assert run.kind == "executable"
    params, state = target.init(jax.random.key(0))
    x, key = _x((3, 5)), jax.random.key(7)
    want, _ = jax.jit(target.apply)(params, state, x, key)
    got, _ = run(params, state, x, key)
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-6)
    # raw key data, as jax.random.PRNGKey makes it, is the same key
    raw, _ = run(params, state, x, jax.random.key_data(key))
    np.testing.assert_array_equal(np.asarray(raw), np.asarray(got))
    old, _ = run(params, state, x, jax.random.PRNGKey(7))
    np.testing.assert_array_equal(np.asarray(old), np.asarray(got))
    applied, _ = target.apply(params, state, x, jax.random.PRNGKey(7))  # apply takes it too
    np.testing.assert_array_equal(np.asarray(applied), np.asarray(want))
    # another key drops other units: the key reaches the executable
    other, _ = run(params, state, x, jax.random.key(8))
    assert not np.array_equal(np.asarray(other), np.asarray(got))
    # the same dropout as Flax Linen's, given the same key
    h = x @ params["fc"]["kernel"] + params["fc"]["bias"][None]
    linen_out = linen.Dropout(0.5).apply({}, h, deterministic=False, rng=key)
    np.testing.assert_allclose(np.asarray(got), np.asarray(linen_out), rtol=1e-6, atol=1e-6)
    assert not target.stochastic  # the key is an input, not the target's rng


def test_the_manifest_describes_a_key_input(built: tuple[Any, Path]) -> None:
    module, out = built
    manifest = json.loads((_folder(module, out, "noisy") / "manifest.json").read_text())
    assert manifest["inputs"]["z_rng"] == {
        "shape": [], "dtype": "key<fry>", "key_impl": "threefry2x32",
        "key_data": {"shape": [2], "dtype": "uint32"}}
    assert manifest["inputs"]["x"] == {"shape": [3, 5], "dtype": "float32"}
    assert manifest["executables"]["cpu"]["arguments"][-2:] == [
        {"shape": [3, 5], "dtype": "float32"}, {"shape": [2], "dtype": "uint32"}]
    assert manifest["rng"] is None
    pair = json.loads((_folder(module, out, "pair") / "manifest.json").read_text())
    assert pair["inputs"]["keys"]["key_data"] == {"shape": [2, 2], "dtype": "uint32"}


def test_a_batch_of_keys_crosses_the_boundary(built: tuple[Any, Path]) -> None:
    module, out = built
    target = module.pair
    run = target.load(artifact_dir=out)
    params, state = target.init(jax.random.key(0))
    x, keys = _x((2, 3)), jax.random.split(jax.random.key(3))
    got, _ = run(params, state, x, keys)
    want = x + jax.random.normal(keys[1], (2, 3))
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-6)
    raw, _ = run(params, state, x, jax.random.key_data(keys))
    np.testing.assert_array_equal(np.asarray(raw), np.asarray(got))


def test_a_symbolic_key_target_runs_its_export(built: tuple[Any, Path]) -> None:
    module, out = built
    target = module.scaled_sym
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # compiles per shape: said once
        run = target.load(artifact_dir=out)
    assert run.kind == "export"
    params, state = target.init(jax.random.key(0))
    for batch in (1, 4):
        x, key = _x((batch, 5)), jax.random.key(batch)
        want, _ = jax.jit(target.apply)(params, state, x, key)
        got, _ = run(params, state, x, jax.random.PRNGKey(batch))
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-6)


@pytest.mark.parametrize("value, says", [
    (np.zeros((2,), np.float32), "float32[2], not a key"),
    (np.zeros((3,), np.uint32), "raw key data uint32[3] (its last axes must be [2])"),
    (jax.random.key(0, impl="rbg"), "a key<rbg> key (another PRNG implementation)"),
    (jax.random.split(jax.random.key(0)), "key<fry>[2] (wrong shape)"),
])
def test_a_wrong_key_names_the_input(built: tuple[Any, Path], value: Any, says: str) -> None:
    module, out = built
    target = module.noisy
    run = target.load(artifact_dir=out)
    params, state = target.init(jax.random.key(0))
    for call in (run, target.apply):
        with pytest.raises(TypeError) as error:
            call(params, state, _x((3, 5)), value)
        assert str(error.value) == (
            "noisy: input 'z_rng' expected key<fry>[] (a jax.random.key, or raw uint32[2] key "
            f"data as jax.random.PRNGKey makes), got {says}")


def test_artifacts_of_another_key_implementation_are_refused(built: tuple[Any, Path],
                                                            tmp_path: Path) -> None:
    module, out = built
    folder = _folder(module, out, "noisy")
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["inputs"]["z_rng"]["key_impl"] = "rbg"
    copy = _folder(module, tmp_path, "noisy")
    copy.mkdir(parents=True)
    for f in folder.iterdir():
        (copy / f.name).write_bytes(f.read_bytes())
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(module._runtime.ArtifactError) as error:
        module.noisy.load(artifact_dir=tmp_path)
    assert "input 'z_rng' is a threefry2x32 key here" in str(error.value)
    assert "take rbg key data" in str(error.value)


def test_keys_inside_jit_pass_through_apply(built: tuple[Any, Path]) -> None:
    module, _ = built
    target = module.noisy
    params, state = target.init(jax.random.key(0))
    fn = jax.jit(lambda k: target.apply(params, state, jnp.ones((3, 5)), k)[0])
    np.testing.assert_array_equal(np.asarray(fn(jax.random.key(1))),
                                  np.asarray(fn(jax.random.PRNGKey(1))))
