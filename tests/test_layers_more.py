"""DenseGeneral, ConvTranspose, attention, masks and recurrent cells against Flax Linen.

Cases are grouped by their inputs: each group is one DSL model returning every
case's output and one Linen twin creating the same layers in the same order
(so both name them `DenseGeneral_0`, `DenseGeneral_1`, ...).  A group is built
once per module; per case we check the output (float32, rtol 1e-5), per group
the whole parameter tree (names, shapes, dtypes).  Linen's parameters are
replaced by random values first, so zero biases cannot hide a mistake.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Callable

import flax.linen as linen
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import build, build_errors, scope_hash

RTOL, ATOL = 1e-5, 1e-6

pytestmark = pytest.mark.filterwarnings("ignore:SelfAttention will be deprecated")


@dataclass(frozen=True)
class Case:
    """One DSL expression of the group's inputs and its Linen twin."""

    id: str
    dsl: str
    #: Called inside a compact Linen module with the group's inputs.
    linen: Callable[..., Any]


@dataclass(frozen=True)
class Group:
    #: name -> (shape, dtype) of the inputs, in order.
    inputs: dict[str, tuple[tuple[int, ...], str]]
    cases: tuple[Case, ...]


def _tree(tree: Any) -> Any:
    """Names, shapes and dtypes of a variable tree (Linen FrozenDicts made plain)."""
    if hasattr(tree, "items"):
        return {k: _tree(v) for k, v in tree.items()}
    return (tuple(tree.shape), str(tree.dtype))


def _randomized(tree: Any, seed: int) -> Any:
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    rng = np.random.default_rng(seed)
    return jax.tree_util.tree_unflatten(
        treedef, [rng.normal(0.0, 0.5, leaf.shape).astype(leaf.dtype) for leaf in leaves])


def _inputs(group: Group, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    out = []
    for name, (shape, dtype) in group.inputs.items():
        if name.endswith("pad"):  # padding masks: 1 = token, 0 = padding
            x = (rng.random(shape) < 0.7).astype(dtype)
            x[..., 0] = 1
            out.append(x)
        else:
            out.append(rng.standard_normal(shape).astype(dtype))
    return out


def _source(group: Group) -> str:
    args = ", ".join(group.inputs)
    specs = ", ".join(f"{n}=aot.{'f32' if d == 'float32' else 'i32'}[{', '.join(map(str, s))}]"
                      for n, (s, d) in group.inputs.items())
    body = ", ".join(c.dsl for c in group.cases)
    return (f"class Group(nn.Module):\n    def apply(self, {args}):\n        return ({body},)\n\n"
            f'aot.target("t", Group, {specs})\n')


@dataclass
class Run:
    """A group built and run on both sides."""

    params_tree: Any
    linen_tree: Any
    got: tuple
    want: tuple


def _run(group: Group) -> Run:
    m = build(_source(group))

    class Twin(linen.Module):
        @linen.compact
        def __call__(self, *xs):
            return tuple(c.linen(*xs) for c in group.cases)

    xs = _inputs(group)
    # Shapes only: eager Linen initializers cost seconds, and the values are replaced anyway.
    variables = jax.eval_shape(Twin().init, jax.random.key(0), *xs)
    params = _randomized(variables.get("params", {}), seed=1)
    # One XLA compile each beats dispatching dozens of ops eagerly.
    want = jax.jit(Twin().apply)({"params": params}, *xs)
    got, new_state = jax.jit(m.t.apply_fn)(params, {}, *xs)
    assert new_state == {}
    shapes, _ = jax.eval_shape(m.t.init_fn, jax.random.key(0))
    return Run(_tree(shapes), _tree(variables.get("params", {})), got, want)


def _check(run: Run, group: Group, case: Case) -> None:
    i = group.cases.index(case)
    got, want = run.got[i], run.want[i]
    assert jax.tree_util.tree_structure(got) == jax.tree_util.tree_structure(want)
    for g, w in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want)):
        assert g.shape == w.shape and g.dtype == w.dtype
        np.testing.assert_allclose(g, w, rtol=RTOL, atol=ATOL)


# ------------------------------------------------------------------ DenseGeneral

DENSE = Group({"x": ((2, 3, 4, 5), "float32")}, (
    Case("last_axis", "nn.DenseGeneral(x, 6)", lambda x: linen.DenseGeneral(6)(x)),
    Case("feature_tuple", "nn.DenseGeneral(x, (2, 3))", lambda x: linen.DenseGeneral((2, 3))(x)),
    Case("two_axes", "nn.DenseGeneral(x, 4, axis=(-2, -1))",
         lambda x: linen.DenseGeneral(4, axis=(-2, -1))(x)),
    Case("inner_axes_no_bias", "nn.DenseGeneral(x, (3, 2), axis=(1, 3), bias=False)",
         lambda x: linen.DenseGeneral((3, 2), axis=(1, 3), use_bias=False)(x)),
    Case("batch_dims", "nn.DenseGeneral(x, 3, axis=-1, batch_dims=(0,))",
         lambda x: linen.DenseGeneral(3, axis=-1, batch_dims=(0,))(x)),
    Case("batch_dims_2", "nn.DenseGeneral(x, (2, 2), axis=(2,), batch_dims=(0, 1))",
         lambda x: linen.DenseGeneral((2, 2), axis=(2,), batch_dims=(0, 1))(x)),
))

# ------------------------------------------------------------------ ConvTranspose

CONV_T = Group({"x": ((2, 5, 5, 3), "float32")}, (
    Case("same", "nn.ConvTranspose(x, 4, (3, 3))", lambda x: linen.ConvTranspose(4, (3, 3))(x)),
    Case("same_strided", "nn.ConvTranspose(x, 4, (3, 3), strides=(2, 2))",
         lambda x: linen.ConvTranspose(4, (3, 3), strides=(2, 2))(x)),
    Case("valid_strided", 'nn.ConvTranspose(x, 2, (2, 3), strides=(2, 1), padding="VALID")',
         lambda x: linen.ConvTranspose(2, (2, 3), strides=(2, 1), padding="VALID")(x)),
    Case("dilated", "nn.ConvTranspose(x, 2, (3, 3), kernel_dilation=(2, 1), strides=2)",
         lambda x: linen.ConvTranspose(2, (3, 3), kernel_dilation=(2, 1), strides=2)(x)),
    Case("explicit_padding", "nn.ConvTranspose(x, 2, (3, 3), padding=((1, 2), (0, 1)))",
         lambda x: linen.ConvTranspose(2, (3, 3), padding=((1, 2), (0, 1)))(x)),
    Case("transpose_kernel_no_bias",
         "nn.ConvTranspose(x, 4, (3, 3), strides=2, transpose_kernel=True, bias=False)",
         lambda x: linen.ConvTranspose(4, (3, 3), strides=2, transpose_kernel=True,
                                       use_bias=False)(x)),
))

CONV_T_1D = Group({"x": ((2, 6, 3), "float32")}, (
    Case("1d_valid", 'nn.ConvTranspose(x, 2, 3, strides=2, padding="VALID")',
         lambda x: linen.ConvTranspose(2, (3,), strides=2, padding="VALID")(x)),
))

# ------------------------------------------------------------------ attention


def _causal_pad(pad: Any) -> Any:
    return linen.combine_masks(linen.make_causal_mask(pad), linen.make_attention_mask(pad, pad))


_ATTENTION_INPUTS = {"x": ((2, 5, 6), "float32"), "y": ((2, 7, 4), "float32"),
                     "pad": ((2, 5), "float32"), "kpad": ((2, 7), "float32")}

ATTENTION = Group(_ATTENTION_INPUTS, (
    Case("self", "nn.SelfAttention(x, 2)", lambda x, y, p, k: linen.SelfAttention(2)(x)),
    Case("self_features", "nn.SelfAttention(x, num_heads=2, qkv_features=8, out_features=3)",
         lambda x, y, p, k: linen.SelfAttention(2, qkv_features=8, out_features=3)(x)),
    Case("self_causal", "nn.SelfAttention(x, 3, causal_mask=True)",
         lambda x, y, p, k: linen.SelfAttention(3)(x, mask=linen.make_causal_mask(p))),
    Case("self_causal_padding", "nn.SelfAttention(x, 2, causal_mask=True, padding_mask=pad)",
         lambda x, y, p, k: linen.SelfAttention(2)(x, mask=_causal_pad(p))),
    Case("self_padding_trailing_1", "nn.SelfAttention(x, 2, padding_mask=pad[..., None])",
         lambda x, y, p, k: linen.SelfAttention(2)(x, mask=linen.make_attention_mask(p, p))),
    Case("mha_self_no_bias_deterministic",
         "nn.MultiHeadDotProductAttention(x, x, 2, bias=False, dropout_rate=0.5, "
         "deterministic=True)",
         lambda x, y, p, k: linen.MultiHeadDotProductAttention(
             2, use_bias=False, dropout_rate=0.5, deterministic=True)(x, x)),
    Case("cross", "nn.MultiHeadDotProductAttention(x, y, num_heads=2, qkv_features=4)",
         lambda x, y, p, k: linen.MultiHeadDotProductAttention(2, qkv_features=4)(x, y)),
    Case("cross_key_padding",
         "nn.MultiHeadDotProductAttention(x, y, 1, out_features=2, padding_mask=pad, "
         "key_padding_mask=kpad)",
         lambda x, y, p, k: linen.MultiHeadDotProductAttention(1, out_features=2)(
             x, y, mask=linen.make_attention_mask(p, k))),
    Case("cross_linen_mask", "nn.MultiHeadDotProductAttention(x, y, 2, "
         "mask=nn.make_attention_mask(pad, kpad))",
         lambda x, y, p, k: linen.MultiHeadDotProductAttention(2)(
             x, y, mask=linen.make_attention_mask(p, k))),
    Case("mask_of_lower_rank", "nn.SelfAttention(x, 2, mask=jnp.tril(jnp.ones((5, 5))))",
         lambda x, y, p, k: linen.SelfAttention(2)(x, mask=jnp.tril(jnp.ones((1, 1, 5, 5))))),
))

_FN_INPUTS = {"pad": ((2, 5), "float32"), "kpad": ((2, 7), "float32"),
              "q": ((2, 5, 2, 3), "float32"), "k": ((2, 7, 2, 3), "float32"),
              "v": ((2, 7, 2, 4), "float32"), "b": ((2, 2, 5, 7), "float32")}

FUNCTIONS = Group(_FN_INPUTS, (
    Case("make_causal_mask", "nn.make_causal_mask(pad)",
         lambda p, kp, q, k, v, b: linen.make_causal_mask(p)),
    Case("make_causal_mask_extra_bool",
         "nn.make_causal_mask(pad, extra_batch_dims=1, dtype=jnp.bool_)",
         lambda p, kp, q, k, v, b: linen.make_causal_mask(p, extra_batch_dims=1,
                                                          dtype=jnp.bool_)),
    Case("make_attention_mask", "nn.make_attention_mask(pad, kpad)",
         lambda p, kp, q, k, v, b: linen.make_attention_mask(p, kp)),
    Case("make_attention_mask_pairwise",
         "nn.make_attention_mask(pad, kpad, jnp.greater_equal, 2, jnp.int32)",
         lambda p, kp, q, k, v, b: linen.make_attention_mask(p, kp, jnp.greater_equal, 2,
                                                             jnp.int32)),
    Case("dot_product_attention", "nn.dot_product_attention(q, k, v)",
         lambda p, kp, q, k, v, b: linen.dot_product_attention(q, k, v)),
    Case("dot_product_attention_mask_bias",
         "nn.dot_product_attention(q, k, v, bias=b, mask=nn.make_attention_mask(pad, kpad))",
         lambda p, kp, q, k, v, b: linen.dot_product_attention(
             q, k, v, bias=b, mask=linen.make_attention_mask(p, kp))),
))

# ------------------------------------------------------------------ recurrent cells

_RNN_INPUTS = {"c": ((2, 8), "float32"), "h": ((2, 8), "float32"), "x": ((2, 5), "float32")}

CELLS = Group(_RNN_INPUTS, (
    Case("lstm", "nn.LSTMCell((c, h), x)", lambda c, h, x: linen.LSTMCell(8)((c, h), x)),
    Case("lstm_features_relu", "nn.LSTMCell((c, h), x, features=8, activation_fn=nn.relu)",
         lambda c, h, x: linen.LSTMCell(8, activation_fn=linen.relu)((c, h), x)),
    Case("gru", "nn.GRUCell(h, x)", lambda c, h, x: linen.GRUCell(8)(h, x)),
    Case("gru_zero_carry", "nn.GRUCell(nn.GRUCell.initialize_carry(None, (2,), 8), x)",
         lambda c, h, x: linen.GRUCell(8)(jnp.zeros((2, 8)), x)),
))

CONV_LSTM = Group({"c": ((2, 6, 6, 4), "float32"), "h": ((2, 6, 6, 4), "float32"),
                   "x": ((2, 6, 6, 3), "float32")}, (
    Case("conv_lstm", "nn.ConvLSTM((c, h), x, 4, (3, 3))",
         lambda c, h, x: linen.ConvLSTMCell(4, (3, 3))((c, h), x)),
    Case("conv_lstm_cell_no_bias", "nn.ConvLSTMCell((c, h), x, 4, (1, 3), bias=False)",
         lambda c, h, x: linen.ConvLSTMCell(4, (1, 3), use_bias=False)((c, h), x)),
))

GROUPS = {"dense_general": DENSE, "conv_transpose": CONV_T, "conv_transpose_1d": CONV_T_1D,
          "attention": ATTENTION, "functions": FUNCTIONS, "cells": CELLS,
          "conv_lstm": CONV_LSTM}
CASES = [(g, c) for g, group in GROUPS.items() for c in group.cases]

#: The table entries this file compares with Linen (for coverage checks elsewhere).
COVERED = {"nn.DenseGeneral", "nn.ConvTranspose", "nn.MultiHeadDotProductAttention",
           "nn.SelfAttention", "nn.dot_product_attention", "nn.make_causal_mask",
           "nn.make_attention_mask", "nn.LSTMCell", "nn.GRUCell", "nn.ConvLSTM",
           "nn.ConvLSTMCell", "nn.GRUCell.initialize_carry", "nn.LSTMCell.initialize_carry"}


@pytest.fixture(scope="module")
def runs() -> dict[str, Run]:
    return {}


def _group_run(runs: dict[str, Run], name: str) -> Run:
    if name not in runs:
        runs[name] = _run(GROUPS[name])
    return runs[name]


@pytest.mark.parametrize("group", list(GROUPS))
def test_parameter_trees_equal_linen(runs: dict[str, Run], group: str) -> None:
    run = _group_run(runs, group)
    assert run.params_tree == run.linen_tree


@pytest.mark.parametrize("group,case", CASES, ids=[f"{g}-{c.id}" for g, c in CASES])
def test_outputs_equal_linen(runs: dict[str, Run], group: str, case: Case) -> None:
    _check(_group_run(runs, group), GROUPS[group], case)


# ------------------------------------------------------------------ attention dropout


def test_attention_dropout_equals_linen_with_the_folded_key() -> None:
    """Dropout draws from the target's rng folded with the layer's path, like Linen's
    `dropout_rng=` would with that key."""
    m = build("""
    class M(nn.Module):
        def apply(self, x):
            return nn.SelfAttention(x, 2, dropout_rate=0.4, broadcast_dropout=False)

    aot.target("t", M, x=aot.f32[2, 5, 4])
    """)
    x = np.random.default_rng(0).standard_normal((2, 5, 4)).astype(np.float32)
    layer = linen.SelfAttention(2, dropout_rate=0.4, broadcast_dropout=False,
                                deterministic=False)
    params = _randomized(jax.eval_shape(layer.init, {"params": jax.random.key(0),
                                                     "dropout": jax.random.key(1)}, x)["params"],
                         seed=2)
    key = jax.random.key(7)
    apply = jax.jit(m.t.apply_fn)
    got, _ = apply({"SelfAttention_0": params}, {}, x, rng=key)
    want = jax.jit(layer.apply)({"params": params}, x, dropout_rng=jax.random.fold_in(
        key, scope_hash("SelfAttention_0")))
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL)
    other, _ = apply({"SelfAttention_0": params}, {}, x, rng=jax.random.key(8))
    assert not np.allclose(got, other)


# ------------------------------------------------------------------ decoding


@pytest.fixture(scope="module")
def decoder() -> Any:
    return build("""
    class Decoder(nn.Module):
        def apply(self, x, decode=False, max_length=None):
            return nn.SelfAttention(x, 2, qkv_features=6, causal_mask=True, decode=decode,
                                    max_length=max_length)

    aot.target("full", Decoder, x=aot.f32[2, 6, 4])
    aot.target("prefill", Decoder.partial(decode=True, max_length=6), x=aot.f32[2, 4, 4])
    aot.target("step", Decoder.partial(decode=True, max_length=6), x=aot.f32[2, 1, 4])
    """)


def test_decode_cache_is_linens(decoder: Any) -> None:
    x = np.zeros((2, 6, 4), np.float32)
    cache = jax.eval_shape(linen.SelfAttention(2, qkv_features=6, decode=True).init,
                           jax.random.key(0), x)["cache"]
    want = {"cache": {"SelfAttention_0": _tree(cache)}}
    assert _tree(decoder.step.STATE_SHAPES) == want
    assert _tree(decoder.prefill.STATE_SHAPES) == want
    params, state = decoder.step.init(jax.random.key(0))
    assert _tree(state) == want
    assert int(state["cache"]["SelfAttention_0"]["cache_index"]) == 0


def test_step_by_step_decoding_equals_full_causal_attention(decoder: Any) -> None:
    x = np.random.default_rng(3).standard_normal((2, 6, 4)).astype(np.float32)
    layer = linen.SelfAttention(2, qkv_features=6, decode=True)
    variables = jax.eval_shape(layer.init, jax.random.key(0), x)
    params = _randomized(variables["params"], seed=4)
    tree = {"SelfAttention_0": params}
    full, _ = decoder.full.apply(tree, {}, x)
    _, state = decoder.step.init(jax.random.key(0))
    cache = jax.tree_util.tree_map(lambda a: jnp.zeros(a.shape, a.dtype), variables["cache"])
    step = jax.jit(decoder.step.apply_fn)
    linen_step = jax.jit(functools.partial(layer.apply, mutable=["cache"]))
    steps, linen_steps = [], []
    for t in range(6):
        y, state = step(tree, state, x[:, t:t + 1])
        want, mutated = linen_step({"params": params, "cache": cache}, x[:, t:t + 1])
        cache = mutated["cache"]
        np.testing.assert_allclose(y, want, rtol=RTOL, atol=ATOL)  # Linen's decode step
        steps.append(y)
        linen_steps.append(want)
    assert int(state["cache"]["SelfAttention_0"]["cache_index"]) == 6
    np.testing.assert_allclose(np.concatenate(steps, axis=1), full, rtol=RTOL, atol=ATOL)
    for ours, theirs in zip(jax.tree_util.tree_leaves(state["cache"]["SelfAttention_0"]),
                            jax.tree_util.tree_leaves(cache)):
        np.testing.assert_allclose(ours, theirs, rtol=RTOL, atol=ATOL)


def test_prefill_then_steps_equals_full(decoder: Any) -> None:
    x = np.random.default_rng(5).standard_normal((2, 6, 4)).astype(np.float32)
    params, state = decoder.full.init(jax.random.key(1))
    full, _ = decoder.full.apply(params, {}, x)
    _, state = decoder.prefill.init(jax.random.key(1))
    first, state = decoder.prefill.apply(params, state, x[:, :4])
    outs = [first]
    for t in (4, 5):
        y, state = decoder.step.apply(params, state, x[:, t:t + 1])
        outs.append(y)
    np.testing.assert_allclose(np.concatenate(outs, axis=1), full, rtol=RTOL, atol=ATOL)


# ------------------------------------------------------------------ an unrolled LSTM


class LinenEncoder(linen.Module):
    @linen.compact
    def __call__(self, xs):
        cell = linen.LSTMCell(8, name="lstm")
        carry = cell.initialize_carry(jax.random.key(0), xs[:, 0].shape)
        ys = []
        for t in range(xs.shape[1]):
            carry, y = cell(carry, xs[:, t])
            ys.append(y)
        return jnp.stack(ys, axis=1), carry


def test_unrolled_shared_lstm_equals_linen() -> None:
    m = build("""
    class Encoder(nn.Module):
        def apply(self, xs, hidden=8):
            cell = nn.LSTMCell.shared(name="lstm")
            carry = nn.LSTMCell.initialize_carry(None, (xs.shape[0],), hidden)
            ys = []
            for t in range(xs.shape[1]):
                carry, y = cell(carry, xs[:, t])
                ys.append(y)
            return jnp.stack(ys, axis=1), carry

    aot.target("t", Encoder, xs=aot.f32[2, 4, 5])
    """)
    xs = np.random.default_rng(6).standard_normal((2, 4, 5)).astype(np.float32)
    variables = jax.eval_shape(LinenEncoder().init, jax.random.key(1), xs)
    params = _randomized(variables["params"], seed=7)
    shapes, _ = jax.eval_shape(m.t.init_fn, jax.random.key(0))
    assert _tree(shapes) == _tree(variables["params"])
    (ys, (c, h)), _ = m.t.apply(params, {}, xs)
    want_ys, (want_c, want_h) = LinenEncoder().apply({"params": params}, xs)
    for got, want in ((ys, want_ys), (c, want_c), (h, want_h)):
        np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL)


# ------------------------------------------------------------------ errors


@pytest.mark.parametrize("body,message", [
    ("nn.SelfAttention(x, 3)", "qkv_features=4 must be divisible by num_heads=3"),
    ("nn.MultiHeadDotProductAttention(x, x[:, :2], 2, causal_mask=True)",
     "causal_mask needs queries and keys of one length"),
    ("nn.SelfAttention(x, 2, decode=True, max_length=2)", "max_length=2 is shorter"),
    ("nn.SelfAttention(x, 2, padding_mask=x)", "padding_mask must have shape (2, 3)"),
    ("nn.LSTMCell(x, x)", "carry must be a tuple (c, h) of arrays"),
    ("nn.LSTMCell((x[0], x[0]), x[0], features=5)", "features=5 but the carry has 4"),
    ("nn.DenseGeneral(x, 3, axis=1, batch_dims=(1,))", "must be consecutive leading"),
])
def test_located_errors(body: str, message: str) -> None:
    text = build_errors(f"""
    class M(nn.Module):
        def apply(self, x):
            return {body}

    aot.target("t", M, x=aot.f32[2, 3, 4])
    """)
    assert message in text and ":8:" in text, text


def test_precision_reaches_xla() -> None:
    # flax.nn code passes `precision=lax.Precision.HIGHEST` (on TPU the default multiplies
    # float32 in bfloat16 passes); every layer and function taking it must pass it on
    m = build("""
    from jax import lax

    class Net(nn.Module):
        def apply(self, x):
            a = nn.Dense(x, 4, precision=lax.Precision.HIGHEST)
            b = nn.Conv(x[:, None], 4, (1,), precision=jax.lax.Precision.HIGHEST)
            c = nn.DenseGeneral(x, (2, 2), precision="highest")
            d = jnp.einsum("ij,kj->ik", x, x, precision=lax.Precision.HIGHEST)
            e = nn.Dense(x, 4)
            return a, b, c, d, e

    aot.target("t", Net, x=aot.f32[2, 3])
    """)
    params, state = m.t.init(jax.random.key(0))
    x = jnp.ones((2, 3), jnp.float32)
    text = jax.jit(m.t.apply).lower(params, state, x).as_text()
    products = [line for line in text.splitlines()
                if "stablehlo.dot_general" in line or "stablehlo.convolution" in line]
    assert len(products) == 5
    highest = [line for line in products if "HIGHEST" in line]
    assert len(highest) == 4  # all but the Dense that says nothing
    (a, b, c, d, e), _ = m.t.apply(params, state, x)
    want = x @ params["Dense_0"]["kernel"] + params["Dense_0"]["bias"][None]
    np.testing.assert_allclose(a, want, rtol=1e-6)
