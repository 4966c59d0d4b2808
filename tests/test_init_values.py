"""Initial values against Flax Linen: every `nn.initializers` entry and every layer default.

Our `init` draws each leaf with its own key, `jax.random.fold_in(rng, crc32(path) &
0x7fffffff)`, where `path` is the leaf's '/'-joined path in the parameter (or state)
tree (the documented rule, computed here from `zlib`).  Linen derives its keys
differently, so the test hands Linen's own `init` the same key for every leaf: it
wraps `flax.core.scope.Scope.param` so that the initializer of the parameter at
`path` receives `fold_in(rng, crc32(path))` instead of Linen's key.  Everything else
is Linen's: which initializer each layer uses by default, how DenseGeneral flattens
its kernel before initializing it, the per-gate kernels of the recurrent cells, the
attention output projection's `out_kernel_init`.  The values must then be the same
numbers (float32; XLA may round a scaled draw differently by an ulp, hence rtol
1e-6, far below any change of distribution: lecun_normal and he_normal differ by a
factor of 1.41).

A Linen initializer that ignores its key (zeros, ones, BatchNorm's statistics) is
compared the same way, and the trees must have the same names, shapes and dtypes.
"""

from __future__ import annotations

import contextlib
import zlib
from collections.abc import Iterator
from typing import Any, Callable

import flax.linen as linen
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax.core import scope as flax_scope
from helpers import build

RNG = jax.random.key(42)
RTOL, ATOL = 1e-6, 1e-7

pytestmark = pytest.mark.filterwarnings("ignore:SelfAttention will be deprecated")


def leaf_key(rng: jax.Array, path: tuple[str, ...]) -> jax.Array:
    """The documented key rule of a generated `init`."""
    return jax.random.fold_in(rng, zlib.crc32("/".join(path).encode()) & 0x7FFFFFFF)


@contextlib.contextmanager
def linen_keys_by_path(rng: jax.Array) -> Iterator[None]:
    """Within the block, every Linen parameter draws from `leaf_key(rng, its path)`."""
    original = flax_scope.Scope.param

    def param(self, name, init_fn, *args, **kwargs):
        key = leaf_key(rng, (*self.path, name))
        return original(self, name, lambda _linen_key, *a, **k: init_fn(key, *a, **k), *args,
                        **kwargs)

    flax_scope.Scope.param = param
    try:
        yield
    finally:
        flax_scope.Scope.param = original


def _plain(tree: Any) -> Any:
    if hasattr(tree, "items"):
        return {k: _plain(v) for k, v in tree.items()}
    return tree


def _leaves(tree: Any) -> dict[str, Any]:
    return {"/".join(str(k.key) for k in path): leaf
            for path, leaf in jax.tree_util.tree_leaves_with_path(_plain(tree))}


def _compare(got: Any, want: Any) -> None:
    got, want = _leaves(got), _leaves(want)
    assert {k: (v.shape, v.dtype) for k, v in got.items()} == \
        {k: (v.shape, v.dtype) for k, v in want.items()}
    for path in want:
        np.testing.assert_allclose(np.asarray(got[path], np.float32),
                                   np.asarray(want[path], np.float32), rtol=RTOL, atol=ATOL,
                                   err_msg=path)


def _linen_init(module: linen.Module, *xs: Any) -> dict[str, Any]:
    with linen_keys_by_path(RNG):
        return _plain(jax.jit(module.init)(RNG, *xs))


def _inputs(spec: dict[str, tuple[tuple[int, ...], str]]) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 5, s).astype(d) if d == "int32" else
            rng.standard_normal(s).astype(d) for s, d in spec.values()]


def _spec_text(spec: dict[str, tuple[tuple[int, ...], str]]) -> str:
    return ", ".join(f"{n}=aot.{'i32' if d == 'int32' else 'f32'}[{', '.join(map(str, s))}]"
                     for n, (s, d) in spec.items())


# ------------------------------------------------------------------ nn.initializers

#: (DSL initializer, Linen initializer, shape, param dtype): every factory of
#: `nn.initializers`, each with arguments that change the draw where it takes any.
INITIALIZERS: list[tuple[str, Any, tuple[int, ...], str]] = [
    ("zeros", linen.initializers.zeros, (3, 4), "float32"),
    ("ones", linen.initializers.ones, (3, 4), "float32"),
    ("zeros_init()", linen.initializers.zeros_init(), (3, 4), "float32"),
    ("ones_init()", linen.initializers.ones_init(), (3, 4), "float32"),
    ("constant(0.25)", linen.initializers.constant(0.25), (3, 4), "float32"),
    ("constant([1.0, 2.0, 3.0, 4.0])", linen.initializers.constant(jnp.array([1., 2., 3., 4.])),
     (3, 4), "float32"),
    ("normal()", linen.initializers.normal(), (64, 32), "float32"),
    ("normal(stddev=0.7)", linen.initializers.normal(stddev=0.7), (64, 32), "float32"),
    ("normal(0.3, dtype=jnp.bfloat16)", linen.initializers.normal(0.3, dtype=jnp.bfloat16),
     (64, 32), "bfloat16"),
    ("truncated_normal(0.5, lower=-1.0, upper=1.5)",
     linen.initializers.truncated_normal(0.5, lower=-1.0, upper=1.5), (64, 32), "float32"),
    ("uniform()", linen.initializers.uniform(), (64, 32), "float32"),
    ("uniform(scale=2.0)", linen.initializers.uniform(scale=2.0), (64, 32), "float32"),
    ('variance_scaling(2.0, "fan_out", "uniform", in_axis=-3, out_axis=-1, batch_axis=(0,))',
     linen.initializers.variance_scaling(2.0, "fan_out", "uniform", in_axis=-3, out_axis=-1,
                                         batch_axis=(0,)), (2, 5, 6, 7), "float32"),
    ('variance_scaling(0.5, "fan_avg", "truncated_normal")',
     linen.initializers.variance_scaling(0.5, "fan_avg", "truncated_normal"), (5, 6, 7),
     "float32"),
    ('variance_scaling(3.0, "fan_geo_avg", "normal", in_axis=0, out_axis=1)',
     linen.initializers.variance_scaling(3.0, "fan_geo_avg", "normal", in_axis=0, out_axis=1),
     (5, 6, 7), "float32"),
    ('variance_scaling(1.0, "fan_in", "normal", out_axis=0)',
     linen.initializers.variance_scaling(1.0, "fan_in", "normal", out_axis=0), (40, 24),
     "float32"),
    ("glorot_normal()", linen.initializers.glorot_normal(), (40, 24), "float32"),
    ("glorot_uniform(in_axis=0, out_axis=1)",
     linen.initializers.glorot_uniform(in_axis=0, out_axis=1), (40, 24, 3), "float32"),
    ("xavier_normal()", linen.initializers.xavier_normal(), (40, 24), "float32"),
    ("xavier_uniform()", linen.initializers.xavier_uniform(), (40, 24), "float32"),
    ("he_normal()", linen.initializers.he_normal(), (3, 3, 8, 16), "float32"),
    ("he_uniform(batch_axis=0)", linen.initializers.he_uniform(batch_axis=0), (3, 8, 16),
     "float32"),
    ("kaiming_normal()", linen.initializers.kaiming_normal(), (40, 24), "float32"),
    ("kaiming_uniform()", linen.initializers.kaiming_uniform(), (40, 24), "float32"),
    ("lecun_normal()", linen.initializers.lecun_normal(), (3, 3, 8, 16), "float32"),
    ("lecun_uniform(in_axis=-1, out_axis=-2)",
     linen.initializers.lecun_uniform(in_axis=-1, out_axis=-2), (40, 24), "float32"),
    ("orthogonal()", linen.initializers.orthogonal(), (12, 8), "float32"),
    ("orthogonal(scale=2.0, column_axis=0)",
     linen.initializers.orthogonal(scale=2.0, column_axis=0), (6, 9), "float32"),
    ("delta_orthogonal(scale=1.5)", linen.initializers.delta_orthogonal(scale=1.5),
     (3, 3, 4, 6), "float32"),
]


@pytest.fixture(scope="module")
def initializer_values() -> tuple[dict, dict]:
    lines = [f'        w{i} = self.param("w{i}", {shape!r}, nn.initializers.{dsl}'
             + (", dtype=jnp.bfloat16)" if dtype == "bfloat16" else ")")
             for i, (dsl, _, shape, dtype) in enumerate(INITIALIZERS)]
    m = build("class Inits(nn.Module):\n    def apply(self, x):\n" + "\n".join(lines)
              + "\n        return x\n\n\naot.target(\"t\", Inits, x=aot.f32[2])\n")
    got, state = jax.jit(m.t.init_fn)(RNG)
    assert state == {}

    class Inits(linen.Module):
        @linen.compact
        def __call__(self, x):
            for i, (_, init, shape, dtype) in enumerate(INITIALIZERS):
                self.param(f"w{i}", init, shape, jnp.dtype(dtype))
            return x

    return _plain(got), _linen_init(Inits(), np.zeros(2, np.float32))["params"]


@pytest.mark.parametrize("i", range(len(INITIALIZERS)), ids=[c[0] for c in INITIALIZERS])
def test_initializer_values_equal_linen(initializer_values: tuple[dict, dict], i: int) -> None:
    got, want = initializer_values
    _compare(got[f"w{i}"], want[f"w{i}"])


def test_each_parameter_draws_from_its_own_key(initializer_values: tuple[dict, dict]) -> None:
    """The rule is per leaf: two parameters with the same initializer and shape differ."""
    got, _ = initializer_values
    same = [i for i, c in enumerate(INITIALIZERS) if c[0] in ("normal(stddev=0.7)", "normal()")]
    a, b = (np.asarray(got[f"w{i}"]) for i in same)
    assert not np.allclose(a / a.std(), b / b.std())
    # and the draw depends on the target's rng
    assert np.all(np.asarray(got[f"w{same[0]}"]) != 0)


# ------------------------------------------------------------------ layer defaults

INPUTS: dict[str, tuple[tuple[int, ...], str]] = {
    "x": ((2, 5), "float32"), "x3": ((2, 5, 6), "float32"), "img": ((2, 8, 8, 3), "float32"),
    "tok": ((2, 5), "int32"), "seq": ((2, 5, 8), "float32"), "kv": ((2, 7, 8), "float32"),
    "c": ((2, 8), "float32"), "h": ((2, 8), "float32"), "cimg": ((2, 8, 8, 4), "float32"),
    "himg": ((2, 8, 8, 4), "float32"),
}

#: (id, DSL call, Linen call on the inputs in INPUTS' order): every layer with
#: parameters or state, at its defaults, plus the non-default initializers it takes.
LAYERS: list[tuple[str, str, Callable[..., Any]]] = [
    ("dense", "nn.Dense(x, 7)", lambda x, *_: linen.Dense(7)(x)),
    ("dense_inits", "nn.Dense(x, 7, kernel_init=nn.initializers.he_uniform(), "
     "bias_init=nn.initializers.normal(0.5))",
     lambda x, *_: linen.Dense(7, kernel_init=linen.initializers.he_uniform(),
                               bias_init=linen.initializers.normal(0.5))(x)),
    ("dense_bf16", "nn.Dense(x, 7, param_dtype=jnp.bfloat16)",
     lambda x, *_: linen.Dense(7, param_dtype=jnp.bfloat16)(x)),
    ("dense_general", "nn.DenseGeneral(x3, (3, 4), axis=(-2, -1))",
     lambda x, x3, *_: linen.DenseGeneral((3, 4), axis=(-2, -1))(x3)),
    ("dense_general_batch", "nn.DenseGeneral(x3, 4, batch_dims=(0,))",
     lambda x, x3, *_: linen.DenseGeneral(4, batch_dims=(0,))(x3)),
    ("conv", "nn.Conv(img, 6, (3, 3))", lambda x, x3, img, *_: linen.Conv(6, (3, 3))(img)),
    ("conv_groups", "nn.Conv(img, 6, (3, 2), feature_group_count=3)",
     lambda x, x3, img, *_: linen.Conv(6, (3, 2), feature_group_count=3)(img)),
    ("conv_transpose", "nn.ConvTranspose(img, 6, (3, 3))",
     lambda x, x3, img, *_: linen.ConvTranspose(6, (3, 3))(img)),
    ("embed", "nn.Embed(tok, 11, 7)", lambda x, x3, img, tok, *_: linen.Embed(11, 7)(tok)),
    ("batch_norm", "nn.BatchNorm(img)",
     lambda x, x3, img, *_: linen.BatchNorm(use_running_average=False)(img)),
    ("layer_norm", "nn.LayerNorm(x)", lambda x, *_: linen.LayerNorm()(x)),
    ("group_norm", "nn.GroupNorm(img, num_groups=3)",
     lambda x, x3, img, *_: linen.GroupNorm(num_groups=3)(img)),
    ("rms_norm", "nn.RMSNorm(x)", lambda x, *_: linen.RMSNorm()(x)),
    ("attention", "nn.MultiHeadDotProductAttention(seq, kv, 2)",
     lambda x, x3, img, tok, seq, kv, *_: linen.MultiHeadDotProductAttention(2)(seq, kv)),
    ("self_attention_out_init", "nn.SelfAttention(seq, 2, qkv_features=4, out_features=6, "
     "out_kernel_init=nn.initializers.normal(1.0), out_bias_init=nn.initializers.ones)",
     lambda x, x3, img, tok, seq, *_: linen.SelfAttention(
         2, qkv_features=4, out_features=6, out_kernel_init=linen.initializers.normal(1.0),
         out_bias_init=linen.initializers.ones)(seq)),
    ("lstm", "nn.LSTMCell((c, h), x)",
     lambda x, x3, img, tok, seq, kv, c, h, *_: linen.LSTMCell(8)((c, h), x)),
    ("gru", "nn.GRUCell(h, x)", lambda x, x3, img, tok, seq, kv, c, h, *_: linen.GRUCell(8)(h, x)),
    ("conv_lstm", "nn.ConvLSTM((cimg, himg), img, 4, (3, 3))",
     lambda x, x3, img, tok, seq, kv, c, h, ci, hi: linen.ConvLSTMCell(4, (3, 3))((ci, hi), img)),
]


@pytest.fixture(scope="module")
def layer_values() -> tuple[dict, dict]:
    body = ", ".join(dsl for _, dsl, _ in LAYERS)
    m = build(f"class Layers(nn.Module):\n    def apply(self, {', '.join(INPUTS)}):\n"
              f"        return ({body},)\n\n\n"
              f'aot.target("t", Layers, {_spec_text(INPUTS)})\n')
    params, state = jax.jit(m.t.init_fn)(RNG)

    class Layers(linen.Module):
        @linen.compact
        def __call__(self, *xs):
            return tuple(call(*xs) for _, _, call in LAYERS)

    return {"params": _plain(params), **_plain(state)}, _linen_init(Layers(), *_inputs(INPUTS))


def test_layer_trees_equal_linen(layer_values: tuple[dict, dict]) -> None:
    got, want = layer_values
    assert set(got) == set(want) == {"params", "batch_stats"}
    assert jax.tree_util.tree_map(lambda a: (a.shape, a.dtype), got) == \
        jax.tree_util.tree_map(lambda a: (a.shape, a.dtype), want)


#: The Linen instance name of each case, in LAYERS' order (Linen numbers per class).
NAMES = ["Dense_0", "Dense_1", "Dense_2", "DenseGeneral_0", "DenseGeneral_1", "Conv_0",
         "Conv_1", "ConvTranspose_0", "Embed_0", "BatchNorm_0", "LayerNorm_0", "GroupNorm_0",
         "RMSNorm_0", "MultiHeadDotProductAttention_0", "SelfAttention_0", "LSTMCell_0",
         "GRUCell_0", "ConvLSTMCell_0"]


@pytest.mark.parametrize("i", range(len(LAYERS)), ids=[c[0] for c in LAYERS])
def test_layer_initial_values_equal_linen(layer_values: tuple[dict, dict], i: int) -> None:
    got, want = layer_values
    name = NAMES[i]
    for collection in want:
        if name in want[collection]:
            _compare(got[collection][name], want[collection][name])
    assert name in want["params"]


def test_a_constant_value_must_fit_the_parameter() -> None:
    from helpers import build_errors

    wide = build_errors("""
    class Net(nn.Module):
        def apply(self, x):
            return x + self.param("w", (3, 4), nn.initializers.constant([1.0, 2.0, 3.0]))

    aot.target("net", Net, x=aot.f32[3, 4])
    """)
    assert "error[AOT314]: nn.initializers.constant([1.0, 2.0, 3.0]) fills a value of shape " \
        "(3,) into a parameter of shape (3, 4)" in wide
    ragged = build_errors("""
    class Net(nn.Module):
        def apply(self, x):
            return x + self.param("w", (2, 2), nn.initializers.constant([[1.0], [2.0, 3.0]]))

    aot.target("net", Net, x=aot.f32[2, 2])
    """)
    assert "'value' must be a rectangular nested list of numbers" in ragged


COMPLEX_RBM = """
import numpy as np

def cplx_init(rng, shape):
    rng1, rng2 = jax.random.split(rng)
    unif = jax.nn.initializers.uniform()
    return unif(rng1, shape) + 1.j * unif(rng2, shape)

class CpxRBM(nn.Module):
    def apply(self, s, numHidden=2, bias=False):
        layer = nn.Dense.shared(features=numHidden, name="rbm_layer", bias=bias,
                                dtype=np.complex64{param_dtype}, kernel_init=cplx_init)
        return jnp.sum(jnp.log(jnp.cosh(layer(s))), axis=0)

aot.target("rbm", CpxRBM, s=aot.f32[4])
"""


def test_a_flax_nn_initializer_gives_its_parameter_its_dtype() -> None:
    """jVMC's complex RBM: flax.nn initializers took (key, shape) and the parameter took the
    dtype they returned.  Without a param_dtype, so does the layer here (and self.param
    without dtype=); the model equals Linen's declared with param_dtype=complex64.  A
    param_dtype that says otherwise is an error that names the declaration."""
    from helpers import build_errors

    errors = build_errors(COMPLEX_RBM.format(param_dtype=", param_dtype=np.float32"))
    assert "initializer cplx_init returns c64[4, 2] for a variable declared f32[4, 2]" in errors
    assert "pass param_dtype=jnp.complex64 to the layer" in errors
    m = build(COMPLEX_RBM.format(param_dtype=""))
    assert "param_dtype=jnp.complex64" in m.__aotflax_text__
    own = build("""
    def cplx_init(rng, shape):
        return jax.random.normal(rng, shape) * (1.0 + 1.j)

    class Net(nn.Module):
        def apply(self, x):
            w = self.param("w", (x.shape[-1],), cplx_init)
            b = self.param("b", (), cplx_init, dtype=jnp.complex64)
            return x * w + b

    aot.target("net", Net, x=aot.f32[3])
    """)
    params, _ = own.net.init(jax.random.key(0))
    assert params["w"].dtype == jnp.complex64 and params["b"].dtype == jnp.complex64
    out, _ = own.net.apply(params, {}, jnp.ones(3))
    np.testing.assert_allclose(out, params["w"] + params["b"], rtol=1e-6)

    def cplx_init(rng, shape, dtype=None):
        rng1, rng2 = jax.random.split(rng)
        unif = jax.nn.initializers.uniform()
        return unif(rng1, shape) + 1.j * unif(rng2, shape)

    class LRBM(linen.Module):
        @linen.compact
        def __call__(self, s):
            layer = linen.Dense(2, use_bias=False, dtype=jnp.complex64,
                                param_dtype=jnp.complex64, kernel_init=cplx_init,
                                name="rbm_layer")
            return jnp.sum(jnp.log(jnp.cosh(layer(s))), axis=0)

    params, _ = m.rbm.init(jax.random.key(0))
    assert params["rbm_layer"]["kernel"].dtype == jnp.complex64
    s = jnp.asarray([1.0, -1.0, 1.0, 1.0])
    got, _ = m.rbm.apply(params, {}, s)
    want = LRBM().apply({"params": params}, s)
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-6)
