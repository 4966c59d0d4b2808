"""The runtime's layer helpers called with their defaults equal Flax Linen's layers.

Generated code passes momentum and epsilon explicitly, so the DSL parity tests
(`test_linen_parity.py`) never exercise the helpers' own defaults; a user calling
`_runtime.batch_norm_train(x, params, stats)` by hand, or reading its signature,
must get Linen's.  The variables helpers' trees are compared with Linen's `init`.
"""

from __future__ import annotations

import inspect

import flax.linen as linen
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aotflax.artifacts import render_runtime
from aotflax.verify import import_generated


@pytest.fixture(scope="module")
def rt():
    # a module importing the runtime, so that it is imported before its folder goes
    _, importer = import_generated({"probe.py": "from . import _runtime\n"}, render_runtime())
    return importer("_runtime")


def _defaults(fn) -> dict:
    return {k: p.default for k, p in inspect.signature(fn).parameters.items()
            if p.default is not inspect.Parameter.empty}


def _linen_default(cls, name: str):
    return cls.__dataclass_fields__[name].default


@pytest.mark.parametrize("helper, cls, names", [
    ("batch_norm_train", linen.BatchNorm, ("axis", "momentum", "epsilon", "dtype",
                                           "use_fast_variance")),
    ("batch_norm_eval", linen.BatchNorm, ("axis", "epsilon", "dtype")),
    ("layer_norm", linen.LayerNorm, ("epsilon", "dtype")),
    ("group_norm", linen.GroupNorm, ("num_groups", "epsilon", "dtype", "use_fast_variance")),
    ("norm_variables", linen.LayerNorm, ("use_bias", "use_scale", "param_dtype")),
    ("dense_variables", linen.Dense, ("use_bias", "param_dtype")),
])
def test_helper_defaults_are_linens(rt, helper, cls, names):
    defaults = _defaults(getattr(rt, helper))
    for name in names:
        assert defaults[name] == _linen_default(cls, name), (helper, name)


def _perturbed(tree, seed):
    leaves, treedef = jax.tree.flatten(tree)
    rng = np.random.default_rng(seed)
    return jax.tree.unflatten(treedef, [
        leaf + 0.3 * rng.standard_normal(leaf.shape).astype(leaf.dtype) for leaf in leaves])


X = np.random.default_rng(0).standard_normal((4, 3, 3, 64)).astype(np.float32) * 2 + 0.5


def test_batch_norm_train_and_eval_with_defaults_equal_linen(rt):
    for train in (True, False):
        layer = linen.BatchNorm(use_running_average=not train)
        variables = _perturbed(layer.init(jax.random.key(0), X), 1)
        variables = {**variables, "batch_stats": jax.tree.map(jnp.abs, variables["batch_stats"])}
        want, updates = layer.apply(variables, X, mutable=["batch_stats"])
        if train:
            got, new_stats = rt.batch_norm_train(X, variables["params"], variables["batch_stats"])
            jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
                         new_stats, dict(updates["batch_stats"]))
        else:
            got = rt.batch_norm_eval(X, variables["params"], variables["batch_stats"])
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name, layer", [("layer_norm", linen.LayerNorm()),
                                         ("group_norm", linen.GroupNorm())])
def test_layer_and_group_norm_with_defaults_equal_linen(rt, name, layer):
    variables = _perturbed(layer.init(jax.random.key(0), X), 2)
    got = getattr(rt, name)(X, variables["params"])
    np.testing.assert_allclose(got, layer.apply(variables, X), rtol=1e-5, atol=1e-5)


def test_bfloat16_result_dtype_is_linens(rt):
    x = jnp.asarray(X, jnp.bfloat16)
    for layer, call in [
        (linen.LayerNorm(dtype=jnp.bfloat16), lambda v: rt.layer_norm(x, v["params"],
                                                                      dtype=jnp.bfloat16)),
        (linen.LayerNorm(), lambda v: rt.layer_norm(x, v["params"])),
        (linen.BatchNorm(use_running_average=True),
         lambda v: rt.batch_norm_eval(x, v["params"], v["batch_stats"])),
    ]:
        variables = layer.init(jax.random.key(0), x)
        assert call(variables).dtype == layer.apply(variables, x).dtype


@pytest.mark.parametrize("helper, layer, kwargs", [
    ("batch_norm_variables", linen.BatchNorm(use_running_average=True), {}),
    ("batch_norm_variables", linen.BatchNorm(use_running_average=True, use_bias=False,
                                             scale_init=jax.nn.initializers.zeros),
     {"use_bias": False, "scale_init": jax.nn.initializers.zeros}),
    ("norm_variables", linen.LayerNorm(), {}),
    ("norm_variables", linen.GroupNorm(use_scale=False, param_dtype=jnp.bfloat16),
     {"use_scale": False, "param_dtype": jnp.bfloat16}),
])
def test_variables_helpers_declare_linens_tree(rt, helper, layer, kwargs):
    """Same leaves, dtypes and values (these initializers are constant)."""
    want = layer.init(jax.random.key(0), X)
    tree = {"layer": getattr(rt, helper)(64, **kwargs)}
    variables = rt.Variables(tree)
    params, state = variables.init(jax.random.key(1))
    got = {"params": params["layer"], **{c: t["layer"] for c, t in state.items()}}
    assert jax.tree.structure(got) == jax.tree.structure(jax.tree.map(np.asarray, want))
    jax.tree.map(lambda a, b: (np.testing.assert_array_equal(a, b),
                               np.testing.assert_equal(a.dtype, b.dtype)), got, want)


def test_dense_variables_declare_linens_tree(rt):
    layer = linen.Dense(10)
    want = layer.init(jax.random.key(0), X)["params"]
    got = rt.dense_variables(64, 10)
    assert set(got) == set(want)
    key = jax.random.key(3)
    for name, var in got.items():
        assert (var.collection, var.shape, jnp.dtype(var.dtype)) == (
            "params", want[name].shape, want[name].dtype)
    # Linen's default kernel initializer, lecun_normal, and zeros for the bias
    np.testing.assert_array_equal(got["kernel"].init(key, (64, 10), jnp.float32),
                                  jax.nn.initializers.lecun_normal()(key, (64, 10), jnp.float32))
    np.testing.assert_array_equal(got["bias"].init(key, (10,), jnp.float32), want["bias"])
    assert set(rt.dense_variables(64, 10, use_bias=False)) == {"kernel"}
