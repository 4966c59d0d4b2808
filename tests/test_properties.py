"""Properties of whole builds over random DSL programs (hypothesis).

Each example is a small model file: a chain of layers (Conv, pooling, Dense,
LayerNorm, activations) or of array operations (reshape, transpose,
concatenate, einsum, indexing, reductions) drawn for the current shape.  It is
built through the real pipeline, whose verify stage already checks the emitted
code against the resolved shapes with `jax.eval_shape`; on top of that:

- the resolved output shape and dtype equal `jax.eval_shape` of an independent
  computation: the equivalent Linen module (layers) or the same jnp expressions
  run by JAX itself (array operations);
- the resolved parameter tree equals Linen's;
- emitting the same file twice gives byte-identical text.

Shapes are drawn step by step, each step's input shape taken from JAX, so only
valid programs are generated (errors have their own tests).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import flax.linen as linen
import jax
import jax.numpy as jnp
import numpy as np
from helpers import write_model
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from aotflax.artifacts import render_runtime
from aotflax.diagnostics import BuildError
from aotflax.driver import front_end
from aotflax.program import FileProgram
from aotflax.verify import import_generated, verify_module

PROPERTIES = settings(max_examples=40, deadline=None, derandomize=True, database=None,
                      suppress_health_check=[HealthCheck.too_slow])
SPEC = {"float32": "f32", "int32": "i32"}


@dataclass
class Chain:
    """A model being drawn: DSL statements and their reference, step by step."""

    shape: tuple[int, ...]
    dtype: str = "float32"
    #: DSL statements of `apply(self, x)`, each assigning `x`.
    dsl: list[str] = field(default_factory=list)
    #: Reference steps, run by JAX inside a Linen compact method: x -> x.
    steps: list[Callable[[Any], Any]] = field(default_factory=list)

    def spec(self) -> jax.ShapeDtypeStruct:
        return jax.ShapeDtypeStruct(self.shape, self.dtype)

    def reference(self) -> linen.Module:
        steps = list(self.steps)

        class Reference(linen.Module):
            @linen.compact
            def __call__(self, x):
                for step in steps:
                    x = step(x)
                return x

        return Reference()

    def current(self) -> jax.ShapeDtypeStruct:
        """The shape and dtype after the steps so far, as JAX computes them."""
        return jax.eval_shape(lambda x: self.reference().init_with_output(
            jax.random.key(0), x)[0], self.spec())

    def add(self, dsl: str, step: Callable[[Any], Any]) -> None:
        self.dsl.append(f"x = {dsl}")
        self.steps.append(step)

    def source(self) -> str:
        body = "".join(f"        {line}\n" for line in self.dsl)
        dims = ", ".join(map(str, self.shape))
        return (f"class Model(nn.Module):\n    def apply(self, x):\n{body}        return x\n\n\n"
                f'aot.target("model", Model, x=aot.{SPEC[self.dtype]}[{dims}])\n')


def build_twice(source: str) -> FileProgram:
    """Build a model file, check that a second emission is byte-identical, verify it."""
    path = write_model(source)
    first, second = front_end([path], path.parent), front_end([path], path.parent)
    if first.diagnostics:
        raise BuildError(first.diagnostics)
    f = first.files[0]
    assert f.text == second.files[0].text, "emitting the same file twice differs"
    _, importer = import_generated({f.out_rel: f.text}, render_runtime())
    verify_module(importer(f.module), f.program)  # emitted code vs resolved shapes
    assert f.program is not None
    return f.program


def check_against_reference(chain: Chain) -> None:
    program = build_twice(chain.source())
    (target,) = program.targets
    model = chain.reference()
    out, variables = jax.eval_shape(
        lambda x: model.init_with_output(jax.random.key(0), x), chain.spec())
    assert list(target.outputs) == [(tuple(out.shape), str(out.dtype))], chain.source()
    linen_params = {
        tuple(str(k.key) for k in path): (tuple(leaf.shape), str(leaf.dtype))
        for path, leaf in jax.tree_util.tree_leaves_with_path(variables.get("params", {}))}
    assert {d.path: (d.shape, d.dtype) for d in target.params} == linen_params, chain.source()


# ------------------------------------------------------------------ layer chains


@st.composite
def conv_step(draw: st.DrawFn, chain: Chain) -> None:
    shape = chain.current().shape
    spatial, cin = shape[1:-1], shape[-1]
    kernel = tuple(draw(st.integers(1, min(3, s))) for s in spatial)
    strides = tuple(draw(st.integers(1, 2)) for _ in spatial)
    dilation = tuple(draw(st.integers(1, 2)) for _ in spatial)
    groups = draw(st.sampled_from([g for g in (1, 2, 3) if cin % g == 0]))
    features = groups * draw(st.integers(1, 3))
    bias = draw(st.booleans())
    input_dilation = None
    kind = draw(st.sampled_from(["SAME", "VALID", "int", "pairs"]))
    if kind in ("SAME", "VALID"):
        padding: Any = kind
    elif kind == "int":
        padding = draw(st.integers(0, 2))
    else:
        padding = tuple((draw(st.integers(0, 2)), draw(st.integers(0, 2))) for _ in spatial)
    if kind in ("int", "pairs") and draw(st.booleans()):
        input_dilation = tuple(draw(st.integers(1, 2)) for _ in spatial)
    # an output dimension must stay positive (JAX decides below)
    args = {"strides": strides, "padding": padding, "kernel_dilation": dilation,
            "feature_group_count": groups}
    if input_dilation is not None:
        args["input_dilation"] = input_dilation
    dsl_args = ", ".join(f"{k}={v!r}" for k, v in args.items())
    linen_args = dict(args, use_bias=bias)
    chain.add(f"nn.Conv(x, {features}, {kernel!r}, {dsl_args}, bias={bias})",
              lambda x: linen.Conv(features, kernel, **linen_args)(x))
    _require_valid(chain)


@st.composite
def pool_step(draw: st.DrawFn, chain: Chain) -> None:
    spatial = chain.current().shape[1:-1]
    window = tuple(draw(st.integers(1, min(3, s))) for s in spatial)
    strides = tuple(draw(st.integers(1, 2)) for _ in spatial)
    padding = draw(st.sampled_from(["SAME", "VALID"]))
    if draw(st.booleans()):
        chain.add(f"nn.max_pool(x, {window!r}, strides={strides!r}, padding={padding!r})",
                  lambda x: linen.max_pool(x, window, strides=strides, padding=padding))
    else:
        include = draw(st.booleans())
        chain.add(f"nn.avg_pool(x, {window!r}, strides={strides!r}, padding={padding!r}, "
                  f"count_include_pad={include})",
                  lambda x: linen.avg_pool(x, window, strides=strides, padding=padding,
                                           count_include_pad=include))


@st.composite
def pointwise_step(draw: st.DrawFn, chain: Chain) -> None:
    kind = draw(st.sampled_from(["dense", "layer_norm", "relu", "gelu", "residual"]))
    if kind == "dense":
        features = draw(st.integers(1, 6))
        chain.add(f"nn.Dense(x, {features})", lambda x: linen.Dense(features)(x))
    elif kind == "layer_norm":
        chain.add("nn.LayerNorm(x)", lambda x: linen.LayerNorm()(x))
    elif kind == "residual":
        chain.add("x + nn.relu(x)", lambda x: x + linen.relu(x))
    else:
        chain.add(f"nn.{kind}(x)", getattr(linen, kind))


def _require_valid(chain: Chain, positive: bool = True) -> None:
    """Keep only programs JAX accepts (and, for layers, without empty dimensions)."""
    try:
        shape = chain.current().shape
    except Exception:  # JAX rejects the configuration: not a valid program
        assume(False)
        return
    assume(not positive or all(d > 0 for d in shape))


@st.composite
def layer_chain(draw: st.DrawFn) -> Chain:
    n = draw(st.sampled_from([1, 2, 2]))
    spatial = tuple(draw(st.integers(3, 8)) for _ in range(n))
    chain = Chain((draw(st.integers(1, 2)), *spatial, draw(st.integers(1, 4))))
    for _ in range(draw(st.integers(1, 3))):
        step = draw(st.sampled_from([conv_step, conv_step, pool_step, pointwise_step]))
        draw(step(chain))
    if draw(st.booleans()):
        features = draw(st.integers(1, 5))
        chain.add("x.reshape((x.shape[0], -1))", lambda x: x.reshape((x.shape[0], -1)))
        chain.add(f"nn.Dense(x, {features})", lambda x: linen.Dense(features)(x))
    return chain


@PROPERTIES
@given(layer_chain())
def test_layer_chains_match_linen(chain: Chain) -> None:
    check_against_reference(chain)


# ------------------------------------------------------------------ array-op chains
# Each step is a jnp expression of `x` that reads the same in the DSL and in Python,
# so JAX evaluates the very text the compiler resolved.


def _jnp_step(chain: Chain, text: str) -> None:
    chain.add(text, lambda x: eval(text, {"jnp": jnp, "jax": jax, "x": x}))
    _require_valid(chain, positive=False)


@st.composite
def array_step(draw: st.DrawFn, chain: Chain) -> None:
    shape = chain.current().shape
    rank, size = len(shape), int(np.prod(shape))
    options = ["transpose", "reshape", "index", "reduce", "expand", "einsum"]
    if rank >= 1 and size <= 64:
        options.append("concatenate")
    if rank >= 2:
        options += ["swapaxes", "matmul"]
    if 1 in shape:
        options.append("squeeze")
    kind = draw(st.sampled_from(options))
    letters = "abcd"[:rank]
    if kind == "transpose":
        perm = tuple(draw(st.permutations(range(rank))))
        text = draw(st.sampled_from([f"jnp.transpose(x, {perm!r})", f"x.transpose({perm!r})"]))
    elif kind == "reshape":
        lead = draw(st.integers(0, rank))
        text = f"x.reshape(x.shape[:{lead}] + (-1,))"
    elif kind == "index":
        text = f"x[{_index(draw, shape)}]"
    elif kind == "reduce":
        fn = draw(st.sampled_from(["sum", "mean", "max", "min"]))
        axis = draw(st.integers(-rank, rank - 1)) if rank else None
        text = f"jnp.{fn}(x, axis={axis}, keepdims={draw(st.booleans())})"
    elif kind == "expand":
        text = f"jnp.expand_dims(x, {draw(st.integers(-rank - 1, rank))})"
    elif kind == "squeeze":
        axis = draw(st.sampled_from([i for i, d in enumerate(shape) if d == 1]))
        text = f"jnp.squeeze(x, axis={axis})"
    elif kind == "concatenate":
        axis = draw(st.integers(-rank, rank - 1))
        text = f"jnp.concatenate([x, x + 1, x], axis={axis})"
    elif kind == "swapaxes":
        a, b = draw(st.integers(0, rank - 1)), draw(st.integers(0, rank - 1))
        text = f"jnp.swapaxes(x, {a}, {b})"
    elif kind == "matmul":
        text = "x @ jnp.swapaxes(x, -1, -2)"
    else:  # einsum: permute and maybe contract, one or two operands
        out = "".join(draw(st.permutations(letters)))[:draw(st.integers(0, rank))]
        text = draw(st.sampled_from([f'jnp.einsum("{letters}->{out}", x)',
                                     f'jnp.einsum("{letters},{letters}->{out}", x, x)']))
    _jnp_step(chain, text)


def _index(draw: st.DrawFn, shape: tuple[int, ...]) -> str:
    parts = []
    for d in shape:
        kind = draw(st.sampled_from(["all", "slice", "int", "none"] if d else ["all"]))
        if kind == "all":
            parts.append(":")
        elif kind == "int":
            parts.append(str(draw(st.integers(-d, d - 1))))
        elif kind == "none":
            parts.append(":, None")
        else:
            start, stop = draw(st.integers(-d, d)), draw(st.integers(-d, d))
            step = draw(st.sampled_from(["", ":2", ":-1"]))
            parts.append(f"{start}:{stop}{step}")
    return ", ".join(parts) or "..."


@st.composite
def array_chain(draw: st.DrawFn) -> Chain:
    shape = tuple(draw(st.lists(st.sampled_from([3, 2, 4, 1]), min_size=1, max_size=3)))
    chain = Chain(shape, draw(st.sampled_from(["float32", "int32"])))
    for _ in range(draw(st.integers(2, 4))):
        draw(array_step(chain))
    return chain


@PROPERTIES
@given(array_chain())
def test_array_chains_match_jax(chain: Chain) -> None:
    check_against_reference(chain)
