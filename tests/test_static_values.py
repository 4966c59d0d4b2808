"""Static values real model code uses: configs, dataclasses, namedtuples, functools.partial,
decorators, per-call attributes of `self`, `is None`, `dtype.type`, formatted names.

Each is a value of the static language: it configures the model at build time and never
reaches generated code except through what it computes.  Numerical checks compare a
model configured one way with the same model configured another way (or with jax).
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import build, build_errors, emit

from aotflax.artifacts import render_runtime
from aotflax.driver import front_end
from aotflax.verify import import_generated, verify_module


def _build_tree(root: Path, files: dict[str, str], model: str):
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"))
    report = front_end([root / model], root)
    assert not report.diagnostics, "\n".join(d.render() for d in report.diagnostics)
    (f,) = report.files
    _, importer = import_generated({f.out_rel: f.text}, render_runtime())
    module = importer(f.module)
    verify_module(module, f.program)
    module.__aotflax_text__ = f.text
    return module


CONFIG_FILES = {
    "configs/default.py": """
        import ml_collections


        def get_config():
            config = ml_collections.ConfigDict()
            config.features = 8
            config.model = ml_collections.ConfigDict()
            config.model.depth = 2
            config.model.act = "relu"
            config.head = {"classes": 3}   # a dict assigned to a field becomes a config
            return config
    """,
    "model.py": """
        import jax.numpy as jnp
        from aotflax import aot, nn

        from configs import default

        CONFIG = default.get_config()
        CONFIG.features = 6            # an in-place update at the top level
        CONFIG.lock()


        class Block(nn.Module):
            def apply(self, x, features, depth, act="relu"):
                for i in range(depth):
                    x = nn.Dense(x, features, name=f"unit{i + 1:02d}")
                    x = nn.relu(x) if act == "relu" else nn.gelu(x)
                return x


        class Configured(nn.Module):
            def apply(self, x, config):
                y = Block(x, features=config.features, **config.model, name="block")
                classes = config.get("head").classes
                return nn.Dense(y, classes, name="head"), jnp.full((2,), config.get("missing", 7))


        class Keywords(nn.Module):
            def apply(self, x, features=6, depth=2, classes=3):
                y = Block(x, features=features, depth=depth, act="relu", name="block")
                return nn.Dense(y, classes, name="head"), jnp.full((2,), 7)


        aot.target("configured", Configured.partial(config=CONFIG), x=aot.f32[2, 8])
        aot.target("keywords", Keywords, x=aot.f32[2, 8])
    """,
}


def test_config_from_a_sibling_file_equals_keywords(tmp_path: Path) -> None:
    m = _build_tree(tmp_path, CONFIG_FILES, "model.py")
    params, state = m.configured.init(jax.random.key(0))
    other, _ = m.keywords.init(jax.random.key(0))
    assert jax.tree_util.tree_structure(params) == jax.tree_util.tree_structure(other)
    assert params["block"]["unit02"]["kernel"].shape == (6, 6)
    x = np.random.default_rng(0).normal(size=(2, 8)).astype(np.float32)
    (a, seven), _ = m.configured.apply(params, state, x)
    (b, _), _ = m.keywords.apply(params, state, x)
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    np.testing.assert_array_equal(np.asarray(seven), [7, 7])
    text = m.__aotflax_text__
    # configs are printed in docstrings, never emitted as code
    assert "config=ConfigDict(features=6, model=ConfigDict(depth=2, act=\"relu\")" in text
    assert "ml_collections" not in text.replace("from cfg", "")


def test_configs_specialize_by_content() -> None:
    _, program = emit("""
    import ml_collections

    def make(width):
        c = ml_collections.ConfigDict({"width": width})
        return c

    class Inner(nn.Module):
        def apply(self, x, cfg):
            return nn.Dense(x, cfg.width)

    class Net(nn.Module):
        def apply(self, x):
            a = Inner(x, cfg=make(4))
            b = Inner(x, cfg=make(4))
            c = Inner(x, cfg=make(5))
            return a, b, c

    aot.target("net", Net, x=aot.f32[2, 8])
    """)
    names = sorted(f.name for f in program.functions)
    assert names == ["Inner", "Inner_1", "Net"]  # equal configs share one function


def test_config_misuse_is_located() -> None:
    errors = build_errors("""
    import ml_collections

    CONFIG = ml_collections.ConfigDict({"width": 4})
    CONFIG.lock()
    CONFIG.depth = 2
    FROZEN = ml_collections.FrozenConfigDict({"width": 4})
    FROZEN.width = 5

    class Net(nn.Module):
        def apply(self, x, cfg=CONFIG, frozen=FROZEN):
            return nn.Dense(x, cfg.widht) + frozen.width

    aot.target("net", Net, x=aot.f32[2, 8])
    """)
    assert "the config is locked: it has no field 'depth' to set" in errors
    assert "a FrozenConfigDict cannot be changed" in errors
    assert "the config has no field 'widht'" in errors and "its fields: width" in errors


DATACLASSES = """
import dataclasses
from collections import namedtuple
from typing import NamedTuple


@dataclasses.dataclass(frozen=True)
class Dims:
    width: int = 4
    depth: int = 1
    extra: tuple = dataclasses.field(default_factory=tuple)
    SCALE = 2

    @property
    def total(self):
        return self.width * self.depth

    def doubled(self):
        return self.width * self.SCALE


@dataclasses.dataclass
class Mutable:
    width: int
    height: int = 0

    def __post_init__(self):
        self.height = self.width + 1


Pair = namedtuple("Pair", "lo hi", defaults=(3,))


class Shape(NamedTuple):
    rows: int
    cols: int = 5


class Net(nn.Module):
    def apply(self, x, dims=Dims(), pair=Pair(2), shape=Shape(3)):
        wide = dataclasses.replace(dims, width=3, depth=2)
        m = Mutable(2)
        m.width = 10
        lo, hi = pair
        bigger = shape._replace(cols=shape.cols + pair[1])
        sizes = (wide.total, wide.doubled(), m.height, m.width, lo + hi, bigger.cols,
                 len(shape), Dims.SCALE, dataclasses.asdict(wide)["depth"])
        return nn.Dense(x, sum(sizes))


aot.target("net", Net, x=aot.f32[2, 8])
"""


def test_dataclasses_and_namedtuples_are_static_records() -> None:
    m = build(DATACLASSES)
    params, _ = m.net.init(jax.random.key(0))
    # 6 + 6 + 3 + 10 + 5 + 8 + 2 + 2 + 2
    assert params["Dense_0"]["kernel"].shape == (8, 44)
    assert "dims=Dims(width=4, depth=1, extra=())" in m.__aotflax_text__


def test_record_misuse_is_located() -> None:
    errors = build_errors("""
    import dataclasses
    from collections import namedtuple

    @dataclasses.dataclass(frozen=True)
    class Dims:
        width: int = 4

    Pair = namedtuple("Pair", ["lo", "hi"])

    class Net(nn.Module):
        def apply(self, x):
            d = Dims(wdith=3)
            e = Dims()
            e.width = 5
            p = Pair(1)
            q = Pair(1, 2)
            q.lo = 3
            r = dataclasses.replace(e, depth=1)
            return x

    aot.target("net", Net, x=aot.f32[2, 8])
    """)
    assert "Dims got an unexpected keyword argument 'wdith'" in errors
    assert "cannot set field 'width' of the frozen Dims" in errors
    assert "dataclasses.replace(value, width=...)" in errors
    assert "Pair is missing required field 'hi'" in errors
    assert "cannot set field 'lo' of the frozen Pair" in errors
    assert "Dims has no field 'depth'" in errors


PARTIALS = """
import functools
import jax


def scaled(x, factor):
    return x * factor


def twice(fn):
    def wrapped(x):
        return fn(fn(x))
    return wrapped


@twice
def add_one(x):
    return x + 1.0


@functools.partial(jax.jit, static_argnums=(1,))
def shift(x, n):
    return x + n


class Block(nn.Module):
    def apply(self, x, features, act):
        return act(nn.Dense(x, features))


class Net(nn.Module):
    def apply(self, x):
        act = functools.partial(nn.gelu, approximate=False)
        block = functools.partial(Block, features=8, act=act)
        half = functools.partial(scaled, factor=0.5)
        y = block(x, name="block")
        seq = nn.Sequential([functools.partial(nn.Dense, features=4), act])
        total = functools.reduce(lambda a, b: a + b, [y, y, y])
        return half(y), seq(y), add_one(x), shift(x, 2), total


aot.target("net", Net, x=aot.f32[2, 8])
"""


def test_functools_partial_and_decorators() -> None:
    m = build(PARTIALS)
    params, _ = m.net.init(jax.random.key(0))
    x = np.random.default_rng(1).normal(size=(2, 8)).astype(np.float32)
    (half, seq, plus_two, shifted, total), _ = m.net.apply(params, {}, x)
    params = jax.tree_util.tree_map(np.asarray, params)
    p = params["block"]["Dense_0"]
    y = np.asarray(jax.nn.gelu(x @ p["kernel"] + p["bias"], approximate=False))
    np.testing.assert_allclose(np.asarray(half), np.asarray(y) * 0.5, rtol=1e-5, atol=1e-6)
    s = params["Dense_0"]
    np.testing.assert_allclose(
        np.asarray(seq), np.asarray(jax.nn.gelu(y @ s["kernel"] + s["bias"], approximate=False)),
        rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(plus_two), x + 2.0)
    np.testing.assert_allclose(np.asarray(shifted), x + 2)
    np.testing.assert_allclose(np.asarray(total), 3 * np.asarray(y), rtol=1e-5, atol=1e-6)
    assert "approximate=False" in m.__aotflax_text__


SELF_AND_FRIENDS = """
class Net(nn.Module):
    def scale(self, y):
        return y * self.factor

    def apply(self, x, bias=None):
        self.factor = 2.0
        self.calls = 0
        self.calls += 1
        if self.is_initializing():
            x = x * 100.0   # never taken: the forward pass is not initializing
        if bias is None and x is not None:
            x = x + self.calls
        zero = x.dtype.type(0)
        h = nn.Dense(x, 4, name="norm-pre-head")
        for i in range(2):
            h = nn.Dense(h, 4, name=f"unit{i + 1:02d}")
        label = f"{self.factor:.3f}"
        return self.scale(h) + zero * len(label)


aot.target("net", Net, x=aot.f32[2, 8])
"""


def test_self_attributes_is_initializing_and_static_identity() -> None:
    m = build(SELF_AND_FRIENDS)
    params, _ = m.net.init(jax.random.key(0))
    assert set(params) == {"norm-pre-head", "unit01", "unit02"}
    x = np.random.default_rng(2).normal(size=(2, 8)).astype(np.float32)
    out, _ = m.net.apply(params, {}, x)
    params = jax.tree_util.tree_map(np.asarray, params)
    h = (x + 1) @ params["norm-pre-head"]["kernel"] + params["norm-pre-head"]["bias"]
    for name in ("unit01", "unit02"):
        h = h @ params[name]["kernel"] + params[name]["bias"]
    np.testing.assert_allclose(np.asarray(out), np.asarray(h) * 2.0, rtol=1e-5)


def test_self_misuse_is_located() -> None:
    errors = build_errors("""
    class Child(nn.Module):
        def apply(self, x, fn):
            return fn(x)

    class Net(nn.Module):
        def helper(self, y):
            return nn.Dense(y, 3)

        def apply(self, x):
            a = self.width
            self.param = 3
            b = self.is_initializing(True)
            return Child(x, fn=self.helper)

    aot.target("net", Net, x=aot.f32[2, 8])
    """)
    assert "self.width is not set in this call of Net" in errors
    assert "cannot set self.param: it is a method of the module" in errors
    assert "self.is_initializing() takes no arguments" in errors
    assert "self.helper of one module is called inside another module" in errors
    for internal in ("SelfValue", "Scope", "BoundMethod", "Poison"):
        assert internal not in errors


@pytest.mark.parametrize("dtype", ["i32", "f32", "bf16"])
def test_dtype_type_is_a_constant_of_that_dtype(dtype: str) -> None:
    """lm1b's `jnp.pad(x, pads, constant_values=x.dtype.type(0))` idiom: a scalar of x's dtype."""
    m = build(f"""
    class Net(nn.Module):
        def apply(self, x):
            one = x.dtype.type(1)
            return x + one, jnp.asarray(one)

    aot.target("net", Net, x=aot.{dtype}[2, 3])
    """)
    x = jnp.ones((2, 3), {"i32": jnp.int32, "f32": jnp.float32, "bf16": jnp.bfloat16}[dtype])
    (out, one), _ = m.net.apply({}, {}, x)
    assert out.dtype == x.dtype and np.asarray(one).dtype == x.dtype
    np.testing.assert_array_equal(np.asarray(out, np.float32), 2.0)


def test_namedtuple_of_arrays_crosses_modules_with_its_field_names() -> None:
    m = build("""
    from typing import NamedTuple

    class State(NamedTuple):
        c: object
        h: object

    class Cell(nn.Module):
        def apply(self, state, x):
            return State(state.c * 2.0, nn.Dense(x, 4) + state.h)

    class Net(nn.Module):
        def apply(self, x):
            s = Cell(State(jnp.ones((2, 4)), jnp.zeros((2, 4))), x)
            c, h = s
            return s.h + c

    aot.target("net", Net, x=aot.f32[2, 8])
    """)
    params, _ = m.net.init(jax.random.key(0))
    x = np.ones((2, 8), np.float32)
    out, _ = m.net.apply(params, {}, x)
    p = jax.tree_util.tree_map(np.asarray, params["Cell_0"]["Dense_0"])
    np.testing.assert_allclose(np.asarray(out), x @ p["kernel"] + p["bias"] + 2.0, rtol=1e-5)


def test_records_holding_arrays_do_not_cross_modules() -> None:
    errors = build_errors("""
    import dataclasses
    import functools
    import ml_collections

    @dataclasses.dataclass
    class Holder:
        x: object

    class Child(nn.Module):
        def apply(self, x, extra):
            return x

    class Net(nn.Module):
        def apply(self, x):
            a = Child(x, Holder(x))
            b = Child(x, functools.partial(jnp.add, x))
            frozen = ml_collections.FrozenConfigDict({"inner": {"width": 2}})
            frozen.inner.width = 3
            return x

    aot.target("net", Net, x=aot.f32[2, 8])
    """)
    assert "Holder(x=array f32[2, 8]) holds arrays" in errors
    assert "functools.partial(function jnp.add) holds arrays" in errors
    assert "a FrozenConfigDict cannot be changed" in errors  # nested configs freeze too


def test_python_ints_beyond_int32_meeting_arrays_are_located() -> None:
    """JAX (without x64) cannot make an array of a Python int beyond int32: a build error."""
    errors = build_errors("""
    class Net(nn.Module):
        def apply(self, x):
            return x + 2**40

    aot.target("net", Net, x=aot.f32[2, 8])
    """)
    assert "the Python int 1099511627776 for 'right' does not fit int32" in errors
    m = build("""
    class Net(nn.Module):
        def apply(self, x):
            return x + (2**31 - 1), x * 1e12

    aot.target("net", Net, x=aot.f32[2])
    """)
    (a, b), _ = m.net.apply({}, {}, jnp.ones(2))
    assert a.dtype == b.dtype == jnp.float32


def test_integer_arrays_of_static_ints_stand_for_static_sizes() -> None:
    """lm1b's decode path: `lax.dynamic_slice(table, jnp.array((0, i, 0)),
    jnp.array((1, 1, df)))`.  The sizes array is made from static ints; the JAX of 2020
    took it as the sizes (today's JAX traces it under jit), so the generated call gets
    the ints themselves."""
    m = build("""
    from jax import lax

    class Net(nn.Module):
        def apply(self, x, i):
            _, _, df = x.shape
            sizes = jnp.array((1, 2, df))
            a = lax.dynamic_slice(x, jnp.array((0, i, 0)), sizes)
            b = lax.dynamic_update_slice(x, a * 2.0, jnp.array((1, i, 0)))
            c = lax.dynamic_slice_in_dim(x, i, jnp.array(3), axis=1)
            return a, b, c, sizes

    aot.target("net", Net, x=aot.f32[2, 5, 8], i=aot.i32[()])
    """)
    # the ints, as the model wrote them (`df` reads its size from x)
    assert "jax.lax.dynamic_slice(x, array, (1, 2, df))" in m.__aotflax_text__
    x = jax.random.normal(jax.random.key(0), (2, 5, 8))
    i = jnp.int32(2)
    (a, b, c, sizes), _ = m.net.apply({}, {}, x, i)
    want = jax.lax.dynamic_slice(x, (0, 2, 0), (1, 2, 8))
    np.testing.assert_array_equal(a, want)
    np.testing.assert_array_equal(b, jax.lax.dynamic_update_slice(x, want * 2.0, (1, 2, 0)))
    np.testing.assert_array_equal(c, jax.lax.dynamic_slice_in_dim(x, 2, 3, axis=1))
    np.testing.assert_array_equal(sizes, [1, 2, 8])  # still an array where used as one
    for sizes, got in (("(1, i)", "i32[2]"), ("(1.0, 2.0)", "f32[2]")):  # traced; floats
        errors = build_errors(f"""
        from jax import lax

        class Net(nn.Module):
            def apply(self, x, i):
                return lax.dynamic_slice(x, (0, 0), jnp.array({sizes}))

        aot.target("net", Net, x=aot.f32[4, 4], i=aot.i32[()])
        """)
        assert f"slice sizes must be static ints, got array {got}" in errors


def test_isinstance_on_static_values_and_builtin_types() -> None:
    """google-research's GroupNorm ResNet: `if isinstance(num_layers, list): num_layers =
    tuple(num_layers)` before a dict lookup. isinstance answers for static values and the
    builtin types (an array is none of them); any other type is a located error."""
    m = build("""
    def get_block_desc(num_layers):
        if isinstance(num_layers, list):
            num_layers = tuple(num_layers)
        return {18: (2, 2), (1, 2): (1, 2)}.get(num_layers, (num_layers, True))

    class Net(nn.Module):
        def apply(self, x, num_layers=18):
            blocks = get_block_desc(num_layers)
            flags = (isinstance(x, (int, float)), isinstance(True, int),
                     isinstance(2.5, (int, str)), isinstance({}, dict))
            assert flags == (False, True, False, True)
            for b in blocks:
                x = nn.Dense(x, 3 * b)
            return x

    aot.target("as_int", Net, x=aot.f32[2, 4])
    aot.target("as_list", Net.partial(num_layers=[1, 2]), x=aot.f32[2, 4])
    """)
    params, _ = m.as_list.init(jax.random.key(0))
    assert [params[k]["kernel"].shape for k in ("Dense_0", "Dense_1")] == [(4, 3), (3, 6)]
    errors = build_errors("""
    class Net(nn.Module):
        def apply(self, x):
            if isinstance(x, nn.Dense):
                x = x + 1
            return x

    aot.target("net", Net, x=aot.f32[2, 4])
    """)
    assert "isinstance(..., " in errors and "only the builtin types bool, int, float" in errors
