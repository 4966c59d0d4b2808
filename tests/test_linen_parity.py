"""Generated code against Flax Linen: parameter trees and outputs.

For every built-in layer with parameters, every parameter-free function we
sample, and every model in `models/`, the DSL is built through the real
pipeline and compared with the equivalent Linen module (or JAX function):

(a) the generated `init` gives exactly Linen's parameter tree (names, shapes,
    dtypes), so a Linen checkpoint loads unchanged;
(b) the generated `apply`, fed Linen's initialized parameters, computes Linen's
    output (float32: rtol 1e-5).

A coverage test fails when a layer of the operation table has no case here.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import flax
import flax.linen as linen
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import build, build_errors

from aotflax.ops import REGISTRY

RTOL, ATOL = 1e-5, 1e-6

pytestmark = pytest.mark.filterwarnings("ignore:SelfAttention will be deprecated")
SPEC = {"float32": "f32", "int32": "i32"}


@dataclass(frozen=True)
class Case:
    """One DSL snippet computing from `x` and its Linen (or plain JAX) equivalent."""

    id: str
    #: Body of `apply(self, x)`: statements, then the returned expression on the last line.
    dsl: str
    shape: tuple[int, ...]
    #: Linen code run inside a compact wrapper (so its layer is auto-named `Conv_0`
    #: like the DSL's): x -> y. None for a parameter-free function.
    linen: Callable[[Any], Any] | None = None
    #: The reference for a parameter-free function: x -> y.
    ref: Callable[[Any], Any] | None = None
    dtype: str = "float32"
    #: Upper bound (exclusive) for integer inputs.
    high: int = 10
    #: The operation-table entry covered, when it is not the first call of `dsl`.
    entry: str | None = None

    @property
    def covers(self) -> str:
        """Qualified table name this case covers (`nn.Conv(...)` -> `nn.Conv`)."""
        return self.entry or self.dsl.split("(", 1)[0]


def _source(case: Case) -> str:
    *stmts, result = case.dsl.split("\n")
    body = "".join(f"        {line}\n" for line in [*stmts, f"return {result}"])
    dims = ", ".join(map(str, case.shape))
    return (f"class Case(nn.Module):\n    def apply(self, x):\n{body}\n\n"
            f'aot.target("case", Case, x=aot.{SPEC[case.dtype]}[{dims}])\n')


def _input(case: Case) -> np.ndarray:
    rng = np.random.default_rng(sum(map(ord, case.id)))
    if case.dtype.startswith("int"):
        return rng.integers(0, case.high, case.shape).astype(case.dtype)
    return rng.standard_normal(case.shape).astype(case.dtype)


def _wrapped(fn: Callable[[Any], Any]) -> linen.Module:
    """A Linen parent running `fn` inline, so Linen names its layer `Class_0`."""

    class Wrap(linen.Module):
        @linen.compact
        def __call__(self, x):
            return fn(x)

    return Wrap()


def _cat(result: Any) -> Any:
    """A cell's `(carry, y)` as one array, the way the DSL cases return it."""
    return jnp.concatenate(jax.tree_util.tree_leaves(result), axis=-1)


def _tree(tree: Any) -> Any:
    """Names, shapes and dtypes of a parameter tree (values dropped)."""
    return jax.tree_util.tree_map(lambda a: (tuple(a.shape), str(a.dtype)), _plain(tree))


def _plain(tree: Any) -> Any:
    """Linen may hand back FrozenDicts; compare as plain dicts."""
    if hasattr(tree, "items"):
        return {k: _plain(v) for k, v in tree.items()}
    return tree


def _random_like(tree: Any, seed: int, low: float | None = None) -> Any:
    """Random values in Linen's tree: unlike zeros and ones, a misplaced bias or scale shows.

    With `low`, values are uniform in [low, low + 1) (running variances stay positive).
    """
    rng = np.random.default_rng(seed)

    def fill(a: Any) -> np.ndarray:
        v = rng.standard_normal(a.shape) if low is None else low + rng.random(a.shape)
        return jnp.asarray(v, a.dtype)

    return jax.tree_util.tree_map(fill, _plain(tree))


# ------------------------------------------------------------------ layers

LAYERS = [
    # Dense
    Case("dense", "nn.Dense(x, 5)", (2, 6), linen=lambda x: linen.Dense(5)(x)),
    Case("dense_no_bias", "nn.Dense(x, 5, bias=False)", (2, 6),
         linen=lambda x: linen.Dense(5, use_bias=False)(x)),
    Case("dense_3d", "nn.Dense(x, 4)", (2, 3, 6), linen=lambda x: linen.Dense(4)(x)),
    Case("dense_bf16_params", "nn.Dense(x, 4, param_dtype=jnp.bfloat16)", (2, 6),
         linen=lambda x: linen.Dense(4, param_dtype=jnp.bfloat16)(x)),
    # Conv 2-D
    Case("conv_same", "nn.Conv(x, 4, (3, 3))", (2, 8, 8, 3),
         linen=lambda x: linen.Conv(4, (3, 3))(x)),
    Case("conv_valid_strided", 'nn.Conv(x, 4, (3, 3), strides=(2, 2), padding="VALID")',
         (2, 9, 9, 3), linen=lambda x: linen.Conv(4, (3, 3), strides=(2, 2), padding="VALID")(x)),
    Case("conv_same_strided", "nn.Conv(x, 4, (3, 3), strides=2)", (2, 9, 9, 3),
         linen=lambda x: linen.Conv(4, (3, 3), strides=2)(x)),
    Case("conv_explicit_padding", "nn.Conv(x, 4, (3, 2), padding=((1, 2), (0, 1)))",
         (2, 8, 7, 3), linen=lambda x: linen.Conv(4, (3, 2), padding=((1, 2), (0, 1)))(x)),
    Case("conv_int_padding", "nn.Conv(x, 4, (3, 3), padding=2)", (2, 6, 6, 3),
         linen=lambda x: linen.Conv(4, (3, 3), padding=2)(x)),
    Case("conv_kernel_dilation", "nn.Conv(x, 4, (3, 3), kernel_dilation=(2, 1))",
         (2, 9, 8, 3), linen=lambda x: linen.Conv(4, (3, 3), kernel_dilation=(2, 1))(x)),
    # lax (and so Linen) takes only explicit padding with input dilation
    Case("conv_input_dilation", "nn.Conv(x, 4, (2, 2), input_dilation=2, padding=1)",
         (2, 5, 5, 3), linen=lambda x: linen.Conv(4, (2, 2), input_dilation=2, padding=1)(x)),
    Case("conv_groups", "nn.Conv(x, 6, (3, 3), feature_group_count=3)", (2, 6, 6, 6),
         linen=lambda x: linen.Conv(6, (3, 3), feature_group_count=3)(x)),
    Case("conv_depthwise", "nn.Conv(x, 8, (3, 3), feature_group_count=4, bias=False)",
         (2, 6, 6, 4),
         linen=lambda x: linen.Conv(8, (3, 3), feature_group_count=4, use_bias=False)(x)),
    Case("conv_no_bias", "nn.Conv(x, 4, (1, 1), bias=False)", (2, 5, 5, 3),
         linen=lambda x: linen.Conv(4, (1, 1), use_bias=False)(x)),
    # Conv 1-D and 3-D
    Case("conv1d", "nn.Conv(x, 4, (3,))", (2, 10, 3), linen=lambda x: linen.Conv(4, (3,))(x)),
    Case("conv1d_int_kernel", 'nn.Conv(x, 4, 3, strides=2, padding="VALID")', (2, 11, 3),
         linen=lambda x: linen.Conv(4, (3,), strides=2, padding="VALID")(x)),
    Case("conv1d_dilated", "nn.Conv(x, 4, (3,), kernel_dilation=3, padding=((2, 1),))",
         (2, 12, 3), linen=lambda x: linen.Conv(4, (3,), kernel_dilation=3,
                                              padding=((2, 1),))(x)),
    Case("conv3d", "nn.Conv(x, 3, (2, 2, 2), strides=(1, 2, 1))", (1, 4, 4, 4, 2),
         linen=lambda x: linen.Conv(3, (2, 2, 2), strides=(1, 2, 1))(x)),
    # Embed
    Case("embed", "nn.Embed(x, 10, 4)", (2, 5), dtype="int32",
         linen=lambda x: linen.Embed(10, 4)(x)),
    Case("embed_3d_ids", "nn.Embed(x, 7, 3)", (2, 3, 2), dtype="int32", high=7,
         linen=lambda x: linen.Embed(7, 3)(x)),
    # LayerNorm
    Case("layer_norm", "nn.LayerNorm(x)", (2, 3, 6), linen=lambda x: linen.LayerNorm()(x)),
    Case("layer_norm_eps", "nn.LayerNorm(x, epsilon=1e-3)", (4, 6),
         linen=lambda x: linen.LayerNorm(epsilon=1e-3)(x)),
    Case("layer_norm_no_bias", "nn.LayerNorm(x, bias=False)", (2, 6),
         linen=lambda x: linen.LayerNorm(use_bias=False)(x)),
    Case("layer_norm_no_scale", "nn.LayerNorm(x, scale=False)", (2, 6),
         linen=lambda x: linen.LayerNorm(use_scale=False)(x)),
    Case("layer_norm_bare", "nn.LayerNorm(x, bias=False, scale=False)", (2, 6),
         linen=lambda x: linen.LayerNorm(use_bias=False, use_scale=False)(x)),
    # BatchNorm: parameters, batch_stats and their update
    Case("batch_norm_train", "nn.BatchNorm(x)", (4, 3, 3, 5),
         linen=lambda x: linen.BatchNorm(use_running_average=False)(x)),
    Case("batch_norm_eval", "nn.BatchNorm(x, use_running_average=True)", (4, 5),
         linen=lambda x: linen.BatchNorm(use_running_average=True)(x)),
    Case("batch_norm_options", "nn.BatchNorm(x, momentum=0.9, epsilon=1e-3, scale=False)",
         (6, 5), linen=lambda x: linen.BatchNorm(use_running_average=False, momentum=0.9,
                                                 epsilon=1e-3, use_scale=False)(x)),
    # GroupNorm, RMSNorm
    Case("group_norm", "nn.GroupNorm(x, num_groups=2)", (2, 3, 3, 6),
         linen=lambda x: linen.GroupNorm(num_groups=2)(x)),
    Case("group_norm_size", "nn.GroupNorm(x, num_groups=None, group_size=3, bias=False)",
         (2, 4, 6), linen=lambda x: linen.GroupNorm(num_groups=None, group_size=3,
                                                    use_bias=False)(x)),
    Case("rms_norm", "nn.RMSNorm(x)", (2, 3, 6), linen=lambda x: linen.RMSNorm()(x)),
    Case("rms_norm_eps_no_scale", "nn.RMSNorm(x, epsilon=1e-3, scale=False)", (2, 6),
         linen=lambda x: linen.RMSNorm(epsilon=1e-3, use_scale=False)(x)),
    # Embed.attend on a shared embedding (weight tying)
    Case("embed_attend",
         'embed = nn.Embed.shared(num_embeddings=10, features=4, name="embed")\n'
         "embed.attend(x)", (2, 3, 4), entry="nn.Embed.attend",
         linen=lambda x: linen.Embed(10, 4, name="embed").attend(x)),
    # DenseGeneral
    Case("dense_general_features", "nn.DenseGeneral(x, (2, 3))", (2, 4, 5),
         linen=lambda x: linen.DenseGeneral((2, 3))(x)),
    Case("dense_general_axes", "nn.DenseGeneral(x, 6, axis=(-2, -1), bias=False)", (2, 3, 4),
         linen=lambda x: linen.DenseGeneral(6, axis=(-2, -1), use_bias=False)(x)),
    Case("dense_general_batch_dims", "nn.DenseGeneral(x, 3, axis=-1, batch_dims=(0,))",
         (2, 4, 5), linen=lambda x: linen.DenseGeneral(3, axis=-1, batch_dims=(0,))(x)),
    # ConvTranspose
    Case("conv_transpose", "nn.ConvTranspose(x, 4, (3, 3), strides=(2, 2))", (2, 5, 5, 3),
         linen=lambda x: linen.ConvTranspose(4, (3, 3), strides=(2, 2))(x)),
    Case("conv_transpose_valid",
         'nn.ConvTranspose(x, 4, (2, 2), strides=(2, 1), padding="VALID", bias=False)',
         (2, 4, 4, 3), linen=lambda x: linen.ConvTranspose(4, (2, 2), strides=(2, 1),
                                                           padding="VALID",
                                                           use_bias=False)(x)),
    Case("conv_transpose_1d_dilated", "nn.ConvTranspose(x, 2, (3,), kernel_dilation=(2,))",
         (2, 6, 3), linen=lambda x: linen.ConvTranspose(2, (3,), kernel_dilation=(2,))(x)),
    Case("conv_transpose_kernel", "nn.ConvTranspose(x, 4, (3, 3), transpose_kernel=True)",
         (2, 4, 4, 3), linen=lambda x: linen.ConvTranspose(4, (3, 3),
                                                           transpose_kernel=True)(x)),
    # attention (no dropout: Linen's dropout keys differ by design)
    Case("mha", "nn.MultiHeadDotProductAttention(x, x, num_heads=2)", (2, 3, 4),
         linen=lambda x: linen.MultiHeadDotProductAttention(num_heads=2)(x, x)),
    Case("mha_features", "nn.MultiHeadDotProductAttention(x, x, num_heads=2, qkv_features=8, "
         "out_features=5, bias=False)", (2, 3, 4),
         linen=lambda x: linen.MultiHeadDotProductAttention(
             num_heads=2, qkv_features=8, out_features=5, use_bias=False)(x, x)),
    Case("mha_causal", "nn.MultiHeadDotProductAttention(x, x, num_heads=1, causal_mask=True)",
         (2, 4, 4), linen=lambda x: linen.MultiHeadDotProductAttention(num_heads=1)(
             x, x, mask=linen.make_causal_mask(x[..., 0]))),
    Case("self_attention", "nn.SelfAttention(x, num_heads=2, qkv_features=8)", (2, 3, 4),
         linen=lambda x: linen.SelfAttention(num_heads=2, qkv_features=8)(x)),
    # dropout: only its deterministic path can equal Linen's (random keys differ by design)
    Case("dropout_deterministic", "nn.dropout(x, 0.5, deterministic=True)", (2, 6),
         linen=lambda x: linen.Dropout(0.5, deterministic=True)(x)),
    # recurrent cells: one step from a carry made of x (so it is not all zeros)
    Case("lstm_cell",
         "(c, h), y = nn.LSTMCell((jnp.tanh(x), 0.5 * x), x)\n"
         "jnp.concatenate([c, h, y], axis=-1)", (2, 4), entry="nn.LSTMCell",
         linen=lambda x: _cat(linen.LSTMCell(4)((jnp.tanh(x), 0.5 * x), x))),
    Case("gru_cell",
         "h, y = nn.GRUCell(jnp.tanh(x), x)\njnp.concatenate([h, y], axis=-1)", (2, 4),
         entry="nn.GRUCell", linen=lambda x: _cat(linen.GRUCell(4)(jnp.tanh(x), x))),
    *[Case(f"conv_lstm_{name}",
           f"(c, h), y = nn.{name}((jnp.tanh(x[..., :2]), x[..., 1:]), x, 2, (3, 3))\n"
           "jnp.concatenate([c, h, y], axis=-1)", (2, 4, 4, 3), entry=f"nn.{name}",
           linen=lambda x: _cat(linen.ConvLSTMCell(2, (3, 3))(
               (jnp.tanh(x[..., :2]), x[..., 1:]), x)))
      for name in ("ConvLSTM", "ConvLSTMCell")],
]

#: Layers of the table no Linen comparison can cover, and why.
NOT_COMPARABLE = {
    "nn.make_rng": "returns a random key; aotflax folds keys by module path, Linen by call",
}


@functools.cache
def _built(case: Case) -> Any:
    return build(_source(case))


@dataclass(frozen=True)
class LinenRun:
    """A Linen layer case run once: its variable shapes, the inputs fed to both sides and
    Linen's results."""

    shapes: dict
    params: dict
    state: dict
    output: Any
    new_state: dict


@functools.cache
def _linen_layer(case: Case) -> LinenRun:
    model, x = _wrapped(case.linen), _input(case)
    shapes = _plain(jax.eval_shape(model.init, jax.random.key(0), x))
    params = _random_like(shapes.get("params", {}), seed=1)
    state = {c: _random_like(v, seed=2, low=0.5) for c, v in shapes.items() if c != "params"}
    variables = {"params": params, **state}
    if state:
        y, new_state = jax.jit(functools.partial(model.apply, mutable=list(state)))(variables, x)
    else:
        y, new_state = jax.jit(model.apply)(variables, x), {}
    return LinenRun(shapes, params, state, y, _plain(new_state))


@pytest.mark.parametrize("case", LAYERS, ids=lambda c: c.id)
def test_layer_init_matches_linen_tree(case: Case) -> None:
    m, run = _built(case), _linen_layer(case)
    params, state = jax.eval_shape(m.case.init_fn, jax.random.key(0))
    linen_state = {c: v for c, v in run.shapes.items() if c != "params"}
    assert _tree(params) == _tree(run.shapes.get("params", {}))
    assert _tree(state) == _tree(linen_state)
    assert _tree(m.case.PARAM_SHAPES) == _tree(params)
    assert _tree(m.case.STATE_SHAPES) == _tree(state)


@pytest.mark.parametrize("case", LAYERS, ids=lambda c: c.id)
def test_layer_apply_matches_linen(case: Case) -> None:
    m, run = _built(case), _linen_layer(case)
    got, new_state = jax.jit(m.case.apply_fn)(run.params, run.state, _input(case))
    assert (got.shape, got.dtype) == (run.output.shape, run.output.dtype)
    np.testing.assert_allclose(got, run.output, rtol=RTOL, atol=ATOL)
    assert _tree(new_state) == _tree(run.new_state)
    for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(new_state),
                            jax.tree_util.tree_leaves(run.new_state)):
        np.testing.assert_allclose(a, b, rtol=RTOL, atol=ATOL, err_msg=str(path))


def test_every_layer_has_a_parity_case() -> None:
    """Every layer of the operation table appears above (Haiku's descriptors idea)."""
    layers = {f"{ns}.{e.name}" for e in REGISTRY.unique() if e.kind == "layer"
              for ns in e.namespaces}
    missing = sorted(layers - {c.covers for c in LAYERS} - set(NOT_COMPARABLE))
    assert not missing, f"add Linen parity cases to LAYERS for: {', '.join(missing)}"


# ------------------------------------------------------------------ functions

_POOL = (2, 8, 8, 3)

FUNCTIONS = [
    # pooling (flax.linen's functions are the reference)
    Case("max_pool", "nn.max_pool(x, (2, 2), strides=(2, 2))", _POOL,
         ref=lambda x: linen.max_pool(x, (2, 2), strides=(2, 2))),
    Case("max_pool_same", 'nn.max_pool(x, (3, 3), padding="SAME")', _POOL,
         ref=lambda x: linen.max_pool(x, (3, 3), padding="SAME")),
    Case("max_pool_1d", "nn.max_pool(x, (3,), strides=(2,))", (2, 9, 3),
         ref=lambda x: linen.max_pool(x, (3,), strides=(2,))),
    Case("avg_pool", "nn.avg_pool(x, (2, 2), strides=(2, 2))", _POOL,
         ref=lambda x: linen.avg_pool(x, (2, 2), strides=(2, 2))),
    Case("avg_pool_overlap", "nn.avg_pool(x, (3, 3), strides=(1, 2))", _POOL,
         ref=lambda x: linen.avg_pool(x, (3, 3), strides=(1, 2))),
    Case("avg_pool_same", 'nn.avg_pool(x, (3, 3), padding="SAME")', _POOL,
         ref=lambda x: linen.avg_pool(x, (3, 3), padding="SAME")),
    Case("avg_pool_explicit", "nn.avg_pool(x, (2, 2), padding=((1, 0), (0, 1)))", _POOL,
         ref=lambda x: linen.avg_pool(x, (2, 2), padding=((1, 0), (0, 1)))),
    Case("avg_pool_same_exclude_pad",
         'nn.avg_pool(x, (3, 3), padding="SAME", count_include_pad=False)', _POOL,
         ref=lambda x: linen.avg_pool(x, (3, 3), padding="SAME", count_include_pad=False)),
    # activations (flax.linen re-exports jax.nn)
    *[Case(f"act_{name}", f"nn.{name}(x)", (2, 6), ref=getattr(linen, name))
      for name in ("relu", "gelu", "elu", "celu", "selu", "sigmoid", "silu", "swish",
                   "softplus", "log_sigmoid", "soft_sign", "relu6", "hard_tanh", "glu",
                   "softmax", "log_softmax", "tanh")],
    Case("act_gelu_exact", "nn.gelu(x, approximate=False)", (2, 6),
         ref=lambda x: linen.gelu(x, approximate=False)),
    Case("act_leaky_relu", "nn.leaky_relu(x, negative_slope=0.2)", (2, 6),
         ref=lambda x: linen.leaky_relu(x, negative_slope=0.2)),
    Case("act_softmax_axis0", "jax.nn.softmax(x, axis=0)", (3, 4),
         ref=lambda x: jax.nn.softmax(x, axis=0)),
    Case("act_standardize", "jax.nn.standardize(x, axis=-1)", (3, 4),
         ref=lambda x: jax.nn.standardize(x, axis=-1)),
    # jnp / lax functions and array methods
    Case("jnp_mean_axes", "jnp.mean(x, axis=(1, 2))", _POOL,
         ref=lambda x: jnp.mean(x, axis=(1, 2))),
    Case("jnp_sum_keepdims", "jnp.sum(x, axis=-1, keepdims=True)", (2, 3, 4),
         ref=lambda x: jnp.sum(x, axis=-1, keepdims=True)),
    Case("jnp_max", "jnp.max(x, axis=0)", (3, 4), ref=lambda x: jnp.max(x, axis=0)),
    Case("jnp_var", "x.var(axis=1)", (3, 4), ref=lambda x: x.var(axis=1)),
    Case("jnp_concatenate", "jnp.concatenate([x, 2 * x], axis=-1)", (2, 3),
         ref=lambda x: jnp.concatenate([x, 2 * x], axis=-1)),
    Case("jnp_stack", "jnp.stack([x, x + 1.0], axis=1)", (2, 3),
         ref=lambda x: jnp.stack([x, x + 1.0], axis=1)),
    Case("jnp_einsum", 'jnp.einsum("bij,bjk->bik", x, x)', (2, 3, 3),
         ref=lambda x: jnp.einsum("bij,bjk->bik", x, x)),
    Case("jnp_matmul_transpose", "jnp.matmul(x, x.T)", (3, 4), ref=lambda x: x @ x.T),
    Case("jnp_transpose", "x.transpose((0, 3, 1, 2))", _POOL,
         ref=lambda x: x.transpose((0, 3, 1, 2))),
    Case("jnp_reshape", "jnp.reshape(x, (x.shape[0], -1))", _POOL,
         ref=lambda x: x.reshape((x.shape[0], -1))),
    Case("jnp_where_clip", "jnp.clip(jnp.where(x > 0, x, 0.1 * x), -0.5, 0.5)", (2, 6),
         ref=lambda x: jnp.clip(jnp.where(x > 0, x, 0.1 * x), -0.5, 0.5)),
    Case("jnp_indexing", "x[:, 1:, ::2, -1]", _POOL, ref=lambda x: x[:, 1:, ::2, -1]),
    Case("jnp_expand_squeeze", "jnp.squeeze(jnp.expand_dims(x, 1), axis=2)", (2, 1, 3),
         ref=lambda x: jnp.squeeze(jnp.expand_dims(x, 1), axis=2)),
    Case("jnp_exp_log", "jnp.log1p(jnp.exp(x)) - jnp.sqrt(jnp.square(x) + 1.0)", (2, 6),
         ref=lambda x: jnp.log1p(jnp.exp(x)) - jnp.sqrt(jnp.square(x) + 1.0)),
    Case("jnp_one_hot", "jax.nn.one_hot(x, 5)", (2, 3), dtype="int32", high=5,
         ref=lambda x: jax.nn.one_hot(x, 5)),
    Case("lax_rsqrt", "jax.lax.rsqrt(jnp.abs(x) + 1.0)", (2, 6),
         ref=lambda x: jax.lax.rsqrt(jnp.abs(x) + 1.0)),
]


@pytest.mark.parametrize("case", FUNCTIONS, ids=lambda c: c.id)
def test_function_matches_reference(case: Case) -> None:
    m = _built(case)
    assert m.case.PARAM_SHAPES == {} and m.case.STATE_SHAPES == {}
    x = _input(case)
    got, _ = jax.jit(m.case.apply_fn)({}, {}, x)
    want = jax.jit(case.ref)(x)
    assert got.shape == want.shape and got.dtype == want.dtype
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL)


# ------------------------------------------------------------------ models/


class MLP(linen.Module):
    """Linen twin of models/mlp.py."""

    hidden: tuple[int, ...] = (128, 64)
    num_classes: int = 10

    @linen.compact
    def __call__(self, x):
        x = x.reshape((x.shape[0], -1))
        for i, h in enumerate(self.hidden):
            x = linen.relu(linen.Dense(h, name=f"hidden_{i}")(x))
        return linen.log_softmax(linen.Dense(self.num_classes)(x))


def small_normal(key, shape, dtype):
    return 0.01 * jax.random.normal(key, shape, dtype)


class Scale(linen.Module):
    @linen.compact
    def __call__(self, x):
        scale = self.param("scale", linen.initializers.ones, (x.shape[-1],))
        return x * scale.reshape((1,) * (x.ndim - 1) + (-1,))


class ConvBlock(linen.Module):
    features: int
    pool: str = "avg"

    @linen.compact
    def __call__(self, x):
        x = linen.relu(linen.Conv(self.features, (3, 3), padding="SAME", name="conv")(x))
        pool = linen.max_pool if self.pool == "max" else linen.avg_pool
        return pool(x, (2, 2), strides=(2, 2))


class TiedMLP(linen.Module):
    depth: int = 2

    @linen.compact
    def __call__(self, x):
        dense = linen.Dense(x.shape[-1], name="tied")
        for _ in range(self.depth):
            x = x + linen.relu(dense(x))
        return x


class CNN(linen.Module):
    """Linen twin of models/cnn.py."""

    widths: tuple[int, ...] = (32, 64)
    hidden: int = 128
    num_classes: int = 10

    @linen.compact
    def __call__(self, x):
        x = linen.relu(linen.Conv(self.widths[0], (3, 3), name="conv1")(x))
        x = linen.avg_pool(x, (2, 2), strides=(2, 2))
        for i, w in enumerate(self.widths[1:]):
            x = ConvBlock(w, pool="max", name=f"block{i + 1}")(x)
        x = Scale(name="scale")(x)
        x = x.reshape((x.shape[0], -1))
        x = linen.relu(linen.Dense(self.hidden, kernel_init=small_normal)(x))
        x = TiedMLP(depth=2)(x)
        return linen.log_softmax(linen.Dense(self.num_classes)(x))


MODELS = [("mlp", "mlp_b8", MLP), ("cnn", "cnn_b4", CNN)]


ZOO = Path(__file__).resolve().parent.parent / "models"


@functools.cache
def _zoo(module: str) -> Any:
    """The model file of models/, built by the compiler under test (not the committed
    generated/, whose freshness is test_golden's)."""
    return build((ZOO / f"{module}.py").read_text(), header=False)


@functools.cache
def _model(module: str, target: str, cls: type) -> tuple[Any, Any, np.ndarray]:
    """(generated target, Linen's variable shapes, input) for a model of models/."""
    t = _zoo(module).TARGETS[target]
    spec = t.INPUTS["x"]
    x = np.random.default_rng(0).standard_normal(spec.shape).astype(spec.dtype)
    return t, _plain(jax.eval_shape(cls().init, jax.random.key(1), x)), x


@pytest.mark.parametrize("module,target,cls", MODELS, ids=[m[0] for m in MODELS])
def test_model_init_matches_linen_tree(module: str, target: str, cls: type) -> None:
    t, shapes, _ = _model(module, target, cls)
    params, state = jax.eval_shape(t.init_fn, jax.random.key(0))  # traces every initializer
    assert _tree(params) == _tree(shapes["params"])
    assert state == {} and set(shapes) == {"params"}


@pytest.mark.parametrize("module,target,cls", MODELS, ids=[m[0] for m in MODELS])
def test_model_apply_matches_linen(module: str, target: str, cls: type) -> None:
    t, shapes, x = _model(module, target, cls)
    # small random weights keep activations (and the tolerance) in a sensible range
    params = jax.tree_util.tree_map(lambda a: a * 0.05, _random_like(shapes["params"], 3))
    got, new_state = jax.jit(t.apply_fn)(params, {}, x)
    want = jax.jit(cls().apply)({"params": params}, x)
    assert new_state == {} and (got.shape, got.dtype) == (want.shape, want.dtype)
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL)


# ------------------------------------------------------------------ naming


def test_explicit_names_do_not_advance_the_automatic_counter() -> None:
    """Linen numbers unnamed layers per class and skips nothing for explicit names: the
    trees (and, with the same parameters, the outputs) agree."""
    m = build("""
    class Inner(nn.Module):
        def apply(self, x):
            return nn.Dense(nn.Dense(x, 3, name="first"), 3)

    class Net(nn.Module):
        def apply(self, x):
            x = nn.Dense(x, 4, name="in")
            x = nn.Dense(x, 5)
            x = Inner(x, name="Inner_7")
            x = Inner(x)
            x = nn.Dense(x, 6, name="Dense_9")
            return nn.Dense(nn.LayerNorm(x, name="norm"), 2)

    aot.target("net", Net, x=aot.f32[2, 3])
    """)

    class Inner(linen.Module):
        @linen.compact
        def __call__(self, x):
            return linen.Dense(3)(linen.Dense(3, name="first")(x))

    class Net(linen.Module):
        @linen.compact
        def __call__(self, x):
            x = linen.Dense(4, name="in")(x)
            x = linen.Dense(5)(x)
            x = Inner(name="Inner_7")(x)
            x = Inner()(x)
            x = linen.Dense(6, name="Dense_9")(x)
            return linen.Dense(2)(linen.LayerNorm(name="norm")(x))

    x = np.random.default_rng(0).standard_normal((2, 3)).astype(np.float32)
    shapes = jax.eval_shape(Net().init, jax.random.key(0), x)["params"]
    params, _ = jax.eval_shape(m.net.init_fn, jax.random.key(0))
    assert _tree(params) == _tree(shapes)
    assert set(params) == {"in", "Dense_0", "Inner_7", "Inner_0", "Dense_9", "norm", "Dense_1"}
    values = _random_like(shapes, 4)
    got, _ = jax.jit(m.net.apply_fn)(values, {}, x)
    np.testing.assert_allclose(got, Net().apply({"params": values}, x), rtol=RTOL, atol=ATOL)


def test_an_automatic_name_taken_by_an_explicit_one_is_an_error_as_in_linen() -> None:
    class Net(linen.Module):
        @linen.compact
        def __call__(self, x):
            return linen.Dense(3)(linen.Dense(3, name="Dense_0")(x))

    with pytest.raises(flax.errors.NameInUseError):
        Net().init(jax.random.key(0), np.zeros((1, 2), np.float32))
    errors = build_errors("""
    class Net(nn.Module):
        def apply(self, x):
            return nn.Dense(nn.Dense(x, 3, name="Dense_0"), 3)

    aot.target("net", Net, x=aot.f32[1, 2])
    """)
    assert "error[AOT311]: this Dense is named 'Dense_0' automatically (Linen's per-class " \
        "numbering), but a submodule of Net already has that name" in errors
    assert "note: first used here" in errors and 'name="Dense_0"' in errors
