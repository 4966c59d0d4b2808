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
from helpers import build
from test_init_values import linen_keys_by_path

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
    ("dense_general_variables", linen.DenseGeneral, ("use_bias", "param_dtype")),
    ("lstm_cell_variables", linen.LSTMCell, ("param_dtype",)),
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


# --- the helpers of layers made of several Denses, against Linen's init with the same keys

RNG = jax.random.key(7)
SEQ = np.zeros((2, 5, 64), np.float32)
he, normal = jax.nn.initializers.he_normal(), jax.nn.initializers.normal(0.5)


def _linen_variables(layer, *inputs):
    """Linen's `init`, every parameter drawn from the key its path folds into RNG."""
    with linen_keys_by_path(RNG):
        return jax.tree.map(np.asarray, layer.init(RNG, *inputs))


def _ours(rt, tree):
    params, state = rt.Variables(tree).init(RNG)
    return jax.tree.map(np.asarray, {"params": params, **state})


@pytest.mark.filterwarnings("ignore:SelfAttention will be deprecated")
@pytest.mark.parametrize("helper, kwargs, layer, inputs", [
    ("attention_variables", {"num_heads": 4},
     linen.MultiHeadDotProductAttention(4), (SEQ,)),
    ("attention_variables", {"num_heads": 2, "qkv_features": 32, "out_features": 48,
                             "kernel_init": he, "bias_init": normal},
     linen.MultiHeadDotProductAttention(2, qkv_features=32, out_features=48, kernel_init=he,
                                        bias_init=normal), (SEQ,)),
    ("attention_variables", {"num_heads": 4, "use_bias": False, "param_dtype": jnp.bfloat16},
     linen.SelfAttention(4, use_bias=False, param_dtype=jnp.bfloat16), (SEQ,)),
    ("attention_variables", {"num_heads": 4, "cache_shape": (2, 5)},
     linen.MultiHeadDotProductAttention(4, decode=True), (SEQ,)),
    ("lstm_cell_variables", {"features": 32}, linen.LSTMCell(32),
     ((np.zeros((2, 32), np.float32),) * 2, SEQ[:, 0])),
    ("lstm_cell_variables", {"features": 32, "kernel_init": he, "recurrent_kernel_init": normal,
                             "bias_init": normal, "param_dtype": jnp.bfloat16},
     linen.LSTMCell(32, kernel_init=he, recurrent_kernel_init=normal, bias_init=normal,
                    param_dtype=jnp.bfloat16), ((np.zeros((2, 32), np.float32),) * 2, SEQ[:, 0])),
])
def test_several_dense_helpers_equal_linens_init(rt, helper, kwargs, layer, inputs):
    """Same tree, shapes, dtypes and values: DenseGeneral's kernels drawn on the flattened
    2-D shape and reshaped, as Linen does; the decoding cache zeros."""
    args = {k: v for k, v in kwargs.items() if k != "features"}
    features = (kwargs["features"],) if "features" in kwargs else ()
    got = _ours(rt, getattr(rt, helper)(64, *features, **args))
    want = _linen_variables(layer, *inputs)
    assert jax.tree.structure(got) == jax.tree.structure(want)
    jax.tree.map(lambda a, b: (np.testing.assert_array_equal(a, b),
                               np.testing.assert_equal(a.dtype, b.dtype)), got, want)


@pytest.mark.parametrize("in_shape, features, kwargs, layer", [
    ((64,), (4, 16), {}, linen.DenseGeneral((4, 16))),
    ((5, 64), (3,), {"bias_init": normal}, linen.DenseGeneral(3, axis=(-2, -1),
                                                              bias_init=normal)),
    ((64,), (4, 16), {"use_bias": False, "kernel_init": he},
     linen.DenseGeneral((4, 16), use_bias=False, kernel_init=he)),
])
def test_dense_general_variables_equal_linens_init(rt, in_shape, features, kwargs, layer):
    got = _ours(rt, rt.dense_general_variables(in_shape, features, **kwargs))
    want = _linen_variables(layer, SEQ)
    assert jax.tree.structure(got) == jax.tree.structure(want)
    jax.tree.map(np.testing.assert_array_equal, got, want)


def test_layers_of_several_denses_are_one_helper_call_when_the_tree_is_the_helpers():
    """The DSL's attention, LSTMCell and DenseGeneral declare their variables with one
    helper call; a tree the helper does not make (an `out` projection with its own
    initializer, keys from inputs of another width) stays leaf by leaf."""
    m = build("""
class Layers(nn.Module):
    def apply(self, seq, kv, c, h, x):
        a = nn.SelfAttention(seq, 2, qkv_features=4, decode=True, name="cached")
        b = nn.MultiHeadDotProductAttention(seq, seq, 2, out_features=6, name="mha")
        d = nn.SelfAttention(seq, 2, out_kernel_init=nn.initializers.normal(1.0), name="own")
        e = nn.MultiHeadDotProductAttention(seq, kv, 2, name="kv")
        (c, h), y = nn.LSTMCell((c, h), x, name="lstm")
        g = nn.DenseGeneral(seq, (2, 3), name="general")
        return a, b, d, e, y, g


aot.target("t", Layers, seq=aot.f32[2, 5, 8], kv=aot.f32[2, 5, 6], c=aot.f32[2, 4],
           h=aot.f32[2, 4], x=aot.f32[2, 3])
""")
    text = m.__aotflax_text__
    for call in ('"cached": _runtime.attention_variables(8, num_heads=2, qkv_features=4, '
                 'cache_shape=(2, 5))',
                 '"mha": _runtime.attention_variables(8, num_heads=2, out_features=6)',
                 '"lstm": _runtime.lstm_cell_variables(3, 4)',
                 '"general": _runtime.dense_general_variables((8,), (2, 3))'):
        assert call in text
    assert text.count("_runtime.attention_variables(") == 2  # "own" and "kv" leaf by leaf
    assert '"own": {' in text and '"kv": {' in text
