"""JAX dtype names and type promotion, computed statically.

The resolve stage never imports jax, so this module restates what
`jax/_src/dtypes.py` decides: which dtypes exist, what they canonicalize to
when `jax_enable_x64` is off, and JAX's type promotion lattice including
*weak types* (the type of a Python scalar, which adopts the other operand's
dtype instead of forcing its own).

Conventions, said once: a dtype is a plain string such as ``"float32"``; an
abstract dtype is a ``(dtype, weak)`` pair; `x64` mirrors `jax_enable_x64`
and defaults to off, as in JAX.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

__all__ = [
    "ALL_DTYPES",
    "AbstractDtype",
    "Operand",
    "binary_op_dtype",
    "canonicalize",
    "check_dtype",
    "default_dtype",
    "from_short_name",
    "is_bool",
    "is_complex",
    "is_floating",
    "is_inexact",
    "is_integer",
    "is_signed",
    "is_unsigned",
    "itemsize",
    "kind",
    "promote",
    "result_type",
    "short_name",
]

#: A dtype together with its weak-type flag, as JAX's abstract values carry it.
AbstractDtype = tuple[str, bool]
#: What promotion accepts: an abstract dtype or a (weakly typed) Python scalar.
Operand = AbstractDtype | bool | int | float | complex


@dataclass(frozen=True, slots=True)
class _Info:
    """Static facts about one dtype."""

    kind: str  #: NumPy kind letter: "b", "u", "i", "f" or "c".
    itemsize: int  #: bytes per element.
    short: str  #: short name used in messages, as jaxprs print it ("f32").


_INFO: dict[str, _Info] = {
    "bool": _Info("b", 1, "bool"),
    "uint8": _Info("u", 1, "u8"),
    "uint16": _Info("u", 2, "u16"),
    "uint32": _Info("u", 4, "u32"),
    "uint64": _Info("u", 8, "u64"),
    "int8": _Info("i", 1, "i8"),
    "int16": _Info("i", 2, "i16"),
    "int32": _Info("i", 4, "i32"),
    "int64": _Info("i", 8, "i64"),
    "bfloat16": _Info("f", 2, "bf16"),
    "float16": _Info("f", 2, "f16"),
    "float32": _Info("f", 4, "f32"),
    "float64": _Info("f", 8, "f64"),
    "complex64": _Info("c", 8, "c64"),
    "complex128": _Info("c", 16, "c128"),
}

#: Every dtype this compiler knows, in JAX's promotion order within each kind.
ALL_DTYPES: tuple[str, ...] = tuple(_INFO)

_FROM_SHORT: dict[str, str] = {info.short: name for name, info in _INFO.items()}

# jax_enable_x64=False narrows every 64-bit type to its 32-bit sibling.
_X32_CANONICAL: dict[str, str] = {
    "int64": "int32",
    "uint64": "uint32",
    "float64": "float32",
    "complex128": "complex64",
}

# The dtype a weakly typed result of each kind takes (jax `default_types`).
_DEFAULT_BY_KIND: dict[str, str] = {
    "b": "bool",
    "i": "int64",
    "u": "uint64",
    "f": "float64",
    "c": "complex128",
}


def check_dtype(dtype: str) -> str:
    """Return `dtype` unchanged, or raise ValueError if it is not a known name."""
    if dtype not in _INFO:
        raise _unknown(dtype)
    return dtype


def _unknown(dtype: str) -> ValueError:
    return ValueError(f"unknown dtype {dtype!r}; expected one of {', '.join(ALL_DTYPES)}")


def kind(dtype: str) -> str:
    """The NumPy kind letter of `dtype`: "b", "i", "u", "f" or "c" (ValueError if unknown)."""
    info = _INFO.get(dtype)
    if info is None:
        raise _unknown(dtype)
    return info.kind


def is_bool(dtype: str) -> bool:
    """Whether `dtype` is ``bool``."""
    return kind(dtype) == "b"


def is_integer(dtype: str) -> bool:
    """Whether `dtype` is a (signed or unsigned) integer; bool is not."""
    return kind(dtype) in ("i", "u")


def is_signed(dtype: str) -> bool:
    """Whether `dtype` is a signed integer (like ``np.signedinteger``)."""
    return kind(dtype) == "i"


def is_unsigned(dtype: str) -> bool:
    """Whether `dtype` is an unsigned integer."""
    return kind(dtype) == "u"


def is_floating(dtype: str) -> bool:
    """Whether `dtype` is a real floating type (bfloat16 included)."""
    return kind(dtype) == "f"


def is_complex(dtype: str) -> bool:
    """Whether `dtype` is complex."""
    return kind(dtype) == "c"


def is_inexact(dtype: str) -> bool:
    """Whether `dtype` is floating or complex."""
    return kind(dtype) in ("f", "c")


def itemsize(dtype: str) -> int:
    """Bytes per element of `dtype`."""
    return _INFO[check_dtype(dtype)].itemsize


def short_name(dtype: str) -> str:
    """The short name used in messages: ``"f32"``, ``"bf16"``, ``"u8"``, ``"bool"``."""
    if dtype.startswith("key<"):  # a typed random key: described as JAX prints it
        return dtype
    return _INFO[check_dtype(dtype)].short


def from_short_name(short: str) -> str:
    """Inverse of `short_name`: ``"f32"`` -> ``"float32"``."""
    try:
        return _FROM_SHORT[short]
    except KeyError:
        raise ValueError(f"unknown short dtype name {short!r}") from None


def canonicalize(dtype: str, x64: bool = False) -> str:
    """The dtype JAX actually uses for `dtype` (64-bit types narrow without x64)."""
    check_dtype(dtype)
    return dtype if x64 else _X32_CANONICAL.get(dtype, dtype)


def default_dtype(kind: str, x64: bool = False) -> str:
    """JAX's default dtype for a NumPy kind letter ("i" -> int32 without x64)."""
    return canonicalize(_DEFAULT_BY_KIND[kind], x64)


# --- The promotion lattice ------------------------------------------------
#
# Nodes are dtype names plus three weak nodes: the types of Python int, float
# and complex scalars.  Each node maps to the nodes immediately above it; the
# result of promotion is the least upper bound of the operands' nodes.  This
# is JAX's `_type_promotion_lattice(strict=False, ...)` restricted to our
# dtypes.

_WEAK_INT, _WEAK_FLOAT, _WEAK_COMPLEX = "int*", "float*", "complex*"
_WEAK_NODE_BY_KIND: dict[str, str] = {
    "b": "bool",  # a weak bool is just bool: it is the bottom of the lattice.
    "u": _WEAK_INT,
    "i": _WEAK_INT,
    "f": _WEAK_FLOAT,
    "c": _WEAK_COMPLEX,
}
_WEAK_NODE_KIND: dict[str, str] = {_WEAK_INT: "i", _WEAK_FLOAT: "f", _WEAK_COMPLEX: "c"}

_LATTICE: dict[str, tuple[str, ...]] = {
    "bool": (_WEAK_INT,),
    _WEAK_INT: ("uint8", "int8"),
    "uint8": ("int16", "uint16"),
    "uint16": ("int32", "uint32"),
    "uint32": ("int64", "uint64"),
    "uint64": (_WEAK_FLOAT,),
    "int8": ("int16",),
    "int16": ("int32",),
    "int32": ("int64",),
    "int64": (_WEAK_FLOAT,),
    _WEAK_FLOAT: ("bfloat16", "float16", _WEAK_COMPLEX),
    "bfloat16": ("float32",),
    "float16": ("float32",),
    "float32": ("float64", "complex64"),
    "float64": ("complex128",),
    _WEAK_COMPLEX: ("complex64",),
    "complex64": ("complex128",),
    "complex128": (),
}

# Without x64, JAX avoids forming a 64-bit type from 32-bit inputs: the only
# such edge, uint32 -> int64, becomes uint32 -> int32.
_X32_LATTICE: dict[str, tuple[str, ...]] = {**_LATTICE, "uint32": ("int32", "uint64")}


@functools.cache
def _upper_bounds(x64: bool) -> dict[str, frozenset[str]]:
    """For each node, every node at or above it (the transitive closure)."""
    lattice = _LATTICE if x64 else _X32_LATTICE

    def above(node: str) -> frozenset[str]:
        return frozenset({node}).union(*(above(up) for up in lattice[node]))

    return {node: above(node) for node in lattice}


@functools.cache
def _least_upper_bound(nodes: frozenset[str], x64: bool) -> str:
    """The least node above every node in `nodes`."""
    ubs = _upper_bounds(x64)
    common = frozenset.intersection(*(ubs[n] for n in nodes))
    least = [c for c in common if common <= ubs[c]]
    assert len(least) == 1, f"promotion lattice is not a lattice at {sorted(nodes)}"
    return least[0]


def _abstract(operand: Operand, x64: bool) -> AbstractDtype:
    """The canonical ``(dtype, weak)`` of an operand or Python scalar."""
    if isinstance(operand, tuple):
        dtype, weak = operand
        return canonicalize(dtype, x64), bool(weak)
    # bool before int: bool subclasses int, and JAX treats Python bools as strong.
    for py_type, dtype, weak in _PYTHON_SCALARS:
        if isinstance(operand, py_type):
            return canonicalize(dtype, x64), weak
    raise TypeError(f"expected a (dtype, weak) pair or a Python scalar, got {operand!r}")


_PYTHON_SCALARS: tuple[tuple[type, str, bool], ...] = (
    (bool, "bool", False),
    (int, "int64", True),
    (float, "float64", True),
    (complex, "complex128", True),
)


def _node(dtype: str, weak: bool) -> str:
    return _WEAK_NODE_BY_KIND[kind(dtype)] if weak else dtype


def _node_dtype(node: str, x64: bool) -> str:
    kind = _WEAK_NODE_KIND.get(node)
    return node if kind is None else default_dtype(kind, x64)


def promote(*operands: Operand, x64: bool = False) -> AbstractDtype:
    """The abstract dtype JAX arithmetic gives its promoted operands.

    This is `jax._src.dtypes.lattice_result_type`, which `jnp` binary ops use:
    an all-weak promotion keeps the operands' own width (weak bf16 + 1 stays
    weak bf16), unlike `result_type`.
    """
    if not operands:
        raise ValueError("at least one operand is required")
    return _promote(tuple(_abstract(op, x64) for op in operands), x64)


@functools.lru_cache(maxsize=4096)
def _promote(pairs: tuple[AbstractDtype, ...], x64: bool) -> AbstractDtype:
    """`promote` of canonical abstract dtypes (few distinct mixes: computed once each)."""
    dtypes = {dtype for dtype, _ in pairs}
    all_weak = all(weak for _, weak in pairs)
    if len(pairs) == 1:
        dtype, weak = pairs[0]
    elif len(dtypes) == 1 and not all_weak:
        dtype, weak = dtypes.pop(), False
    elif all_weak:
        # JAX bounds the strong counterparts, then marks the result weak.
        node = _least_upper_bound(frozenset(dtypes), x64)
        dtype, weak = _node_dtype(node, x64), True
    else:
        node = _least_upper_bound(frozenset(_node(d, w) for d, w in pairs), x64)
        dtype, weak = _node_dtype(node, x64), node in _WEAK_NODE_KIND
    return canonicalize(dtype, x64), weak and dtype != "bool"


def result_type(*operands: Operand, x64: bool = False) -> AbstractDtype:
    """`jnp.result_type` of the operands, with its weak-type flag.

    A weakly typed result takes the default dtype of its kind (weak bf16 ->
    weak float32), as `jax.numpy.result_type` reports it.
    """
    dtype, weak = promote(*operands, x64=x64)
    if weak:
        dtype = default_dtype(kind(dtype), x64)
    return dtype, weak


def binary_op_dtype(a: Operand, b: Operand, x64: bool = False) -> AbstractDtype:
    """The abstract dtype of ``a + b`` (or any promoting binary jnp op)."""
    return promote(a, b, x64=x64)
