"""numpy on the host: the arrays real model code builds with numpy (position tables, masks).

Model code such as Flax's sinusoidal position embedding computes a table with numpy
(`np.zeros`, `np.arange(...)[:, np.newaxis]`, `np.sin`, slice assignment) and hands
it to jnp.  Such a value is a `HostArray`: known at build time by its shape and its
*numpy* dtype (float64 and int64 by default, as numpy has), emitted as the same
numpy call in the generated function, so numpy computes at trace time exactly what
it computed under Flax, bit for bit.  Types follow numpy's own rules: dtypes are
resolved by numpy (`ufunc.resolve_dtypes`, with Python scalars weak as in NEP 50),
shapes by `shapes.py`.  Slice assignment and in-place operators are emitted in place
too, so views and aliases behave as they do in numpy.  Where a host array meets a
traced array, or is handed to a layer or another module, it is an array like any
other (`jnp.asarray` converts it: 64-bit types narrow as JAX does).

numpy on Python scalars (`np.log(10000.0)`, `np.sqrt(d)`, `np.prod(shape)`) is a
static value, computed at build time by numpy itself on those scalars: floats stay
numpy scalars (strongly typed, as JAX treats them), ints and bools become Python
ints and bools.

Nothing here evaluates model code: build-time numpy runs only on static numbers and
on one-element probe arrays of known dtypes, under size limits.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from operator import add, floordiv, mul, neg, pos, sub
from typing import Any, Callable

import numpy as np

from .. import dtypes as dt
from .. import shapes as sh
from ..program import Code, Tensor, describe
from ..values import DType, StaticBuiltin, StaticError, describe_value, to_code
from . import axes, flops
from .calls import FnCall, static_argument_error
from .registry import REGISTRY, CallError, Entry, Signature, qualname

#: Largest numpy array a model may build (elements): the table is computed at trace time.
MAX_HOST_SIZE = 1 << 24
#: Largest static sequence numpy may read at build time (np.prod of a list, np.array(...)).
MAX_STATIC_ITEMS = 1 << 16

#: numpy dtypes a host array may have (numpy has no bfloat16 of its own).
HOST_DTYPES = ("bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
               "float16", "float32", "float64", "complex64", "complex128")


class HostArray(Tensor):
    """A numpy array (or numpy scalar) of the generated code, known by shape and dtype.

    `dtype` is what JAX makes of it (64-bit types narrowed), so every rule of the
    operation table sees it as the array JAX would; `np_dtype` is numpy's own.
    """

    __slots__ = ("np_dtype", "scalar", "_ints", "_ints_at", "roots")
    np_dtype: str
    scalar: bool
    _ints: tuple[int, ...] | None
    _ints_at: Any
    #: The buffers it may share memory with (tokens of `fresh_root`), when known: an
    #: array numpy made anew, or a basic slice of one.  None: unknown (any store may
    #: change it).
    roots: frozenset[int] | None

    def __init__(self, shape: tuple[int, ...], np_dtype: str, scalar: bool = False,
                 ints: tuple[int, ...] | None = None, roots: frozenset[int] | None = None):
        Tensor.__init__(self, tuple(shape), dt.canonicalize(np_dtype), False)
        object.__setattr__(self, "np_dtype", np_dtype)
        #: A numpy scalar (`pe[0, 0]`, `pe.sum()`) rather than an ndarray: immutable.
        object.__setattr__(self, "scalar", scalar)
        object.__setattr__(self, "_ints", ints)
        object.__setattr__(self, "roots", roots)
        object.__setattr__(self, "_ints_at", _store_marks(roots))

    def describe(self) -> str:
        return describe(self.shape, self.np_dtype) + " (numpy)"

    def static_ints(self) -> tuple[int, ...] | None:
        """The items of a 1-d integer array numpy computed from static ints alone
        (`np.multiply(strides, x.shape[1:3])`), or None.

        Python code reads such items as static sizes (`out_h, out_w = ...` then slices).
        A numpy store anywhere since the array was made may have changed it (through a
        view), so then the items are unknown again.
        """
        return self._ints if self._ints_at == _store_marks(self.roots) else None


#: How many numpy stores (`a[i] = v`, `a += v`) the resolver has emitted: [every store,
#: stores into arrays of unknown buffers].  An array of unknown buffers may be a view of
#: any other, so every store may change it; an array of known buffers is changed only by
#: stores into arrays of unknown buffers or into its own buffers (`_ROOT_STORES`).
_STORES = [0, 0]
#: Stores into each known buffer.
_ROOT_STORES: dict[int, int] = {}
_NEXT_ROOT = [0]


def fresh_root() -> frozenset[int]:
    """The buffer of an array numpy makes anew (`np.zeros`, `np.concatenate`, a draw)."""
    _NEXT_ROOT[0] += 1
    return frozenset((_NEXT_ROOT[0],))


def _store_marks(roots: frozenset[int] | None) -> Any:
    """What the stores that may change an array with these buffers have counted so far."""
    if roots is None:
        return _STORES[0]
    return (_STORES[1], tuple(_ROOT_STORES.get(r, 0) for r in sorted(roots)))


def _count_store(target: "HostArray") -> None:
    """Count a store into `target` (`_store_marks`)."""
    _STORES[0] += 1
    if target.roots is None:
        _STORES[1] += 1
        return
    for r in target.roots:
        _ROOT_STORES[r] = _ROOT_STORES.get(r, 0) + 1

#: Longest integer array whose items are kept as static ints.
MAX_STATIC_INTS = 64


def _static_ints(value: Any, shape: tuple[int, ...], np_dtype: Any) -> tuple[int, ...] | None:
    """What `HostArray.static_ints` gives for numpy's result `value`, if it qualifies."""
    if len(shape) != 1 or shape[0] > MAX_STATIC_INTS or np.dtype(np_dtype).kind not in "iu":
        return None
    array = np.asarray(value)
    if array.shape != tuple(shape) or array.dtype != np.dtype(np_dtype):
        return None  # not what the emitted code computes: keep the items unknown
    return tuple(int(v) for v in array)


def is_traced(value: Any) -> bool:
    """An array of the computation (not a numpy host array)."""
    return isinstance(value, Tensor) and not isinstance(value, HostArray)


def is_numpy_scalar(value: Any) -> bool:
    return isinstance(value, np.generic)


# ------------------------------------------------------------------ dtypes


def dtype_name(value: Any, what: str) -> str:
    """The numpy dtype a `dtype=` argument names (np.float32, jnp.int32, 'float32', float)."""
    name: str | None = None
    if isinstance(value, DType):
        name = value.name
    elif isinstance(value, str) and value in HOST_DTYPES:
        name = value
    elif isinstance(value, StaticBuiltin) and value.name in ("float", "int", "bool", "complex"):
        name = {"float": "float64", "int": "int64", "bool": "bool",
                "complex": "complex128"}[value.name]
    if name is None:
        raise CallError("AOT203", f"{what}: 'dtype' must be a dtype such as np.float32, got "
                        f"{describe_value(value)}")
    if name not in HOST_DTYPES:
        raise CallError("AOT220", f"{what}: numpy has no {name} arrays",
                        hint="build the table in float32 with numpy, then cast it with "
                             f"jnp.asarray(table, jnp.{name})")
    return name


def dtype_code(name: str) -> str:
    """How generated code names a numpy dtype."""
    return "np.bool_" if name == "bool" else f"np.{name}"


def _operand_dtype(value: Any) -> Any:
    """What `ufunc.resolve_dtypes` takes for an operand (Python scalars stay weak)."""
    if isinstance(value, HostArray):
        return np.dtype(value.np_dtype)
    if isinstance(value, np.generic):
        return value.dtype
    if isinstance(value, bool):
        return np.dtype(bool)
    if isinstance(value, (int, float, complex)):
        return type(value)
    return _static_array(value, "operand").dtype


def _static_array(value: Any, what: str) -> np.ndarray:
    """A static (nested) sequence of numbers as numpy sees it (built at build time, bounded)."""
    if _count(value) > MAX_STATIC_ITEMS:
        raise CallError("AOT220", f"{what}: a static sequence of more than "
                        f"{MAX_STATIC_ITEMS:,} numbers is too large to read at build time")
    if not _numbers_only(value):
        raise CallError("AOT202", f"{what} expects numbers or numpy arrays, got "
                        f"{describe_value(value)}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out = np.asarray(value)
    except (ValueError, OverflowError, TypeError) as e:
        raise CallError("AOT202", f"{what}: {e}") from None
    if out.dtype.kind not in "biufc":
        raise CallError("AOT202", f"{what} expects numbers, got {describe_value(value)}")
    return out


def _count(value: Any) -> int:
    if isinstance(value, (list, tuple)):
        return sum(_count(v) for v in value) + 1
    return 1


def _numbers_only(value: Any) -> bool:
    if isinstance(value, (list, tuple)):
        return all(_numbers_only(v) for v in value)
    return isinstance(value, (bool, int, float, complex, np.generic)) and not isinstance(
        value, (str, bytes))


def aval(value: Any, what: str) -> tuple[tuple[int, ...], Any]:
    """(shape, numpy dtype or weak Python type) of a host operand; traced arrays are errors."""
    if is_traced(value):
        raise CallError("AOT220", f"{what} runs numpy, which cannot take the array "
                        f"{value.describe()} of the computation",
                        hint="use the jnp function of the same name for arrays of the "
                             "computation")
    if isinstance(value, HostArray):
        return value.shape, np.dtype(value.np_dtype)
    if isinstance(value, (list, tuple)) and any(isinstance(v, Tensor) for v in _flat(value)):
        return _stacked(value, what)
    if isinstance(value, (bool, int, float, complex, np.generic)):
        return (), _operand_dtype(value)
    arr = _static_array(value, what)
    return arr.shape, arr.dtype


def _flat(value: Any) -> list[Any]:
    if isinstance(value, (list, tuple)):
        return [x for v in value for x in _flat(v)]
    return [value]


def _stacked(value: Any, what: str) -> tuple[tuple[int, ...], Any]:
    """`np.array([a, b])` of host arrays: numpy stacks them."""
    inner = [aval(v, what) for v in value]
    shapes = {s for s, _ in inner}
    if len(shapes) != 1:
        raise CallError("AOT210", f"{what}: the arrays have different shapes "
                        f"({', '.join(str(s) for s, _ in inner)})")
    dtype = np.result_type(*[d for _, d in inner])
    return (len(value), *shapes.pop()), dtype


def _concrete(d: Any) -> np.dtype:
    """A numpy dtype for a resolved operand type (a weak Python type takes numpy's default)."""
    if isinstance(d, np.dtype):
        return d
    return np.dtype({bool: "bool", int: "int64", float: "float64", complex: "complex128"}[d])


def _resolve(ufunc: np.ufunc, dtypes: list[Any], what: str) -> np.dtype:
    try:
        return ufunc.resolve_dtypes((*dtypes, None))[-1]
    except (TypeError, ValueError, OverflowError) as e:
        names = ", ".join(str(_concrete(d)) for d in dtypes)
        raise CallError("AOT201", f"{what} is not defined for {names} ({_first_line(e)})") from None


def _first_line(e: BaseException) -> str:
    return str(e).split("\n")[0]


def _probe(fn: Callable[..., Any], what: str, *args: Any, **kwargs: Any) -> np.dtype:
    """The dtype numpy gives `fn` on one-element arrays of the operands' dtypes."""
    try:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            return np.asarray(fn(*args, **kwargs)).dtype
    except (TypeError, ValueError, OverflowError, IndexError, ZeroDivisionError) as e:
        raise CallError("AOT203", f"{what}: {_first_line(e)}") from None


def _dummy(shape: tuple[int, ...], dtype: Any) -> np.ndarray:
    return np.zeros((1,) * len(shape), _concrete(dtype))


# ------------------------------------------------------------------ values and code


def static_result(value: Any) -> Any:
    """A numpy result computed at build time as a static value of the model."""
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value[()]
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    return value


def evaluate(fn: Callable[..., Any], what: str, *args: Any, **kwargs: Any) -> Any:
    """Run a numpy function on static numbers at build time (the caller bounds the inputs)."""
    try:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            return static_result(fn(*args, **kwargs))
    except (TypeError, ValueError, OverflowError, ZeroDivisionError, IndexError) as e:
        raise CallError("AOT349", f"{what}: {_first_line(e)}") from None


def host_code(value: Any) -> Code:
    """Code for an argument of a numpy call (dtypes spelled the numpy way)."""
    if isinstance(value, Tensor):
        return Code((value,))
    if isinstance(value, DType) and value.name in HOST_DTYPES:
        return Code((dtype_code(value.name),))
    if isinstance(value, StaticBuiltin) and value.name in ("float", "int", "bool", "complex"):
        return Code((value.name,))
    if isinstance(value, (list, tuple)) and any(isinstance(v, Tensor) for v in _flat(value)):
        items = [host_code(v) for v in value]
        open_, close = ("(", ")") if isinstance(value, tuple) else ("[", "]")
        tail = "," if isinstance(value, tuple) and len(items) == 1 else ""
        return Code.of(open_, Code.join(", ", items), tail, close)
    try:
        return Code((to_code(value),))
    except StaticError as e:
        raise CallError("AOT305", str(e)) from None


def index_code(index: Any) -> Code:
    items = index if isinstance(index, tuple) else (index,)
    parts = []
    for it in items:
        if isinstance(it, slice):
            text = ":".join("" if v is None else str(v) for v in (it.start, it.stop))
            parts.append(Code((text + (f":{it.step}" if it.step is not None else ""),)))
        elif it is None:
            parts.append(Code(("None",)))
        elif it is Ellipsis:
            parts.append(Code(("...",)))
        else:
            parts.append(host_code(it))
    inner = Code.join(", ", parts)
    if isinstance(index, tuple) and len(items) == 1:
        inner = Code.of(inner, ",")
    return inner


def check_size(shape: tuple[int, ...], what: str) -> None:
    n = sh.size(shape)
    if n > MAX_HOST_SIZE:
        raise CallError("AOT220", f"{what} would make a numpy array of {n:,} elements "
                        f"{tuple(shape)}: more than the {MAX_HOST_SIZE:,} a model may build",
                        hint="numpy arrays become constants of the compiled program; build "
                             "large tables inside the computation with jnp instead")


def new_array(call: FnCall, shape: tuple[int, ...], np_dtype: Any, code: Code,
              stem: str, scalar: bool = False, ints: tuple[int, ...] | None = None,
              roots: frozenset[int] | None = None) -> HostArray:
    """Emit `out = <numpy code>` in the function being built (`ints`: its static items;
    `roots`: its buffers, when known, see `HostArray.roots`)."""
    name = np.dtype(np_dtype).name
    if name not in HOST_DTYPES:
        raise CallError("AOT220", f"{call.written} would make a numpy array of dtype {name}")
    check_size(shape, call.written)
    if call.ctx is None:
        raise CallError("AOT324", f"{call.written} makes a numpy array: it can be used only "
                        "inside a module's apply or an initializer",
                        hint="compute the array where it is used; numpy on static numbers "
                             "(np.sqrt(2.0), np.prod(shape)) works anywhere")
    out = HostArray(tuple(shape), name, scalar, ints, roots)
    call.ctx.emit("ops/call.j2", {"call": code}, (out,), call.span, stem)
    return out


@dataclass
class HostCall(FnCall):
    """A call of a numpy entry; `replacement` replaces `np.name(...)` for operators and methods."""

    #: The function being resolved, or None for numpy at module level (nothing is emitted).
    ctx: Any
    replacement: Code | None = None
    #: The arguments by name as the model passed them, sizes with the code that reads
    #: them from arrays (`x.shape[1:3]`); numpy itself gets them as plain ints (`args`).
    sized: dict[str, Any] | None = None


def call_code(call: FnCall) -> Code:
    """`np.name(args...)` as the user wrote the call (or the operator / method form)."""
    if isinstance(call, HostCall) and call.replacement is not None:
        return call.replacement
    parts = [host_code(a) for a in call.positional]
    parts += [Code.of(f"{k}=", host_code(v)) for k, v in call.keywords.items()]
    return Code.of(f"np.{call.entry.name}", "(", Code.join(", ", parts), ")")


def _all_static(*values: Any) -> bool:
    return not any(isinstance(v, Tensor) for v in values for v in _flat(v))


def _stem(call: FnCall) -> str:
    return call.entry.name.strip("_")


def _shape_of(call: FnCall, fn: Callable[..., Any], *args: Any) -> tuple[int, ...]:
    try:
        return tuple(fn(*args))
    except sh.ShapeError as e:
        raise CallError("AOT210", f"{call.written}: {e}") from None
    except (TypeError, ValueError, IndexError, OverflowError) as e:
        raise static_argument_error(call, args, e) from None


def _no_out(call: FnCall) -> None:
    if call.args.get("out") is not None:
        raise CallError("AOT203", f"{call.written}: out= is not supported (numpy arrays are "
                        "built by assignment)")


# ------------------------------------------------------------------ elementwise


def elementwise(call: FnCall, ufunc: np.ufunc, operands: list[Any], *,
                stem: str | None = None, sized: list[Any] | None = None) -> Any:
    """A ufunc on host operands: static when all are numbers, else a host array."""
    avals = [aval(v, call.written) for v in operands]
    shape = _shape_of(call, sh.broadcast_shapes, *[s for s, _ in avals])
    dtype = _resolve(ufunc, [d for _, d in avals], call.written)
    if _all_static(*operands) and shape == ():
        return evaluate(ufunc, call.written, *[_static_operand(v) for v in operands])
    ints = None
    if len(shape) == 1 and shape[0] <= MAX_STATIC_INTS and _concrete(dtype).kind in "iu":
        known = [_known_operand(v) for v in operands]
        if all(k is not None for k in known):  # numpy on static ints: keep its items
            ints = _static_ints(evaluate(ufunc, call.written, *known), shape, _concrete(dtype))
            if ints is not None:
                ints = _with_sizes(ufunc, sized or operands, ints)
    scalar = all(not s for s, _ in avals) and not any(
        isinstance(v, HostArray) and not v.scalar for v in operands)
    return new_array(call, shape, dtype, call_code(call), stem or _stem(call), scalar, ints)


#: Ufuncs that are Python's operators on ints (for sizes that keep their code).
_INT_OPERATORS: dict[str, Callable[..., Any]] = {
    "add": add, "subtract": sub, "multiply": mul, "floor_divide": floordiv, "negative": neg,
    "positive": pos,
}


def _with_sizes(ufunc: np.ufunc, operands: list[Any], ints: tuple[int, ...]) -> tuple[int, ...]:
    """`ints` (numpy's items), each with the code that computes it where the operands
    read sizes from arrays: `out_h, out_w = np.multiply(strides, x.shape[1:3])` slices
    with `x.shape[1] * 2`, as a person writes it, not a number a shared function must
    take. Python's arithmetic on the operands' items must give numpy's items."""
    op = _INT_OPERATORS.get(ufunc.__name__)
    if op is None:
        return ints
    columns = []
    for v in operands:
        items = v.static_ints() if isinstance(v, HostArray) else v
        if not isinstance(items, (tuple, list)):
            items = (items,)
        if len(items) not in (1, len(ints)) or not all(
                isinstance(i, int) and not isinstance(i, bool) for i in items):
            return ints
        columns.append(items)
    out = tuple(op(*(c[k if len(c) > 1 else 0] for c in columns)) for k in range(len(ints)))
    return out if out == ints else ints


def _static_operand(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return _static_array(value, "operand")
    return value


def _known_operand(value: Any) -> Any:
    """A ufunc operand as numpy at build time: static numbers, or an array of static
    items (`HostArray.static_ints`); None when its value is known only at trace time."""
    if isinstance(value, HostArray):
        ints = value.static_ints()
        return None if ints is None else np.array(ints, value.np_dtype)
    return _static_operand(value) if _all_static(value) else None


UNARY_UFUNCS = (
    "sin", "cos", "tan", "arcsin", "arccos", "arctan", "sinh", "cosh", "tanh", "arcsinh",
    "arccosh", "arctanh", "exp", "exp2", "expm1", "log", "log2", "log10", "log1p", "sqrt",
    "cbrt", "square", "reciprocal", "negative", "positive", "absolute", "fabs", "sign",
    "floor", "ceil", "trunc", "rint", "deg2rad", "rad2deg", "degrees", "radians", "isnan",
    "isinf", "isfinite", "logical_not", "invert", "bitwise_not", "signbit", "conjugate", "abs",
)
BINARY_UFUNCS = (
    "add", "subtract", "multiply", "divide", "true_divide", "floor_divide", "power",
    "float_power", "mod", "remainder", "fmod", "maximum", "minimum", "fmax", "fmin", "arctan2",
    "hypot", "logaddexp", "logaddexp2", "copysign", "equal", "not_equal", "less", "less_equal",
    "greater", "greater_equal", "logical_and", "logical_or", "logical_xor", "bitwise_and",
    "bitwise_or", "bitwise_xor", "left_shift", "right_shift", "gcd", "lcm", "heaviside",
)

#: Python operators on host arrays and the ufuncs numpy runs for them.
OPERATOR_UFUNCS = {
    "+": "add", "-": "subtract", "*": "multiply", "/": "true_divide", "//": "floor_divide",
    "%": "remainder", "**": "power", "@": "matmul", "&": "bitwise_and", "|": "bitwise_or",
    "^": "bitwise_xor", "<<": "left_shift", ">>": "right_shift", "==": "equal",
    "!=": "not_equal", "<": "less", "<=": "less_equal", ">": "greater", ">=": "greater_equal",
}
UNARY_OPERATOR_UFUNCS = {"-": "negative", "+": "positive", "~": "invert"}


def _ufunc_rule(name: str, arity: int) -> Callable[[FnCall], Any]:
    ufunc = getattr(np, name)

    def rule(call: FnCall) -> Any:
        names = [p.name for p in call.entry.signature.params[:arity]]
        given = call.sized if isinstance(call, HostCall) else None
        return elementwise(call, ufunc, [call.args[n] for n in names],
                           sized=None if given is None else [given.get(n) for n in names])

    return rule


def operator(ctx: Any, symbol: str, operands: list[Any], span: Any) -> Any:
    """`a * b`, `-a`, `a < b` with a host array among the operands (numpy's operator)."""
    unary = len(operands) == 1
    name = (UNARY_OPERATOR_UFUNCS if unary else OPERATOR_UFUNCS)[symbol]
    for v in operands:
        aval(v, f"'{symbol}'")  # numbers and numpy arrays only
    if unary:
        code = Code.of(symbol, host_code(operands[0]))
    else:
        code = Code.of(host_code(operands[0]), f" {symbol} ", host_code(operands[1]))
    entry = REGISTRY.lookup("np", name)
    assert entry is not None
    call = HostCall(entry, f"'{symbol}'", {}, list(operands), {}, span, ctx, code)
    if name == "matmul":
        return _matmul(call, operands[0], operands[1])
    return elementwise(call, getattr(np, name), operands, stem="y")


def _matmul(call: FnCall, a: Any, b: Any) -> Any:
    """`a @ b`, np.matmul, np.dot: numpy's matrix product (np.dot of a scalar multiplies)."""
    (sa, da), (sb, db) = aval(a, call.written), aval(b, call.written)
    if call.entry.name == "dot" and not (sa and sb):
        return elementwise(call, np.multiply, [a, b], stem="y")
    fn = sh.dot if call.entry.name == "dot" else sh.matmul
    shape = _shape_of(call, fn, sa, sb)
    dtype = _resolve(np.matmul, [_concrete(da), _concrete(db)], call.written)
    return new_array(call, shape, dtype, call_code(call), "y")


# ------------------------------------------------------------------ reductions


def _reduction_rule(name: str) -> Callable[[FnCall], Any]:
    fn = getattr(np, name)

    def rule(call: FnCall) -> Any:
        _no_out(call)
        a = call.args["a"]
        shape, dtype = aval(a, call.written)
        axis = call.args.get("axis")
        keepdims = bool(call.args.get("keepdims", False))
        kwargs: dict[str, Any] = {}
        if "axis" in call.args:
            kwargs["axis"] = axis
        if "keepdims" in call.args:
            kwargs["keepdims"] = keepdims
        if call.args.get("dtype") is not None:
            kwargs["dtype"] = dtype_name(call.args["dtype"], call.written)
        if "ddof" in call.args:
            kwargs["ddof"] = call.args["ddof"]
        if name in ("cumsum", "cumprod"):
            out_shape = _shape_of(call, sh.cumsum, shape, axis)
        elif name in ("argmax", "argmin"):
            out_shape = _shape_of(call, sh.argmax, shape, axis, keepdims)
        else:
            out_shape = _shape_of(call, sh.reduce_shape, shape, axis, keepdims)
        out_dtype = _probe(fn, call.written, _dummy(shape, dtype), **kwargs)
        if _all_static(a) and out_shape == ():
            return evaluate(fn, call.written, _static_operand(a), **kwargs)
        return new_array(call, out_shape, out_dtype, call_code(call), _stem(call),
                         scalar=out_shape == () and not keepdims)

    return rule


REDUCTIONS = {
    "sum": "a, axis=None, dtype=None, out=None, keepdims=False",
    "prod": "a, axis=None, dtype=None, out=None, keepdims=False",
    "mean": "a, axis=None, dtype=None, out=None, keepdims=False",
    "std": "a, axis=None, dtype=None, out=None, ddof=0, keepdims=False",
    "var": "a, axis=None, dtype=None, out=None, ddof=0, keepdims=False",
    "max": "a, axis=None, out=None, keepdims=False",
    "min": "a, axis=None, out=None, keepdims=False",
    "amax": "a, axis=None, out=None, keepdims=False",
    "amin": "a, axis=None, out=None, keepdims=False",
    "any": "a, axis=None, out=None, keepdims=False",
    "all": "a, axis=None, out=None, keepdims=False",
    "argmax": "a, axis=None, out=None, keepdims=False",
    "argmin": "a, axis=None, out=None, keepdims=False",
    "median": "a, axis=None, out=None, keepdims=False",
    "cumsum": "a, axis=None, dtype=None, out=None",
    "cumprod": "a, axis=None, dtype=None, out=None",
}


# ------------------------------------------------------------------ creation


def _shape_arg(call: FnCall, name: str) -> tuple[int, ...]:
    value = call.args[name]
    if isinstance(value, int) and not isinstance(value, bool):
        value = (value,)
    if not (isinstance(value, (tuple, list)) and all(
            isinstance(d, int) and not isinstance(d, bool) for d in value)):
        raise CallError("AOT203", f"{call.written}: '{name}' must be an int or a tuple of ints, "
                        f"got {describe_value(call.args[name])}")
    if any(d < 0 for d in value):
        raise CallError("AOT203", f"{call.written}: negative dimensions are not allowed, got "
                        f"{tuple(value)}")
    check_size(tuple(value), call.written)
    return tuple(value)


def _dtype_arg(call: FnCall, default: Any) -> Any:
    value = call.args.get("dtype")
    return default if value is None else np.dtype(dtype_name(value, call.written))


def _filled(kind: str) -> Callable[[FnCall], Any]:
    def rule(call: FnCall) -> Any:
        if kind == "like":
            shape, base = aval(call.args["a"], call.written)
            if call.args.get("shape") is not None:
                shape = _shape_arg(call, "shape")
            dtype = _dtype_arg(call, _concrete(base))
        else:
            shape = _shape_arg(call, "shape")
            default: Any = np.dtype("float64")
            if "fill_value" in call.args:
                fill = call.args["fill_value"]
                _, fill_dtype = aval(fill, call.written)
                default = _concrete(fill_dtype)
            dtype = _dtype_arg(call, default)
        if "fill_value" in call.args:
            fshape, _ = aval(call.args["fill_value"], call.written)
            if fshape:
                _shape_of(call, lambda a, b: _broadcast_to(a, b), fshape, shape)
        return new_array(call, shape, dtype, call_code(call), _stem(call), roots=fresh_root())

    return rule


def _broadcast_to(shape: tuple[int, ...], target: tuple[int, ...]) -> tuple[int, ...]:
    if sh.broadcast_shapes(shape, target) != tuple(target):
        raise sh.ShapeError(f"cannot broadcast {tuple(shape)} to {tuple(target)}")
    return tuple(target)


def _arange(call: FnCall) -> Any:
    start, stop, step = call.args["start"], call.args["stop"], call.args["step"]
    for i, v in enumerate((start, stop, step)):
        # (only stop and step may be None: numpy's `arange(None, n)` is a TypeError)
        if (v is not None or i == 0) and (isinstance(v, bool) or not isinstance(
                v, (int, float, np.generic)) or isinstance(v, complex)):
            raise CallError("AOT203", f"np.arange needs static numbers as bounds, got "
                            f"{describe_value(v)}")
    lo, hi = (0, start) if stop is None else (start, stop)
    delta = 1 if step is None else step
    if delta == 0:
        raise CallError("AOT203", "np.arange: the step cannot be zero")
    try:
        n = max(0, math.ceil((float(hi) - float(lo)) / float(delta))) if any(
            isinstance(v, (float, np.floating)) for v in (lo, hi, delta)) else len(
            range(int(lo), int(hi), int(delta)))
    except (OverflowError, ValueError) as e:
        raise CallError("AOT203", f"np.arange: {e}") from None
    check_size((n,), call.written)
    bounds = [v for v in (start, stop, step) if v is not None]
    dtype = _dtype_arg(call, _probe(np.arange, call.written, *[_tiny(v) for v in bounds]))
    return new_array(call, (n,), dtype, call_code(call), "arange", roots=fresh_root())


def _tiny(value: Any) -> Any:
    """A bound of the same type for a dtype probe of np.arange (an empty range)."""
    if isinstance(value, np.generic):
        return value.dtype.type(1)
    return type(value)(1)


def _linspace(call: FnCall) -> Any:
    num = call.args["num"]
    if isinstance(num, bool) or not isinstance(num, int) or num < 0:
        raise CallError("AOT203", f"np.linspace: 'num' must be a non-negative int, got "
                        f"{describe_value(num)}")
    if call.args["retstep"]:
        raise CallError("AOT203", "np.linspace: retstep=True is not supported")
    (sa, da), (sb, db) = aval(call.args["start"], call.written), aval(call.args["stop"],
                                                                         call.written)
    if sa or sb or call.args["axis"] != 0:
        raise CallError("AOT203", "np.linspace: start and stop must be numbers")
    base = np.result_type(_concrete(da), _concrete(db), np.float64)
    dtype = _dtype_arg(call, base)
    return new_array(call, (num,), dtype, call_code(call), "linspace")


def _eye(call: FnCall) -> Any:
    n = call.args["N"] if "N" in call.args else call.args["n"]
    m = call.args.get("M")
    for v in (n, m):
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 0):
            raise CallError("AOT203", f"{call.written}: sizes must be non-negative ints, got "
                            f"{describe_value(v)}")
    shape = (n, n if m is None else m)
    check_size(shape, call.written)
    return new_array(call, shape, _dtype_arg(call, np.dtype("float64")), call_code(call),
                     _stem(call))


def _array(call: FnCall) -> Any:
    obj = call.args["object"] if "object" in call.args else call.args["a"]
    shape, base = aval(obj, call.written)
    ndmin = call.args.get("ndmin", 0)
    if not isinstance(ndmin, int) or isinstance(ndmin, bool) or not 0 <= ndmin <= 32:
        raise CallError("AOT203", f"{call.written}: 'ndmin' must be a small int")
    shape = (1,) * max(0, ndmin - len(shape)) + tuple(shape)
    dtype = _dtype_arg(call, _concrete(base))
    ints = None
    if _all_static(obj) and len(shape) == 1 and shape[0] <= MAX_STATIC_INTS:
        ints = _static_ints(evaluate(np.array, call.written, obj, dtype=dtype, ndmin=ndmin),
                            shape, dtype)
        given = call.sized if isinstance(call, HostCall) else None
        if ints is not None and given is not None:  # `np.array(x.shape[1:3])`
            items = given.get("object", given.get("a"))
            if isinstance(items, (tuple, list)) and tuple(items) == ints:
                ints = tuple(items)
    # np.array copies (a new buffer); np.asarray of a numpy array may be that array
    fresh = call.entry.name == "array" and call.args.get("copy") is True or \
        not isinstance(obj, HostArray)
    return new_array(call, shape, dtype, call_code(call), "table", ints=ints,
                     roots=fresh_root() if fresh else None)


# ------------------------------------------------------------------ shapes


def _same_dtype(fn: Callable[..., Any], *names: str) -> Callable[[FnCall], Any]:
    """Shape functions that keep the dtype: `fn(shape, *static args)` gives the new shape."""

    def rule(call: FnCall) -> Any:
        first = call.entry.signature.params[0].name
        shape, dtype = aval(call.args[first], call.written)
        args = [call.args[n] for n in names]
        for n, a in zip(names, args):
            if isinstance(a, Tensor):
                raise CallError("AOT203", f"{call.written}: '{n}' must be static, got "
                                f"{describe_value(a)}")
        out = _shape_of(call, fn, shape, *args)
        return new_array(call, out, _concrete(dtype), call_code(call), _stem(call))

    return rule


def _reshape_shape(shape: tuple[int, ...], new: Any) -> tuple[int, ...]:
    return sh.reshape(shape, (new,) if isinstance(new, int) else tuple(new))


def _join(fn: Callable[..., Any]) -> Callable[[FnCall], Any]:
    def rule(call: FnCall) -> Any:
        arrays = call.args["arrays"]
        if not isinstance(arrays, (list, tuple)) or not arrays:
            raise CallError("AOT202", f"{call.written} expects a non-empty list of arrays")
        avals = [aval(a, call.written) for a in arrays]
        axis = call.args["axis"]
        if isinstance(axis, bool) or not isinstance(axis, int):
            raise CallError("AOT203", f"{call.written}: 'axis' must be an int")
        shape = _shape_of(call, fn, [s for s, _ in avals], axis)
        dtype = _dtype_arg(call, np.result_type(*[_concrete(d) for _, d in avals]))
        return new_array(call, shape, dtype, call_code(call), _stem(call),
                         ints=_joined_ints(fn, arrays, axis, shape, dtype), roots=fresh_root())

    return rule


def _joined_ints(fn: Callable[..., Any], arrays: Any, axis: int, shape: tuple[int, ...],
                 dtype: Any) -> tuple[int, ...] | None:
    """The static items of `np.concatenate` of 1-d arrays whose items are all static."""
    items = [a.static_ints() if isinstance(a, HostArray) else None for a in arrays]
    if fn is not sh.concatenate or axis not in (0, -1) or any(i is None for i in items):
        return None
    return _static_ints(np.concatenate([np.asarray(i, dtype=dtype) for i in items]), shape,
                        dtype)


def _result_type(call: FnCall, types: list[Any]) -> np.dtype:
    """numpy's `result_type`, Python scalars weak (NEP 50)."""
    try:
        return np.result_type(*[t if isinstance(t, np.dtype) else t(0) for t in types])
    except (TypeError, ValueError) as e:
        raise CallError("AOT201", f"{call.written}: {_first_line(e)}") from None


def _where(call: FnCall) -> Any:
    c, a, b = (aval(call.args[n], call.written) for n in ("condition", "x", "y"))
    shape = _shape_of(call, sh.broadcast_shapes, c[0], a[0], b[0])
    return new_array(call, shape, _result_type(call, [a[1], b[1]]), call_code(call), "where")


def _clip(call: FnCall) -> Any:
    parts = [aval(call.args[n], call.written) for n in ("a", "a_min", "a_max")
             if call.args[n] is not None]
    shape = _shape_of(call, sh.broadcast_shapes, *[s for s, _ in parts])
    return new_array(call, shape, _result_type(call, [d for _, d in parts]), call_code(call),
                     "clip")


def _outer(call: FnCall) -> Any:
    (sa, da), (sb, db) = aval(call.args["a"], call.written), aval(call.args["b"], call.written)
    dtype = _resolve(np.multiply, [da, db], call.written)
    return new_array(call, (sh.size(sa), sh.size(sb)), dtype, call_code(call), "outer")


def _dot(call: FnCall) -> Any:
    names = [p.name for p in call.entry.signature.params[:2]]
    return _matmul(call, call.args[names[0]], call.args[names[1]])


def _round(call: FnCall) -> Any:
    a = call.args["a"]
    decimals = call.args["decimals"]
    if isinstance(decimals, bool) or not isinstance(decimals, int):
        raise CallError("AOT203", f"{call.written}: 'decimals' must be an int")
    shape, dtype = aval(a, call.written)
    if _all_static(a) and shape == ():
        return evaluate(np.round, call.written, _static_operand(a), decimals)
    return new_array(call, shape, _concrete(dtype), call_code(call), "round")


def _pad(call: FnCall) -> Any:
    shape, dtype = aval(call.args["array"], call.written)
    out = _shape_of(call, sh.pad, shape, call.args["pad_width"])
    return new_array(call, out, _concrete(dtype), call_code(call), "pad")


def _delete(call: FnCall) -> Any:
    """`np.delete(arr, obj, axis=None)`: `obj` static (an int or ints); the items
    stay known when numpy computes them from static ints (`np.delete(range(n), axes)`)."""
    arr, obj, axis = call.args["arr"], call.args["obj"], call.args["axis"]
    shape, dtype = aval(arr, call.written)
    if not int_items(obj):
        raise CallError("AOT203", f"{call.written}: 'obj' must be a static int or ints, got "
                        f"{describe_value(obj)}")
    if axis is not None and (isinstance(axis, bool) or not isinstance(axis, int)
                             or not -len(shape) <= axis < len(shape)):
        raise CallError("AOT203", f"{call.written}: 'axis' must be an axis of "
                        f"{describe(shape, np.dtype(_concrete(dtype)).name)}, got "
                        f"{describe_value(axis)}")
    length = sh.size(shape) if axis is None else shape[axis]
    kept = len(evaluate(np.delete, call.written, np.arange(length), obj))
    out = (kept,) if axis is None else tuple(kept if i == axis % len(shape) else d
                                            for i, d in enumerate(shape))
    ints = None
    known = _known_operand(arr)
    if known is not None:
        ints = _static_ints(evaluate(np.delete, call.written, known, obj, axis), out,
                            _concrete(dtype))
    return new_array(call, out, _concrete(dtype), call_code(call), "delete", ints=ints)


def int_items(value: Any) -> bool:
    """An int, or a tuple or list of ints (not bools)."""
    items = value if isinstance(value, (tuple, list)) else (value,)
    return all(isinstance(v, int) and not isinstance(v, bool) for v in items)


# ------------------------------------------------------------------ the table


def _register(name: str, sig: str, rule: Callable[[FnCall], Any], doc: str) -> None:
    REGISTRY.add(Entry(name, ("np",), "function", Signature.parse(sig), rule, "ops/call.j2",
                       doc=doc, extra={"host": True}))


for _n in UNARY_UFUNCS:
    _register(_n, "x", _ufunc_rule(_n, 1), f"numpy np.{_n} (build time on numbers)")
for _n in BINARY_UFUNCS:
    _register(_n, "x1, x2", _ufunc_rule(_n, 2), f"numpy np.{_n} (build time on numbers)")
_register("matmul", "x1, x2", _dot, "numpy matrix product")
_register("dot", "a, b", _dot, "numpy dot product")
_register("outer", "a, b", _outer, "numpy outer product")
for _n, _sig in REDUCTIONS.items():
    _register(_n, _sig, _reduction_rule(_n), f"numpy reduction np.{_n}")
for _n in ("zeros", "ones", "empty"):
    _register(_n, "shape, dtype=None", _filled("new"), f"numpy array of {_n}")
_register("full", "shape, fill_value, dtype=None", _filled("new"), "numpy array filled")
for _n in ("zeros_like", "ones_like", "empty_like"):
    _register(_n, "a, dtype=None, shape=None", _filled("like"), f"numpy np.{_n}")
_register("full_like", "a, fill_value, dtype=None, shape=None", _filled("like"),
          "numpy np.full_like")
_register("arange", "start, stop=None, step=None, dtype=None", _arange, "numpy range")
_register("linspace", "start, stop, num=50, endpoint=True, retstep=False, dtype=None, axis=0",
          _linspace, "numpy evenly spaced numbers")
_register("eye", "N, M=None, k=0, dtype=None", _eye, "numpy identity-like matrix")
_register("identity", "n, dtype=None", _eye, "numpy identity matrix")
_register("tri", "N, M=None, k=0, dtype=None", _eye, "numpy lower triangle of ones")
_register("array", "object, dtype=None, copy=True, ndmin=0", _array, "numpy array")
_register("asarray", "a, dtype=None", _array, "numpy array (no copy)")
_register("reshape", "a, shape", _same_dtype(_reshape_shape, "shape"), "numpy reshape")
_register("transpose", "a, axes=None", _same_dtype(sh.transpose, "axes"), "numpy transpose")
_register("expand_dims", "a, axis", _same_dtype(sh.expand_dims, "axis"), "numpy expand_dims")
_register("squeeze", "a, axis=None", _same_dtype(sh.squeeze, "axis"), "numpy squeeze")
_register("swapaxes", "a, axis1, axis2", _same_dtype(sh.swapaxes, "axis1", "axis2"),
          "numpy swapaxes")
_register("moveaxis", "a, source, destination",
          _same_dtype(sh.moveaxis, "source", "destination"), "numpy moveaxis")
_register("ravel", "a", _same_dtype(lambda s: (sh.size(s),)), "numpy ravel")
_register("tile", "A, reps", _same_dtype(sh.tile, "reps"), "numpy tile")
_register("repeat", "a, repeats, axis=None", _same_dtype(sh.repeat, "repeats", "axis"),
          "numpy repeat")
_register("flip", "m, axis=None", _same_dtype(lambda s, a: s, "axis"), "numpy flip")
_register("roll", "a, shift, axis=None", _same_dtype(lambda s, a, b: s, "shift", "axis"),
          "numpy roll")
_register("broadcast_to", "array, shape",
          _same_dtype(lambda s, t: _broadcast_to(s, tuple(t)), "shape"), "numpy broadcast_to")
for _n in ("triu", "tril"):
    _register(_n, "m, k=0", _same_dtype(lambda s, k: s, "k"), f"numpy {_n}")
_register("concatenate", "arrays, axis=0, dtype=None", _join(sh.concatenate),
          "numpy concatenate")
_register("stack", "arrays, axis=0, dtype=None", _join(sh.stack), "numpy stack")
_register("where", "condition, x, y", _where, "numpy where (three arguments)")
_register("clip", "a, a_min=None, a_max=None", _clip, "numpy clip")
_register("round", "a, decimals=0", _round, "numpy round")
_register("around", "a, decimals=0", _round, "numpy round")
_register("pad", "array, pad_width, mode='constant', constant_values=0", _pad, "numpy pad")
_register("delete", "arr, obj, axis=None", _delete, "numpy delete (static obj)")

for _e in REGISTRY.unique():
    if _e.extra.get("host"):
        flops.RULES[qualname(_e)] = flops.HOST
        axes.RULES[qualname(_e)] = axes.HOST

#: Methods of numpy arrays and the functions they are (`pe.sum(axis=0)` is `np.sum(pe, axis=0)`).
METHODS = {"sum", "prod", "mean", "std", "var", "max", "min", "any", "all", "argmax", "argmin",
           "cumsum", "cumprod", "reshape", "transpose", "squeeze", "swapaxes", "ravel", "flatten",
           "astype", "copy", "clip", "round", "repeat"}


def method(ctx: Any, receiver: HostArray, name: str, args: list, kwargs: dict, span: Any) -> Any:
    """`pe.reshape(...)`, `pe.astype(np.float32)`, `pe.sum(axis=0)` on a host array."""
    written = f"x.{name}"
    code = Code.of(receiver, f".{name}(", Code.join(", ", [host_code(a) for a in args] + [
        Code.of(f"{k}=", host_code(v)) for k, v in kwargs.items()]), ")")
    if name == "T":  # the attribute: `pe.T`
        name, code = "transpose", Code.of(receiver, ".T")
    if name in ("astype", "copy", "flatten"):
        sig = {"astype": "dtype, copy=True", "copy": "order='C'", "flatten": "order='C'"}[name]
        bound = Signature.parse(sig).bind(written, args, kwargs)
        dtype = dtype_name(bound["dtype"], written) if name == "astype" else receiver.np_dtype
        shape = (sh.size(receiver.shape),) if name == "flatten" else receiver.shape
        call = HostCall(REGISTRY.entry("np", "asarray"), written, bound, args, kwargs, span,
                        ctx, code)
        return new_array(call, shape, dtype, code, name)
    if name in ("reshape", "transpose") and len(args) > 1 or (
            name == "reshape" and args and isinstance(args[0], int)):
        args = [tuple(args)]  # pe.reshape(2, 3) is pe.reshape((2, 3))
    entry = REGISTRY.lookup("np", name)
    assert entry is not None
    bound = entry.signature.bind(written, [receiver, *args], kwargs)
    call = HostCall(entry, written, bound, [receiver, *args], kwargs, span, ctx, code)
    return entry.rule(call)


# ------------------------------------------------------------------ indexing and stores


def getitem(ctx: Any, value: HostArray, index: Any, span: Any) -> Any:
    """`pe[np.newaxis, :, :]`, `position[:, 0::2]`: numpy indexing on a host array (an
    item of an array with static items is that static int)."""
    ints = value.static_ints()
    if ints is not None and isinstance(index, int) and not isinstance(index, bool) and (
            -len(ints) <= index < len(ints)):
        return ints[index]
    items = index if isinstance(index, tuple) else (index,)
    spec: list[Any] = []
    for it in items:
        if isinstance(it, (HostArray, list)):
            ishape, idtype = aval(it, "indexing")
            kind = _concrete(idtype).kind
            if kind == "b":
                raise CallError("AOT211", "boolean mask indexing of a numpy array has a "
                                "data-dependent shape", hint="use np.where(mask, x, 0) instead")
            if kind not in "iu":
                raise CallError("AOT211", f"array indices must be integers, got {idtype}")
            spec.append(sh.ArrayIndex(tuple(ishape)))
        elif isinstance(it, Tensor):
            raise CallError("AOT220", "a numpy array cannot be indexed with the array "
                            f"{it.describe()} of the computation",
                            hint="convert it first: jnp.asarray(table)[index]")
        elif isinstance(it, bool) or not (it is None or it is Ellipsis or isinstance(
                it, (int, slice))):
            raise CallError("AOT211", f"unsupported index {describe_value(it)}")
        else:
            spec.append(it)
    try:
        shape = sh.index(value.shape, tuple(spec))
    except sh.ShapeError as e:
        raise CallError("AOT210", f"indexing: {e}") from None
    entry = REGISTRY.lookup("np", "asarray")
    call = HostCall(entry, "indexing", {}, [], {}, span, ctx)  # type: ignore[arg-type]
    scalar = shape == () and not any(it is Ellipsis or isinstance(it, slice) for it in items)
    # a slice of static items keeps them (`a[2:last]` of `np.array(range(1, n))`)
    part = ints[index] if ints is not None and isinstance(index, slice) else None
    basic = all(it is None or it is Ellipsis or isinstance(it, (int, slice)) for it in items)
    return new_array(call, shape, value.np_dtype, Code.of(value, "[", index_code(index), "]"),
                     "item" if scalar else "part", scalar=scalar, ints=part,
                     roots=value.roots if basic else None)


def store(ctx: Any, target: HostArray, index: Any, value: Any, span: Any,
          augmented: str | None = None) -> None:
    """`pe[:, 0::2] = value` (or `pe[i] += value`), emitted in place as numpy does it."""
    if target.scalar:
        raise CallError("AOT332", "numpy scalars are immutable; cannot assign items")
    part = getitem(_Discard(), target, index, span) if index is not _WHOLE else target
    if not isinstance(part, HostArray):  # one of its static items: a numpy scalar's place
        part = HostArray((), target.np_dtype, scalar=True)
    vshape, vdtype = aval(value, "assignment")
    while len(vshape) > len(part.shape) and vshape[0] == 1:
        vshape = vshape[1:]  # numpy drops leading size-1 axes of the value
    try:
        _broadcast_to(vshape, part.shape)
    except sh.ShapeError:
        raise CallError("AOT210", f"cannot assign a value of shape {tuple(vshape)} to a part "
                        f"of shape {part.shape} of a numpy array {target.describe()}") from None
    if augmented is not None:
        name = OPERATOR_UFUNCS[augmented]
        out = _resolve(getattr(np, name), [np.dtype(target.np_dtype), vdtype], f"'{augmented}='")
        if not part.scalar and not np.can_cast(out, target.np_dtype, "same_kind"):
            raise CallError("AOT201", f"'{augmented}=' on a numpy array of {target.np_dtype} "
                            f"would give {out}, which numpy does not store in place",
                            hint=f"write x = x {augmented} y to make a new array")
    elif _concrete(vdtype).kind == "c" and np.dtype(target.np_dtype).kind != "c":
        raise CallError("AOT201", f"cannot store complex values in a numpy array of "
                        f"{target.np_dtype}")
    if ctx is None:
        raise CallError("AOT324", "numpy arrays can be changed only inside a module's apply "
                        "or an initializer")
    if not isinstance(ctx, _Discard):
        _count_store(target)  # static items it (and what may share its memory) had are gone
    where = Code((target,)) if index is _WHOLE else Code.of(target, "[", index_code(index), "]")
    op = f" {augmented}= " if augmented is not None else " = "
    ctx.emit("ops/host_store.j2", {"store": Code.of(where, op, host_code(value))}, (), span,
             "store")


#: `store(..., index=WHOLE)`: the whole array (`pe += 1`).
_WHOLE = object()
WHOLE = _WHOLE


class _Discard:
    """A context that drops what it is given (shape checks that emit nothing)."""

    def emit(self, *args: Any, **kwargs: Any) -> None:
        pass


__all__ = ["HostArray", "MAX_HOST_SIZE", "WHOLE", "getitem", "store", "method", "operator",
           "is_traced", "dtype_name", "dtype_code", "host_code", "evaluate"]


# ------------------------------------------------------------------ numpy's global random state

#: What numpy's legacy global random functions (`np.random.seed(s)`, then
#: `np.random.permutation(...)`) a model may call.  They run at build time on a
#: `RandomState` seeded as `np.random.seed` seeds numpy's global one (its stream is
#: fixed by numpy's compatibility policy), and what they draw is written into the
#: generated code as a table: the same numbers, with no global state at run time.
RANDOM_FUNCTIONS = {
    "permutation": "x", "randint": "low, high=None, size=None, dtype=None",
    "rand": "*d", "randn": "*d", "uniform": "low=0.0, high=1.0, size=None",
    "normal": "loc=0.0, scale=1.0, size=None", "choice": "a, size=None, replace=True, p=None",
    "shuffle": "x",
}
#: Most numbers a draw may write into the generated code.
MAX_RANDOM_TABLE = 1 << 16


def random_draw(ctx: Any, state: Any, name: str, args: list, kwargs: dict, span: Any) -> Any:
    """`np.random.<name>(...)` drawn from `state` at build time: a static number, or a
    numpy array of the generated code holding the numbers drawn."""
    written = f"np.random.{name}"
    bound = Signature.parse(RANDOM_FUNCTIONS[name]).bind(written, args, kwargs)
    if name == "shuffle":
        raise CallError("AOT349", f"{written} shuffles a numpy array in place",
                        hint="use x = np.random.permutation(x), which returns the shuffled copy")
    values = {k: _random_argument(written, k, v) for k, v in bound.items()}
    if name == "permutation" and isinstance(values["x"], int) and not isinstance(
            values["x"], bool) and values["x"] > MAX_RANDOM_TABLE:
        raise CallError("AOT220", f"{written}({values['x']:,}) would write more than "
                        f"{MAX_RANDOM_TABLE:,} numbers into the generated code")
    if name in ("rand", "randn"):
        shape = tuple(values["d"])
        check_size(shape, written)
        try:
            drawn = getattr(state, name)(*shape)
        except (TypeError, ValueError, IndexError, OverflowError) as e:
            raise CallError("AOT349", f"{written}(): {_first_line(e)}") from None
    else:
        size = values.get("size")
        if size is not None:
            check_size((size,) if isinstance(size, int) else tuple(size), written)
        if "dtype" in values:
            if values["dtype"] is None:
                del values["dtype"]  # numpy's default, int64
            elif isinstance(values["dtype"], DType):
                values["dtype"] = np.dtype(values["dtype"].name)
        try:
            drawn = getattr(state, name)(**values)
        except (TypeError, ValueError, IndexError, OverflowError) as e:  # numpy on user values
            raise CallError("AOT349", f"{written}(): {_first_line(e)}") from None
    if not isinstance(drawn, np.ndarray):
        return static_result(drawn)
    if drawn.size > MAX_RANDOM_TABLE:
        raise CallError("AOT220", f"{written} would write {drawn.size:,} numbers into the "
                        f"generated code: more than {MAX_RANDOM_TABLE:,}")
    dtype = drawn.dtype.name
    code = Code((f"np.array({to_code(drawn.tolist())}, dtype={dtype_code(dtype)})",))
    entry = REGISTRY.lookup("np", "asarray")
    call = HostCall(entry, written, {}, [], {}, span, ctx)  # type: ignore[arg-type]
    return new_array(call, drawn.shape, dtype, code, "random",
                     ints=_static_ints(drawn, drawn.shape, dtype), roots=fresh_root())


def _random_argument(written: str, name: str, value: Any) -> Any:
    """An argument of a draw as numpy takes it: static numbers, or the static items of a
    numpy array (`np.random.permutation(a[2:last])`)."""
    if isinstance(value, HostArray):
        ints = value.static_ints()
        if ints is None:
            raise CallError("AOT349", f"{written}: '{name}' must be static at build time (a "
                            f"number, a shape, or a numpy array of known items), got "
                            f"{value.describe()}")
        return np.asarray(ints, dtype=value.np_dtype)
    if isinstance(value, Tensor):
        raise CallError("AOT349", f"{written} draws at build time: '{name}' cannot be the "
                        f"array {value.describe()} of the computation",
                        hint="use jax.random with a key for draws that depend on arrays")
    if isinstance(value, (tuple, list)) and any(isinstance(v, Tensor) for v in value):
        raise CallError("AOT349", f"{written}: '{name}' must be static at build time")
    return value
