"""Trees of arrays: dicts (and tuples, lists) passed to modules and taken by targets.

A dict of arrays passed to a module is one parameter of its function, its leaves read
on entry by quoted key; a target input may be a tree of specs, which `INPUTS`,
`apply`, `load()` and the train step take as that tree, and which the executable
boundary flattens in jax's order. Numerics are compared with a Flax Linen twin given
the same parameters; the loaded executable with `apply`.
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path
from typing import Any

import flax.linen as linen
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from helpers import build, build_errors, perturbed

from aotflax import artifacts
from aotflax.compile import compile_target

MODEL = """
import optax


class Body(nn.Module):
    def apply(self, batch, carry, features: int = 4):
        h, c = carry
        y = nn.Dense(batch["tokens"], features) * batch["mask"]
        return y + h * batch["scale"]["h"] + c


class Net(nn.Module):
    def apply(self, batch, state):
        inner = {"tokens": jnp.tanh(batch["tokens"]), "mask": batch["mask"],
                 "scale": {"h": 2.0}}
        return Body(inner, (state[1], state[0]))


def loss(logits, labels):
    return jnp.mean((logits - labels["y"]) ** 2 * labels["w"])


BATCH = {"tokens": aot.f32[2, 8], "mask": aot.f32[2, 4]}
aot.target("tnet", Net, batch=BATCH, state=(aot.f32[2, 4], aot.f32[2, 4]))
aot.target("tsym", Net, batch={"tokens": aot.f32["b", 8], "mask": aot.f32["b", 4]},
           state=[aot.f32["b", 4], aot.f32["b", 4]])
aot.train_target("ttrain", Net, loss=loss, optimizer=optax.sgd(0.1), batch=BATCH,
                 state=(aot.f32[2, 4], aot.f32[2, 4]),
                 labels={"y": aot.f32[2, 4], "w": aot.f32[2, 4]})
"""


class LinenBody(linen.Module):
    @linen.compact
    def __call__(self, batch: dict, carry: tuple) -> Any:
        h, c = carry
        return linen.Dense(4)(batch["tokens"]) * batch["mask"] + h * 2.0 + c


class LinenNet(linen.Module):
    @linen.compact
    def __call__(self, batch: dict, state: tuple) -> Any:
        inner = {"tokens": jnp.tanh(batch["tokens"]), "mask": batch["mask"]}
        return LinenBody(name="Body_0")(inner, (state[1], state[0]))


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Path]:
    module = build(MODEL)
    out = tmp_path_factory.mktemp("trees") / "artifacts"
    compile_target(module.tnet, out)
    compile_target(module.ttrain.train_view(), out)
    return module, out


def _inputs(n: int = 2) -> tuple[dict, tuple]:
    rng = np.random.default_rng(0)
    batch = {"tokens": rng.normal(size=(n, 8)).astype(np.float32),
             "mask": (rng.random((n, 4)) > 0.3).astype(np.float32)}
    state = (rng.normal(size=(n, 4)).astype(np.float32),
             rng.normal(size=(n, 4)).astype(np.float32))
    return batch, state


def test_a_dict_passed_to_a_module_is_one_argument_read_by_key(built: tuple) -> None:
    text = built[0].__aotflax_text__
    # the callee reads its leaves on entry, commented with the DSL line and shapes
    assert re.search(r'\n    tokens, mask = batch\["tokens"\], batch\["mask"\]  # '
                     r'\S+model_\d+\.py:10  f32\[\w+, 8\], f32\[\w+, 4\]\n', text), text
    # the caller passes a dict display (its static leaf too) and a tuple
    assert 'body(params["Body_0"], {"tokens": tanh, "mask": mask, "scale": {"h": 2.0}}, ' \
        "(state_2, state_1))" in text
    # a loss reads its dict batch the same way
    assert 'y, w = labels["y"], labels["w"]' in text


def test_a_dict_batch_equals_linen(built: tuple) -> None:
    module, _ = built
    target = module.tnet
    params, state = target.init(jax.random.key(0))
    params = perturbed(params, 1)
    batch, carry = _inputs()
    got, _ = target.apply(params, state, batch, carry)
    want = LinenNet().apply({"params": params}, batch, carry)
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-6, atol=1e-6)
    jitted, _ = jax.jit(target.apply)(params, state, batch, carry)
    np.testing.assert_allclose(np.asarray(jitted), np.asarray(want), rtol=1e-6, atol=1e-6)


def test_inputs_are_the_declared_trees_and_leaves_are_in_jax_order(built: tuple) -> None:
    target = built[0].tnet
    assert set(target.INPUTS) == {"batch", "state"}
    assert target.INPUTS["batch"] == {"tokens": jax.ShapeDtypeStruct((2, 8), jnp.float32),
                                      "mask": jax.ShapeDtypeStruct((2, 4), jnp.float32)}
    assert target.INPUTS["state"] == (jax.ShapeDtypeStruct((2, 4), jnp.float32),) * 2
    assert list(target.leaves) == ['batch["mask"]', 'batch["tokens"]', "state[0]", "state[1]"]
    sym = built[0].tsym
    assert isinstance(sym.INPUTS["state"], list)
    assert sym.symbolic == {'batch["mask"]': ("b", 4), 'batch["tokens"]': ("b", 8),
                            "state[0]": ("b", 4), "state[1]": ("b", 4)}
    assert str(sym.INPUTS["batch"]["tokens"].shape[0]) == "b"


def test_the_loaded_executable_takes_the_tree_as_apply_does(built: tuple) -> None:
    module, out = built
    target = module.tnet
    params, state = target.init(jax.random.key(0))
    params = perturbed(params, 2)
    batch, carry = _inputs()
    run = target.load(artifact_dir=out)
    assert run.kind == "executable"
    want, _ = target.apply(params, state, batch, carry)
    for _ in range(2):  # the second call goes through jax's C++ dispatch
        got, _ = run(params, state, batch, carry)
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-6)
    manifest = json.loads((artifacts.target_folder(out, target.module, "tnet")
                           / "manifest.json").read_text())
    assert manifest["inputs"]["batch"] == {"dict": {
        "mask": {"shape": [2, 4], "dtype": "float32"},
        "tokens": {"shape": [2, 8], "dtype": "float32"}}}
    assert manifest["inputs"]["state"]["tuple"][1] == {"shape": [2, 4], "dtype": "float32"}
    # the executable takes the leaves after params and state, dict keys sorted
    assert [a["shape"] for a in manifest["executables"]["cpu"]["arguments"][-4:]] == [
        [2, 4], [2, 8], [2, 4], [2, 4]]


@pytest.mark.parametrize("via", ["apply", "load"])
def test_a_wrong_tree_or_leaf_is_named_at_call_time(built: tuple, via: str) -> None:
    module, out = built
    target = module.tnet
    call = target.apply if via == "apply" else target.load(artifact_dir=out)
    params, state = target.init(jax.random.key(0))
    batch, carry = _inputs()
    with pytest.raises(TypeError, match=r"input 'batch' expected \{\"mask\": float32\[2, 4\], "
                       r"\"tokens\": float32\[2, 8\]\}, got \{\"tokens\": float32\[2, 8\]\}"):
        call(params, state, {"tokens": batch["tokens"]}, carry)
    with pytest.raises(TypeError, match=r"input 'state' expected \(float32\[2, 4\], "
                       r"float32\[2, 4\]\), got \[float32"):
        call(params, state, batch, list(carry))
    with pytest.raises(ValueError, match=r'input batch\["tokens"\] expected float32\[2, 8\], '
                       r"got float32\[2, 9\] \(wrong shape\)"):
        call(params, state, {**batch, "tokens": np.zeros((2, 9), np.float32)}, carry)
    with pytest.raises(TypeError, match=r"input state\[1\] expected float32\[2, 4\], got "
                       r"int32\[2, 4\] \(wrong dtype\)"):
        call(params, state, batch, (carry[0], np.zeros((2, 4), np.int32)))


def test_symbolic_leaves_bind_one_size_per_call(built: tuple) -> None:
    target = built[0].tsym
    params, state = target.init(jax.random.key(0))
    batch, carry = _inputs(3)
    got, _ = target.apply(params, state, batch, list(carry))
    want = LinenNet().apply({"params": params}, batch, carry)
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match=r"symbolic dimension 'b' is 3 in input "
                       r'batch\["mask"\] but 2 in input state\[0\]'):
        target.apply(params, state, batch, [carry[0][:2], carry[1]])


def test_a_train_step_takes_a_dict_batch_as_optax_and_linen_do(built: tuple) -> None:
    module, out = built
    target = module.ttrain
    params, state = target.init(jax.random.key(0))
    params = perturbed(params, 3)
    opt_state = target.init_opt(params)
    batch, carry = _inputs()
    labels = {"y": np.ones((2, 4), np.float32), "w": np.full((2, 4), 0.5, np.float32)}
    assert target.BATCH["labels"]["w"] == jax.ShapeDtypeStruct((2, 4), jnp.float32)

    def linen_loss(p: Any) -> Any:
        logits = LinenNet().apply({"params": p}, batch, carry)
        return jnp.mean((logits - labels["y"]) ** 2 * labels["w"])

    loss, grads = jax.value_and_grad(linen_loss)(params)
    tx = optax.sgd(0.1)
    updates, _ = tx.update(grads, tx.init(params), params)
    want = optax.apply_updates(params, updates)
    new, _, _, metrics = target.train_step(params, state, opt_state, batch, carry, labels)
    np.testing.assert_allclose(float(metrics["loss"]), float(loss), rtol=1e-6)
    for a, b in zip(jax.tree.leaves(new), jax.tree.leaves(want)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)
    step = target.load_train_step(artifact_dir=out)
    copy = jax.tree.map(jnp.array, params)  # the loaded step donates what it is given
    loaded, _, _, lm = step(copy, state, target.init_opt(copy), batch, carry, labels)
    for a, b in zip(jax.tree.leaves(loaded), jax.tree.leaves(want)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(float(lm["loss"]), float(loss), rtol=1e-6)


HOSTILE = """
KEYS = ('a"b', "x\\ny", "not an id", "__import__('os').system('x')", "'")


class Sum(nn.Module):
    def apply(self, d):
        out = 0.0
        for k in KEYS:
            out = out + d[k]
        return out


class Net(nn.Module):
    def apply(self, batch):
        return Sum({k: batch[k] * 2.0 for k in KEYS})


aot.target("hostile", Net, batch={k: aot.f32[2] for k in KEYS})
"""


def test_hostile_dict_keys_stay_quoted_data(tmp_path: Path) -> None:
    module = build(HOSTILE)
    keys = ('a"b', "x\ny", "not an id", "__import__('os').system('x')", "'")
    tree = ast.parse(module.__aotflax_text__)
    strings = {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant)}
    assert set(keys) <= strings
    names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
    attributes = {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
    assert "os" not in names | attributes and "__import__" not in names | attributes
    assert "system" not in attributes
    target = module.hostile
    params, state = target.init(jax.random.key(0))
    batch = {k: np.full((2,), float(i), np.float32) for i, k in enumerate(keys)}
    got, _ = target.apply(params, state, batch)
    np.testing.assert_allclose(np.asarray(got), np.full((2,), 2.0 * sum(range(5))))
    compile_target(target, tmp_path)
    run = target.load(artifact_dir=tmp_path)
    np.testing.assert_allclose(np.asarray(run(params, state, batch)[0]), np.asarray(got))
    with pytest.raises(ValueError, match=r'input batch\["x\\ny"\] expected float32\[2\]'):
        run(params, state, {**batch, "x\ny": np.zeros((3,), np.float32)})


@pytest.mark.parametrize(("declaration", "expected"), [
    ('batch={"x": aot.f32["n", 8]}, buckets={"n": (1, 2)}',
     "error[AOT415]: target input 'batch' is a tree of arrays, and a target with buckets="),
    ('batch={1: aot.f32[2, 8]}',
     "error[AOT409]: target input 'batch' is a dict keyed by int 1"),
    ('batch={}', "error[AOT409]: target input 'batch' must be a spec such as aot.f32[8, 784] "
                 "(or a dict, tuple or list of specs), got"),
    ('batch={"x": 3}', "error[AOT409]: target input 'batch' must be a spec"),
])
def test_refused_tree_inputs_are_located(declaration: str, expected: str) -> None:
    out = build_errors(f"""
class Net(nn.Module):
    def apply(self, batch):
        return nn.Dense(batch["x"], 4)


aot.target("t", Net, {declaration})
""")
    assert expected in out, out
    assert "aot.target(" in out  # located at the declaration, with its line shown


def test_microbatches_of_a_tree_batch_are_refused() -> None:
    out = build_errors("""
import optax


class Net(nn.Module):
    def apply(self, batch):
        return nn.Dense(batch["x"], 4)


def loss(y):
    return jnp.mean(y)


aot.train_target("t", Net, loss=loss, optimizer=optax.sgd(0.1), microbatches=2,
                 batch={"x": aot.f32[4, 8]})
""")
    assert "error[AOT415]: target input 'batch' is a tree of arrays, and a target with " \
        "microbatches=2 takes array inputs only" in out, out
    assert "hint: declare each array as an input of its own" in out


def test_a_dict_keyed_by_numbers_cannot_reach_a_module() -> None:
    out = build_errors("""
class Add(nn.Module):
    def apply(self, pair):
        return pair[0.5] + pair[1.5]


class Net(nn.Module):
    def apply(self, x):
        return Add({0.5: x, 1.5: x})


aot.target("t", Net, x=aot.f32[2, 8])
""")
    assert "error[AOT326]: argument 'pair' of Add.apply holds a dict of arrays keyed by " \
        "float 0.5" in out, out
