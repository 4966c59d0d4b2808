"""Result dtypes of the operation table against `jax.eval_shape`, for every dtype mix.

Each elementwise entry (functions, lax ops, activations, Python operators) and
each `x.at[i]` method is called through its rule on abstract operands of every
kind (bool, int32, uint8, float32, bfloat16, complex64, weak float32 / int32
arrays and Python scalars) and must give JAX's shape, dtype and weak type, or
reject the operands exactly where JAX raises.  Only abstract evaluation: nothing
is compiled (the sweep costs about twenty seconds of CPU).
"""

from __future__ import annotations

import itertools
import operator
import warnings
from typing import Any, Callable

import jax
import jax.numpy as jnp
import pytest

from aotflax.ops import REGISTRY, CallError
from aotflax.ops.calls import FnCall
from aotflax.ops.registry import REQUIRED, Entry
from aotflax.program import Tensor

ARRAYS = [Tensor((3,), d, w) for d, w in [
    ("float32", False), ("int32", False), ("bool", False), ("bfloat16", False),
    ("uint8", False), ("float32", True), ("int32", True), ("complex64", False)]]
SCALARS = [2.0, 3, True]

_OPERATORS: dict[str, Callable[..., Any]] = {
    "+": operator.add, "-": operator.sub, "*": operator.mul, "/": operator.truediv,
    "//": operator.floordiv, "%": operator.mod, "**": operator.pow, "@": operator.matmul,
    "&": operator.and_, "|": operator.or_, "^": operator.xor, "<<": operator.lshift,
    ">>": operator.rshift, "==": operator.eq, "!=": operator.ne, "<": operator.lt,
    "<=": operator.le, ">": operator.gt, ">=": operator.ge,
}
_UNARY_OPERATORS = {"-": operator.neg, "+": operator.pos, "~": operator.invert}


class _Context:
    """The part of resolve a rule talks to: new tensors; emitted code is dropped."""

    def new_tensor(self, shape: tuple[int, ...], dtype: str, weak: bool = False) -> Tensor:
        return Tensor(tuple(shape), dtype, weak)

    def emit(self, *args: Any, **kwargs: Any) -> None:
        pass


def _swept() -> list[tuple[str, Entry]]:
    seen: set[int] = set()
    out = []
    for key, entry in sorted(REGISTRY.entries.items()):
        if "kind_spec" in entry.extra and id(entry) not in seen and entry.kind != "method":
            seen.add(id(entry))
            out.append((key, entry))
    return out


def _jax_function(entry: Entry) -> Callable[..., Any]:
    symbol = entry.extra.get("symbol")
    if symbol is not None:
        arity = len(entry.signature.params)
        return (_UNARY_OPERATORS if arity == 1 else _OPERATORS)[symbol]
    assert entry.code is not None
    root, *path = entry.code.split(".")
    fn: Any = {"jnp": jnp, "jax": jax}[root]
    for part in path:
        fn = getattr(fn, part)
    return fn


def _ours(entry: Entry, key: str, args: tuple) -> tuple | str:
    bound = entry.signature.bind(key, list(args), {})
    call = FnCall(entry, key, bound, list(args), {}, None, _Context())  # type: ignore[arg-type]
    try:
        r = entry.rule(call)
    except CallError as e:
        return f"error: {e.message}"
    return r.shape, r.dtype, r.weak and r.dtype != "bool"


def _theirs(fn: Callable[..., Any], args: tuple) -> tuple | str:
    positions = [i for i, a in enumerate(args) if isinstance(a, Tensor)]

    def call(*arrays: Any) -> Any:
        full = list(args)
        for i, a in zip(positions, arrays):
            full[i] = a
        return fn(*full)

    specs = [jax.ShapeDtypeStruct(args[i].shape, args[i].dtype, weak_type=args[i].weak)
             for i in positions]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            r = jax.eval_shape(call, *specs)
    except (TypeError, ValueError) as e:
        return f"error: {type(e).__name__}"
    return tuple(r.shape), str(r.dtype), bool(r.weak_type) and str(r.dtype) != "bool"


def _operands(entry: Entry) -> list[tuple]:
    arity = sum(1 for p in entry.signature.params
                if p.kind == "positional" and p.default is REQUIRED)
    if arity == 1:
        return [(a,) for a in ARRAYS]
    pairs = itertools.product(ARRAYS + SCALARS, repeat=2)
    return [p for p in pairs if any(isinstance(v, Tensor) for v in p)]


def _label(args: tuple) -> str:
    return ", ".join(a.describe() + ("*" if a.weak else "") if isinstance(a, Tensor) else repr(a)
                     for a in args)


@pytest.mark.parametrize("key,entry", _swept(), ids=[k for k, _ in _swept()])
def test_result_dtype_matches_jax(key: str, entry: Entry) -> None:
    fn = _jax_function(entry)
    wrong = []
    for args in _operands(entry):
        ours, theirs = _ours(entry, key, args), _theirs(fn, args)
        if isinstance(ours, str) and isinstance(theirs, str):
            continue
        if ours != theirs:
            wrong.append(f"{key}({_label(args)}): ours {ours}, jax {theirs}")
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("name", sorted(REGISTRY.members("at")))
def test_at_methods_match_jax(name: str) -> None:
    """`x.at[0].name(v)` for every operand dtype and every value dtype (or Python scalar)."""
    entry = REGISTRY.lookup("at", name)
    assert entry is not None
    wrong = []
    for x in ARRAYS:
        for v in [Tensor((), a.dtype, a.weak) for a in ARRAYS] + SCALARS:
            args = (x, 0) if name == "get" else (x, 0, v)
            ours = _ours(entry, f"x.at[0].{name}", args)

            def call(a: Any, b: Any = None, v: Any = v) -> Any:
                ref = a.at[0]
                return ref.get() if name == "get" else getattr(ref, name)(
                    b if isinstance(v, Tensor) else v)

            specs = [jax.ShapeDtypeStruct(x.shape, x.dtype, weak_type=x.weak)]
            if isinstance(v, Tensor) and name != "get":
                specs.append(jax.ShapeDtypeStruct((), v.dtype, weak_type=v.weak))
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    r = jax.eval_shape(call, *specs)
                theirs: Any = (tuple(r.shape), str(r.dtype), bool(r.weak_type) and
                               str(r.dtype) != "bool")
            except (TypeError, ValueError) as e:
                theirs = f"error: {type(e).__name__}"
            if ours != theirs and not (isinstance(ours, str) and isinstance(theirs, str)):
                wrong.append(f"x.at[0].{name}({_label(args[2:])}) on {_label((x,))}: ours {ours}, "
                             f"jax {theirs}")
    assert not wrong, "\n".join(wrong)


def test_the_sweep_covers_the_elementwise_families() -> None:
    """A family that loses its marker would silently leave the sweep."""
    keys = {k for k, _ in _swept()}
    for k in ("jnp.exp", "jnp.add", "jnp.logical_and", "jnp.power", "lax.add", "lax.pow",
              "jax.nn.relu", "operator.add", "operator.neg", "operator.pow"):
        assert k in keys or any(k == f"{ns}.{e.name}" for _, e in _swept() for ns in e.namespaces)
    assert len(keys) > 150
