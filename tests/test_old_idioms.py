"""Idioms of 2020 flax.nn research code around the layers, built and run.

Attention variants of that time (local, synthesizer, sparse attention) copied old
flax.nn's `dot_product_attention` and its mask helpers into their own files: they log
with absl, test `isinstance(axis, Iterable)`, compute batch dims with
`np.delete(range(n), axes)`, build masks with `nn.attention.make_padding_mask` and
`lax.select`, pad with widths written as `jnp.array`, and branch on `if mask_components:`.
Each idiom here is a small model of our own, checked against jax / numpy.
"""

from __future__ import annotations

import textwrap

import jax
import numpy as np
import pytest
from helpers import build, build_errors, write_model

from aotflax.driver import front_end

RTOL, ATOL = 1e-6, 1e-6


def _x(*shape: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def test_logging_calls_are_evaluated_and_dropped(capsys: pytest.CaptureFixture) -> None:
    m = build("""
    from absl import logging
    import logging as pylog


    class M(nn.Module):
        def apply(self, x):
            logging.info("input %s", x.shape)
            pylog.warning(x)
            logging.vlog(1, "deep")
            print("shape of x:", x.shape, x, sep=" ")  # debugging prints: dropped too
            done = logging.info(x)
            return nn.Dense(x, 3) if done is None else x

    aot.target("t", M, x=aot.f32[2, 4])
    """)
    code = m.__aotflax_text__.split('"""', 2)[2]
    assert "logging" not in code.replace("# ", "") and "print(" not in code
    assert "shape of x" not in capsys.readouterr().out  # the build printed nothing
    params, _ = m.t.init(jax.random.key(0))
    x = _x(2, 4)
    y, _ = m.t.apply(params, {}, x)
    d = params["Dense_0"]
    want = x @ np.asarray(d["kernel"]) + np.asarray(d["bias"])
    np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-5)


def test_other_absl_modules_stay_outside_the_language() -> None:
    out = build_errors("""
    from absl import flags


    class M(nn.Module):
        def apply(self, x):
            return x * flags.FLAGS.scale

    aot.target("t", M, x=aot.f32[2, 4])
    """)
    assert "error[AOT104]" in out and "'absl' is not a module aotflax interprets" in out, out
    assert "logging (absl.logging)" in out


def test_a_container_is_true_when_it_has_items_whatever_they_are() -> None:
    m = build("""
    class M(nn.Module):
        def apply(self, x, extra: bool = False):
            parts = [x > 0]
            if extra:
                parts.append(x < 1)
            rest = [] if extra else ()
            if parts:
                mask = parts[0]
                for p in parts[1:]:
                    mask = jnp.logical_and(mask, p)
            first = (parts and parts[0]) if not rest else None
            return jnp.where(mask, x, 0.0), first

    aot.target("one", M, x=aot.f32[2, 4])
    aot.target("two", M.partial(extra=True), x=aot.f32[2, 4])
    """)
    x = _x(2, 4)
    (y, first), _ = m.one.apply({}, {}, x)
    np.testing.assert_array_equal(y, np.where(x > 0, x, 0.0))
    np.testing.assert_array_equal(first, x > 0)
    (y, _), _ = m.two.apply({}, {}, x)
    np.testing.assert_array_equal(y, np.where((x > 0) & (x < 1), x, 0.0))


def test_an_array_condition_is_still_refused() -> None:
    out = build_errors("""
    class M(nn.Module):
        def apply(self, x):
            if x.sum():
                return x
            return -x

    aot.target("t", M, x=aot.f32[2, 4])
    """)
    assert "error[AOT335]: this condition depends on an array value" in out, out


def test_isinstance_takes_the_classes_of_collections_abc() -> None:
    m = build("""
    from collections.abc import Iterable, Sequence
    import collections


    def axes(axis):
        if not isinstance(axis, Iterable):
            axis = (axis,)
        return axis


    class M(nn.Module):
        def apply(self, x):
            flags = (isinstance(x, Iterable), isinstance(x, Sequence),
                     isinstance([1], collections.abc.Sequence), isinstance(3, (Sequence, int)),
                     isinstance({}, collections.abc.Mapping))
            return jnp.sum(x, axis=axes(1)), jnp.sum(x, axis=axes((0, 1))), jnp.array(flags)

    aot.target("t", M, x=aot.f32[2, 4])
    """)
    x = _x(2, 4)
    (a, b, flags), _ = m.t.apply({}, {}, x)
    np.testing.assert_allclose(a, x.sum(axis=1), rtol=RTOL)
    np.testing.assert_allclose(b, x.sum(), rtol=1e-5)
    # as for a jax array: iterable, not a sequence
    assert tuple(np.asarray(flags)) == (True, False, True, True, True)


def test_isinstance_with_an_abstract_class_refuses_values_it_cannot_judge() -> None:
    out = build_errors("""
    from collections.abc import Iterable


    class M(nn.Module):
        def apply(self, x):
            return x if isinstance(nn.Dense, Iterable) else -x

    aot.target("t", M, x=aot.f32[2, 4])
    """)
    assert "error[AOT349]: isinstance(" in out and "collections.abc.Iterable) is not known " \
        "at build time" in out, out


def test_batch_dims_from_np_delete_of_a_range_are_static() -> None:
    m = build("""
    import numpy as onp


    class M(nn.Module):
        def apply(self, x, axis=(1,)):
            n = x.ndim
            batch_dims = tuple(onp.delete(range(n), axis + (n - 1,)))
            perm = batch_dims + axis + (n - 1,)
            return x.transpose(perm), jnp.array(len(batch_dims))

    aot.target("t", M, x=aot.f32[2, 3, 4, 5])
    """)
    x = _x(2, 3, 4, 5)
    (y, count), _ = m.t.apply({}, {}, x)
    np.testing.assert_array_equal(y, x.transpose((0, 2, 1, 3)))
    assert count == 2


def test_pad_widths_written_as_an_int_array() -> None:
    m = build("""
    class M(nn.Module):
        def apply(self, x, mask, block=4):
            extra = block - x.shape[1] % block
            width = jnp.array([[0, 0], [0, extra], [0, 0]])
            return jnp.pad(x, width), jnp.pad(mask, width, constant_values=-1e9)

    aot.target("t", M, x=aot.f32[2, 6, 3], mask=aot.f32[2, 6, 1])
    """)
    x, mask = _x(2, 6, 3), _x(2, 6, 1, seed=1)
    (a, b), _ = m.t.apply({}, {}, x, mask)
    np.testing.assert_array_equal(a, np.pad(x, ((0, 0), (0, 2), (0, 0))))
    np.testing.assert_array_equal(b, np.pad(mask, ((0, 0), (0, 2), (0, 0)),
                                            constant_values=-1e9))


def _old_padding_mask(q: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Old flax.nn's mask for per-position masks [batch, length, 1]: [batch, 1, lq, lk]."""
    return (q[:, None, :, :] * np.swapaxes(k, 1, 2)[:, None]).astype(np.float32)


def test_old_mask_helpers_and_lax_select_build_an_attention_bias() -> None:
    m = build("""
    from aotflax.nn.attention import _make_causal_mask, make_padding_mask
    from aotflax.nn.stochastic import make_rng
    from jax import lax


    class M(nn.Module):
        def apply(self, key, pad, kpad):
            b, h, d = key.shape[0], key.shape[2], key.shape[3]
            components = [_make_causal_mask(key, (1,))]
            components.append(make_padding_mask(
                padding_mask_query=pad, padding_mask_key=kpad,
                query_shape=(b, pad.shape[1], h, d), key_shape=key.shape,
                attention_axis=(1,)))
            mask = components[0]
            for c in components[1:]:
                mask = jnp.logical_and(mask, c)
            return lax.select(mask > 0, jnp.full(mask.shape, 0.0),
                              jnp.full(mask.shape, -1e10))

    aot.target("t", M, key=aot.f32[2, 5, 2, 3], pad=aot.f32[2, 5, 1], kpad=aot.f32[2, 5, 1])
    """)
    key = _x(2, 5, 2, 3)
    pad = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], np.float32)[..., None]
    got, _ = m.t.apply({}, {}, key, pad, pad)
    causal = np.tril(np.ones((5, 5), bool))[None, None]
    mask = causal & (_old_padding_mask(pad, pad) > 0)
    np.testing.assert_array_equal(got, np.where(mask, 0.0, -1e10).astype(np.float32))


@pytest.mark.parametrize("call,message", [
    ("lax.select(x > 0, x, 2 * x.astype(jnp.int32))",
     "on_true f32[2, 4] and on_false i32[2, 4] must have one shape and one dtype"),
    ("lax.select(x, x, x)", "pred must be a bool array, got f32[2, 4]"),
    ("lax.select((x > 0)[0], x, x)", "pred bool[4] must be a scalar or have the shape"),
    ("make_padding_mask(x, x, (2, 4, 1, 1), (2, 3, 1, 1))",
     "give 32 entries, not the 24 of the attention mask (2, 1, 4, 3)"),
    ("make_padding_mask(x, x, (2, 4, 1, 1), (2, 4, 1, 1), attention_axis=(2,))",
     "attention_axis=(2,) must be between the batch axis and the last two axes"),
])
def test_old_mask_helper_and_select_errors(call: str, message: str) -> None:
    out = build_errors(f"""
    from aotflax.nn.attention import make_padding_mask
    from jax import lax


    class M(nn.Module):
        def apply(self, x):
            return {call}

    aot.target("t", M, x=aot.f32[2, 4])
    """)
    assert message in out, out
    assert "internal error" not in out


def test_flax_nn_submodules_hold_what_flax_nn_defined_there() -> None:
    """`nn.linear.DenseGeneral`, `from flax.nn.normalization import LayerNorm`, ...: the same
    layers and functions as `nn.X`, with linear's `default_kernel_init` (lecun_normal)."""
    layers = """
    class M(nn.Module):
        def apply(self, x):
            h = {dense}(x, (2, 3), kernel_init={init})
            h = {relu}({norm}(h))
            return {pool}(h, (2, 1))

    aot.target("t", M, x=aot.f32[2, 4, 4])
    """
    old = build("""
    from aotflax.nn.linear import default_kernel_init
    from aotflax.nn import activation
    from aotflax.nn.normalization import LayerNorm
    """ + layers.format(dense="nn.linear.DenseGeneral", init="default_kernel_init",
                        relu="activation.relu", norm="LayerNorm", pool="nn.pooling.avg_pool"))
    new = build(layers.format(dense="nn.DenseGeneral", init="nn.initializers.lecun_normal()",
                              relu="nn.relu", norm="nn.LayerNorm", pool="nn.avg_pool"))
    params, _ = old.t.init(jax.random.key(0))
    params_new, _ = new.t.init(jax.random.key(0))
    jax.tree_util.tree_map(np.testing.assert_array_equal, params, params_new)
    x = _x(2, 4, 4)
    got, _ = old.t.apply(params, {}, x)
    params = jax.tree_util.tree_map(np.asarray, params)
    k, b = params["DenseGeneral_0"]["kernel"], params["DenseGeneral_0"]["bias"]
    h = np.einsum("bli,ijk->bljk", x, k) + b
    mean, var = h.mean(-1, keepdims=True), h.var(-1, keepdims=True)
    ln = params["LayerNorm_0"]
    h = np.maximum((h - mean) / np.sqrt(var + 1e-6) * ln["scale"] + ln["bias"], 0)
    want = (h[:, 0:3] + h[:, 1:4]) / 2  # windows of (2, 1) over (length, heads), stride 1
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_flax_nn_submodule_names_are_nn_names() -> None:
    from aotflax.namespaces import namespace_for

    for module, names in {"recurrent": ("LSTMCell", "GRUCell", "ConvLSTM"),
                          "pooling": ("max_pool", "avg_pool"),
                          "normalization": ("BatchNorm", "GroupNorm"),
                          "linear": ("Dense", "Conv", "ConvTranspose", "Embed"),
                          "activation": ("gelu", "softmax", "tanh", "swish")}.items():
        for name in names:
            value = namespace_for(f"aotflax.nn.{module}", name)
            assert value is not None and value == namespace_for("aotflax.nn", name), name
    assert namespace_for("aotflax.nn.linear", "Sequential") is None
    errors = build_errors("""
    class M(nn.Module):
        def apply(self, x):
            return nn.linear.Sequential(x)

    aot.target("t", M, x=aot.f32[2, 4])
    """)
    assert "AOT346" in errors and "nn.linear.Sequential" in errors, errors


def test_python_sum_over_arrays_adds_them() -> None:
    """`sum(np.eye(n, k=-i) for i in range(w))` (a band mask built on the host, as sliding
    window attention writes it) and `sum([a, b], start)` over arrays: Python's sum is
    `start + a + b`, each `+` the array's own operator."""
    m = build("""
    import numpy as np


    class M(nn.Module):
        def apply(self, x):
            n = x.shape[1]
            band = sum(np.eye(n, k=-i) for i in range(3)) + sum(np.eye(n, k=i) for i in (1,))
            parts = [x * 2.0, jnp.tanh(x)]
            return jnp.asarray(band) * sum(parts) + sum(parts, 1.5) + sum(x[0] for _ in [])

    aot.target("t", M, x=aot.f32[5, 5])
    """)
    x = _x(5, 5)
    got, _ = m.t.apply({}, {}, x)
    band = sum(np.eye(5, k=-i) for i in range(3)) + np.eye(5, k=1)
    parts = x * 2.0 + np.tanh(x)
    np.testing.assert_allclose(got, band.astype(np.float32) * parts + 1.5 + parts,
                               rtol=RTOL, atol=ATOL)
    assert got.dtype == np.float32
    errors = build_errors("""
    class M(nn.Module):
        def apply(self, x):
            return sum(x)

    aot.target("t", M, x=aot.f32[5, 5])
    """)
    assert "AOT349" in errors and "jnp.sum(x, axis=0)" in errors, errors


def test_attrs_classes_are_records_and_isinstance_sees_their_bases() -> None:
    """`@attr.s` classes with `attr.ib()` fields (2020 research code described attention
    patterns so), derived from a common base written `class P(object)`, dispatched on with
    `isinstance`; a numpy mask per pattern, merged with functools.reduce."""
    m = build("""
    import functools
    import attr
    import numpy as np


    @attr.s
    class Pattern(object):
        pass


    @attr.s
    class Local(Pattern):
        width = attr.ib()
        note = "not a field"


    @attr.s(frozen=True)
    class Strided(Pattern):
        stride = attr.ib(default=2)
        offset = attr.ib(factory=int)


    def mask_of(n, p):
        q, k = np.arange(n)[:, None], np.arange(n)[None, :]
        if isinstance(p, Local):
            return np.abs(q - k) < p.width
        elif isinstance(p, (Strided,)) and isinstance(p, Pattern):
            return np.remainder(q - k + p.offset, p.stride) == 0
        raise ValueError("unknown pattern")


    class M(nn.Module):
        def apply(self, x, patterns):
            assert Local.note == "not a field" and Strided(3) == Strided(stride=3, offset=0)
            assert Strided(3) != Strided(4) and not isinstance(patterns[0], Pattern) is False
            merged = functools.reduce(np.logical_or, (mask_of(x.shape[1], p) for p in patterns))
            return jnp.where(jnp.asarray(merged), x, 0.0)

    aot.target("t", M.partial(patterns=[Local(2), Strided(stride=3)]), x=aot.f32[2, 5, 5])
    aot.target("u", M.partial(patterns=[Strided()]), x=aot.f32[2, 5, 5])
    """)
    x = _x(2, 5, 5)
    q, k = np.arange(5)[:, None], np.arange(5)[None, :]
    for target, mask in ((m.t, (np.abs(q - k) < 2) | ((q - k) % 3 == 0)),
                         (m.u, (q - k) % 2 == 0)):
        got, _ = target.apply({}, {}, x)
        np.testing.assert_array_equal(got, np.where(mask, x, 0.0))


def test_attrs_errors_are_located() -> None:
    cases = {
        "x = attr.ib(validator=check)": "validator= is not supported",
        "x = attr.ib(default=1, factory=list)": "default= or factory=, not both",
        "x = attr.ib(default=1)\n            y = attr.ib()": "field 'y' of P has no default",
    }
    for body, message in cases.items():
        errors = build_errors(f"""
        import attr


        def check(*a):
            pass


        @attr.s
        class P:
            {body}


        class M(nn.Module):
            def apply(self, x, p):
                return x * p.x

        aot.target("t", M.partial(p=P()), x=aot.f32[2])
        """)
        assert message in errors and "error[AOT30" in errors, (body, errors)
    errors = build_errors("""
    import attr


    @attr.s(frozen=True)
    class P:
        x = attr.ib(default=1)


    class M(nn.Module):
        def apply(self, x, p):
            p.x = 2
            return x * isinstance(p, P)

    aot.target("t", M.partial(p=P()), x=aot.f32[2])
    """)
    assert "AOT331" in errors and "frozen P" in errors, errors


GIN_MODEL = """
import dataclasses

import gin


@gin.configurable
@dataclasses.dataclass(frozen=True)
class Sizes:
    hidden: int = 5


@gin.configurable("scaled_tanh", denylist=["x"])
def scaled(x, scale=2.0):
    return scale * jnp.tanh(x)


act = gin.external_configurable(nn.relu, "relu")


@gin.register
class MLP(nn.Module):
    def apply(self, x, sizes=Sizes(), out=3):
        x = act(nn.Dense(x, sizes.hidden))
        return nn.Dense(scaled(x), out)


class Unused(nn.Module):
    @gin.configurable
    def apply(self, x):
        return x

aot.target("t", MLP.partial(out=2), x=aot.f32[2, 4])
"""


def test_gin_registrations_are_the_definitions_with_a_warning_each() -> None:
    m = build(GIN_MODEL)
    params, _ = m.t.init(jax.random.key(0))
    x = _x(2, 4)
    y, _ = m.t.apply(params, {}, x)
    d0, d1 = params["Dense_0"], params["Dense_1"]
    assert np.asarray(d0["kernel"]).shape == (4, 5)  # the declared default, not a binding
    h = np.maximum(x @ np.asarray(d0["kernel"]) + np.asarray(d0["bias"]), 0)
    want = (2.0 * np.tanh(h)) @ np.asarray(d1["kernel"]) + np.asarray(d1["bias"])
    np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-5)
    # one warning per registration a target reaches, at its decorator, in source order
    path = write_model(GIN_MODEL)
    report = front_end([path], path.parent)
    warned = [w for w in report.warnings if w.code == "AOT951"]
    lines = path.read_text().splitlines()
    assert [lines[w.span.line - 1].strip()[:20] for w in warned] == [
        "@gin.configurable", '@gin.configurable("s', 'act = gin.external_c', "@gin.register"]
    assert all(w.severity == "warning" for w in warned)
    text = warned[0].render()
    assert "gin bindings are not applied" in text and "class Sizes" in text
    assert "Model.partial(features=64)" in text


def test_gin_required_and_other_class_decorators_are_refused() -> None:
    out = build_errors("""
    import gin


    @gin.configurable
    def width(n=gin.REQUIRED):
        return n


    class M(nn.Module):
        def apply(self, x):
            return nn.Dense(x, width())

    aot.target("t", M, x=aot.f32[2, 4])
    """)
    assert "gin.REQUIRED" in out and "gin config file, which the build never reads" in out
    out = build_errors("""
    import functools


    @functools.lru_cache
    class M(nn.Module):
        def apply(self, x):
            return x

    aot.target("t", M, x=aot.f32[2, 4])
    """)
    assert "AOT102" in out and "class decorators are not supported on modules" in out


def test_is_stateful_is_true_and_is_stochastic_is_the_callers() -> None:
    """A target's apply always takes and returns its state (flax.nn inside `nn.stateful`),
    so `self.is_stateful()` is True: a Tag-style module writes its state.  Whether a model
    runs inside `nn.stochastic` is its caller's choice, which a target fixes: refused, with
    what to do instead."""
    m = build("""
    class Tag(nn.Module):
        def apply(self, x):
            if self.is_stateful():
                tagged = self.state("tag", x.shape, nn.initializers.zeros)
                tagged.value = x
            return x

    class M(nn.Module):
        def apply(self, x):
            return Tag(nn.Dense(x, 3)) * 2.0

    aot.target("t", M, x=aot.f32[2, 4])
    """)
    params, state = m.t.init(jax.random.key(0))
    x = _x(2, 4)
    y, new_state = m.t.apply(params, state, x)
    np.testing.assert_allclose(new_state["state"]["Tag_0"]["tag"] * 2.0, y, rtol=1e-6)
    out = build_errors("""
    class M(nn.Module):
        def apply(self, x):
            return nn.dropout(x, 0.5) if nn.is_stochastic() else x

    aot.target("t", M, x=aot.f32[2, 4])
    """)
    assert "'nn.is_stochastic' cannot be called here: whether a model runs inside " \
        "nn.stochastic(rng) is up to its caller" in out and "deterministic=" in out, out
    assert "other libraries" not in out


def test_flax_struct_dataclasses_are_frozen_configs() -> None:
    """`flax.struct.dataclass` (configs of flax code of the time): a frozen dataclass;
    `struct.field(pytree_node=False)` is a field (whether jax traces it means nothing to a
    static value); `import aotflax as flax` reaches it as `flax.struct` too."""
    m = build("""
    import dataclasses

    import aotflax as flax
    from aotflax import struct


    @struct.dataclass
    class Config:
        width: int = 4
        names: tuple = struct.field(pytree_node=False, default=("a",))


    @flax.struct.dataclass
    class Head:
        classes: int = 2


    class M(nn.Module):
        def apply(self, x, cfg=Config(), head=Head()):
            wide = dataclasses.replace(cfg, width=cfg.width + 1)
            return nn.Dense(nn.Dense(x, wide.width), head.classes * len(cfg.names))

    aot.target("t", M, x=aot.f32[2, 3])
    """)
    params, _ = m.t.init(jax.random.key(0))
    assert params["Dense_0"]["kernel"].shape == (3, 5)
    assert params["Dense_1"]["kernel"].shape == (5, 2)
    out = build_errors("""
    from aotflax import struct


    @struct.dataclass
    class Config:
        width: int = 4


    class M(nn.Module):
        def apply(self, x, cfg=Config()):
            cfg.width = 5
            return x

    aot.target("t", M, x=aot.f32[2, 3])
    """)
    assert "cannot set field 'width' of the frozen Config" in out, out


PYTHON_IDIOMS = """
import functools
import itertools
import operator
from typing import Any, Callable, Tuple

import numpy as np

Array = Any
Shape = Tuple[int, ...]
ActFn = Callable[[Array], Array]


class Net(nn.Module):
    def apply(self, x, dtype: Any = jnp.float32):
        n = functools.reduce(operator.mul, x.shape[1:], 1)
        names = [f"{a}{b}" for a, b in itertools.product("ab", range(2))]
        for name, w in zip(names, itertools.chain((3,), (4, 5), [6])):
            x = nn.Dense(x, w, name=name)
        big_neg = jnp.finfo(dtype).min
        top = jnp.iinfo(jnp.int8).max
        x = jnp.where(x > 0, x, big_neg) if jnp.issubdtype(x.dtype, jnp.floating) else x
        scale = (1.0 / np.sqrt(n)).astype(np.float32)
        return jnp.maximum(x, -1.0) * scale + operator.neg(top) * 0.0, operator.getitem(x, 0)

aot.target("net", Net, x=aot.f32[2, 3, 2])
"""


def test_operator_itertools_finfo_and_numpy_scalars_as_python_evaluates_them() -> None:
    m = build(PYTHON_IDIOMS)
    params, _ = m.net.init(jax.random.key(0))
    assert list(params) == ["a0", "a1", "b0", "b1"]  # itertools.product's order
    assert [params[k]["kernel"].shape[1] for k in params] == [3, 4, 5, 6]  # itertools.chain
    x = _x(2, 3, 2)
    (y, first), _ = m.net.apply(params, {}, x)
    h = x
    for k in params:
        h = h @ np.asarray(params[k]["kernel"]) + np.asarray(params[k]["bias"])
    h = np.where(h > 0, h, np.finfo(np.float32).min)
    np.testing.assert_allclose(y, np.maximum(h, -1.0) * np.float32(1 / np.sqrt(6)),
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(first, h[0], rtol=1e-5)
    assert "np.float32(-3.4028234663852886e+38)" in m.__aotflax_text__  # finfo's numpy scalar


def test_type_aliases_are_not_reported_as_skipped() -> None:
    path = write_model(PYTHON_IDIOMS)
    report = front_end([path], path.parent)
    assert not report.diagnostics
    assert [w.message for w in report.warnings if w.code == "AOT950"] == []


@pytest.mark.parametrize("expr, message", [
    ("jnp.finfo(jnp.int32).max", "jnp.finfo needs a floating dtype, got dtype int32"),
    ("jnp.iinfo(x).max", "jnp.iinfo needs an integer dtype, got array f32[2, 3]"),
    ("jnp.issubdtype(x, 3)", "jnp.issubdtype needs dtypes"),
    ("operator.add(x)", "operator.add takes 2 positional arguments, got 1"),
    ("len(list(itertools.product(range(1000), range(1000))))", "is too long to unroll"),
    ("len(list(itertools.repeat(1)))", "itertools.repeat() is too long to unroll"),
    ("np.float32(2.0).astype(jnp.bfloat16)", "astype(): numpy cannot convert to dtype "
     "bfloat16"),
])
def test_python_idiom_misuses_are_located(expr: str, message: str) -> None:
    errors = build_errors(f"""
    import itertools
    import operator

    import numpy as np


    class Net(nn.Module):
        def apply(self, x):
            return x * {expr}

    aot.target("net", Net, x=aot.f32[2, 3])
    """)
    assert message in errors, errors
    assert errors.startswith(errors.split(":")[0]) and "error[AOT" in errors.splitlines()[0]


def test_getattr_and_hasattr_are_attributes_named_by_strings() -> None:
    m = build("""
    class Net(nn.Module):
        SCALE = 2.0

        def apply(self, x, activation: str = "gelu", dtype: str = "float32"):
            act = getattr(nn, activation)
            x = nn.Dense(x, 4, dtype=getattr(jnp, dtype))
            scale = self.SCALE if hasattr(self, "SCALE") else 1.0
            extra = getattr(self, "EXTRA", 0.5)
            return act(x) * scale + extra + hasattr(nn, "no_such_layer")

    aot.target("net", Net, x=aot.f32[2, 3])
    aot.target("net_tanh", Net.partial(activation="tanh"), x=aot.f32[2, 3])
    """)
    params, _ = m.net.init(jax.random.key(0))
    x = _x(2, 3)
    h = x @ np.asarray(params["Dense_0"]["kernel"]) + np.asarray(params["Dense_0"]["bias"])
    np.testing.assert_allclose(m.net.apply(params, {}, x)[0],
                               np.asarray(jax.nn.gelu(h)) * 2.0 + 0.5, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(m.net_tanh.apply(params, {}, x)[0], np.tanh(h) * 2.0 + 0.5,
                               rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("expr, message", [
    ('getattr(nn, "relu6x")', "nn.relu6x is not supported by aotflax"),
    ('getattr(x, "__class__")', "error[AOT105]: getattr() needs a static attribute name, not "
     "a dunder"),
    ("getattr(nn, x)", "getattr() needs a static attribute name"),
    ('hasattr(x)', "hasattr() takes an object and an attribute name"),
])
def test_getattr_misuses_are_located(expr: str, message: str) -> None:
    errors = build_errors(f"""
    class Net(nn.Module):
        def apply(self, x):
            return {expr}(x) if False else x * 1.0 + 0 * len([{expr}])

    aot.target("net", Net, x=aot.f32[2, 3])
    """)
    assert message in errors, errors


def test_a_training_script_gets_one_warning_for_what_no_target_reaches() -> None:
    net = """
    class Net(nn.Module):
        def apply(self, x):
            return nn.Dense(x, 2)

    aot.target("net", Net, x=aot.f32[2, 3])
    """
    script = """
    import tensorflow_datasets as tfds

    FLAGS = None


    def train_step(state, batch):
        return state


    def main(argv):
        train_step(None, None)


    if __name__ == "__main__":
        main(None)
    """
    path = write_model(script + net)
    report = front_end([path], path.parent)
    warned = [w for w in report.warnings if w.code == "AOT950"]
    assert len(warned) == 1 and warned[0].span.line == 6, [w.message for w in warned]  # header: 4
    assert warned[0].message == (
        "5 top-level statements are not used by any target; skipped: import of "
        "tensorflow_datasets; assignment to FLAGS; functions train_step, main; 'if' block at "
        "line 19")
    path = write_model("FLAGS = None\n" + textwrap.dedent(net))  # a few: one warning each
    report = front_end([path], path.parent)
    assert [w.message for w in report.warnings if w.code == "AOT950"] == [
        "assignment to FLAGS is not used by any target; skipped"]


def test_configs_that_set_their_arguments_with_locals_and_setattr() -> None:
    """Google's EfficientNet configs: `for arg in locals().items(): setattr(self, *arg)`."""
    m = build("""
    class BlockConfig(object):
        def __init__(self, filters: int = 4, kernel: int = 3, se_ratio=None):
            for arg in locals().items():
                setattr(self, *arg)


    class ModelConfig(object):
        def __init__(self, width: float = 1.0, blocks=(BlockConfig(3), BlockConfig(5, 1))):
            for arg in locals().items():
                setattr(self, *arg)


    CONFIGS = {"b0": ModelConfig(2.0)}


    class Net(nn.Module):
        def apply(self, x, config=None):
            for i, block in enumerate(config.blocks):
                x = nn.Dense(x, int(block.filters * config.width), name=f"block{i}")
                setattr(block, "seen", True)
            return x, config.blocks[0].seen

    aot.target("net", Net.partial(config=CONFIGS["b0"]), x=aot.f32[2, 3])
    """)
    params, _ = m.net.init(jax.random.key(0))
    assert [params[k]["kernel"].shape for k in params] == [(3, 6), (6, 10)]


@pytest.mark.parametrize("expr, message", [
    ('setattr(x, "y", 1)', "cannot set attribute 'y' of array f32[2, 3]"),
    ('setattr(c, "__class__", 1)', "error[AOT105]: setattr() needs a static attribute name, "
     "not a dunder"),
    ("setattr(c, 1)", "setattr() takes an object, a name and a value"),
    ("locals(1)", "locals() takes no arguments"),
])
def test_setattr_misuses_are_located(expr: str, message: str) -> None:
    errors = build_errors(f"""
    class C(object):
        pass


    class Net(nn.Module):
        def apply(self, x):
            c = C()
            {expr}
            return x

    aot.target("net", Net, x=aot.f32[2, 3])
    """)
    assert message in errors, errors
