"""Static shape rules of the jnp / lax / flax operations the DSL supports.

The resolve stage computes every shape at build time without importing jax.
Each rule here returns what `jax.eval_shape` would report for the matching
call, and raises `ShapeError` where JAX would raise (the message names the
offending shapes; the caller turns it into a located diagnostic).

Conventions, said once: a shape is a tuple of non-negative Python ints;
convolutions and pools are channels-last (``(N, *spatial, C)`` inputs,
``(*window, C // groups, F)`` kernels), as in Flax.

Deliberate departures from JAX, where JAX accepts a likely bug: an
out-of-range integer index raises (JAX clamps it), and negative `tile` or
`repeat` counts, zero or negative strides and dilations raise.
"""

from __future__ import annotations

import itertools
import math
import operator
import string
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import EllipsisType
from typing import Any

__all__ = [
    "ArrayIndex",
    "Axes",
    "DimensionNumbers",
    "IndexItem",
    "Padding",
    "Pads",
    "Shape",
    "ShapeError",
    "argmax",
    "argmin",
    "broadcast_shapes",
    "concatenate",
    "conv_output_shape",
    "conv_permutations",
    "conv_transpose_output_shape",
    "cumsum",
    "dot",
    "dot_general",
    "einsum",
    "expand_dims",
    "flatten",
    "index",
    "matmul",
    "moveaxis",
    "normalize_axes",
    "normalize_axis",
    "one_hot",
    "pad",
    "padtype_to_pads",
    "pool_output_shape",
    "ravel",
    "reduce_shape",
    "repeat",
    "reshape",
    "size",
    "split",
    "squeeze",
    "stack",
    "swapaxes",
    "take",
    "take_along_axis",
    "tensordot",
    "tile",
    "top_k",
    "transpose",
    "tril",
    "triu",
    "where",
]

#: A static array shape.
Shape = tuple[int, ...]
#: An axis argument: one axis, several, or None for all of them.
Axes = int | Sequence[int] | None
#: Convolution / pooling padding: a mode name or one (low, high) pair per dim.
Padding = str | Sequence[tuple[int, int]]


class ShapeError(Exception):
    """A shape rule was violated; the message names the offending shapes."""


def _fmt(shape: Sequence[int]) -> str:
    """A shape as users write it: ``(8, 10)``, ``(3,)``, ``()``."""
    return str(tuple(shape))


def _fmt_all(shapes: Sequence[Shape]) -> str:
    """``(1,) and (2,)`` / ``(1,), (2,) and (3,)``."""
    parts = [_fmt(s) for s in shapes]
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def _as_tuple(values: int | Sequence[int]) -> tuple[int, ...]:
    """An int argument as a 1-tuple, a sequence as a tuple."""
    return (values,) if isinstance(values, int) else tuple(values)


def size(shape: Shape) -> int:
    """Number of elements."""
    return math.prod(shape)


# --- Broadcasting and axes --------------------------------------------------


def broadcast_shapes(*shapes: Shape) -> Shape:
    """NumPy broadcasting of `shapes` (right-aligned; sizes equal or 1)."""
    ndim = max((len(s) for s in shapes), default=0)
    out: list[int] = []
    for k in range(ndim, 0, -1):
        sized = [(s[-k], s) for s in shapes if len(s) >= k and s[-k] != 1]
        dim, first = sized[0] if sized else (1, ())
        for other_dim, other in sized:
            if other_dim != dim:
                raise ShapeError(f"cannot broadcast shapes {_fmt_all([first, other])}")
        out.append(dim)
    return tuple(out)


def where(cond: Shape, x: Shape, y: Shape) -> Shape:
    """`jnp.where(cond, x, y)`: the three shapes broadcast together."""
    return broadcast_shapes(cond, x, y)


def normalize_axis(axis: int, ndim: int) -> int:
    """`axis` in ``[-ndim, ndim)`` made non-negative (an int: `0.5` is no axis)."""
    try:
        axis = operator.index(axis)
    except TypeError:  # a wrong argument, not a wrong shape: the caller's AOT203
        raise TypeError(f"an axis must be an int, got {axis!r}") from None
    if not -ndim <= axis < ndim:
        raise ShapeError(f"axis {axis} is out of bounds for an array of rank {ndim}")
    return axis % ndim


def normalize_axes(axes: Axes, ndim: int) -> tuple[int, ...]:
    """An int, a sequence of ints or None (all axes), as distinct non-negative axes."""
    if axes is None:
        return tuple(range(ndim))
    if isinstance(axes, int):
        return (normalize_axis(axes, ndim),)
    out = tuple(normalize_axis(a, ndim) for a in axes)
    if len(set(out)) != len(out):
        raise ShapeError(f"repeated axis in {tuple(axes)}")
    return out


def _axis_of(shape: Shape, axis: int) -> int:
    """`axis` normalized for `shape`, with the shape in the message."""
    try:
        return normalize_axis(axis, len(shape))
    except ShapeError:
        raise ShapeError(f"axis {axis} is out of bounds for shape {_fmt(shape)}") from None


def _axes_of(shape: Shape, axes: Axes) -> tuple[int, ...]:
    try:
        return normalize_axes(axes, len(shape))
    except ShapeError as e:
        raise ShapeError(f"{e} for shape {_fmt(shape)}") from None


# --- Reductions ---------------------------------------------------------------


def reduce_shape(shape: Shape, axis: Axes = None, keepdims: bool = False) -> Shape:
    """A reduction (`jnp.sum`, `mean`, `max`, ...) over `axis`."""
    axes = _axes_of(shape, axis)
    if keepdims:
        return tuple(1 if i in axes else d for i, d in enumerate(shape))
    return tuple(d for i, d in enumerate(shape) if i not in axes)


def argmax(shape: Shape, axis: int | None = None, keepdims: bool = False) -> Shape:
    """`jnp.argmax`: one axis (or the flattened array); the axis must be non-empty."""
    if axis is None:
        if size(shape) == 0:
            raise ShapeError(f"cannot take argmax/argmin of empty shape {_fmt(shape)}")
        return (1,) * len(shape) if keepdims else ()
    ax = _axis_of(shape, axis)
    if shape[ax] == 0:
        raise ShapeError(f"cannot take argmax/argmin over empty axis {axis} of {_fmt(shape)}")
    return reduce_shape(shape, ax, keepdims)


argmin = argmax


def cumsum(shape: Shape, axis: int | None = None) -> Shape:
    """`jnp.cumsum` (and cumprod, ...): same shape, or flattened if axis is None."""
    if axis is None:
        return (size(shape),)
    _axis_of(shape, axis)
    return shape


# --- Rearranging --------------------------------------------------------------


def reshape(shape: Shape, newshape: int | Sequence[int]) -> Shape:
    """`jnp.reshape`, with at most one -1 standing for the remaining size."""
    new = _as_tuple(newshape)
    if new.count(-1) > 1:
        raise ShapeError(f"can only specify one unknown dimension (-1), got {_fmt(new)}")
    if any(d < -1 for d in new):
        raise ShapeError(f"invalid reshape target {_fmt(new)}: sizes must be >= 0")
    known = math.prod(d for d in new if d != -1)
    if -1 in new:
        if known == 0 or size(shape) % known:
            raise ShapeError(f"cannot reshape {_fmt(shape)} into {_fmt(new)}")
        return tuple(size(shape) // known if d == -1 else d for d in new)
    if known != size(shape):
        raise ShapeError(
            f"cannot reshape {_fmt(shape)} (size {size(shape)}) into {_fmt(new)} (size {known})"
        )
    return new


def flatten(shape: Shape) -> Shape:
    """`x.flatten()` / `jnp.ravel`: one axis of every element."""
    return (size(shape),)


ravel = flatten


def transpose(shape: Shape, axes: Sequence[int] | None = None) -> Shape:
    """`jnp.transpose`; `axes` must be a permutation (negative axes allowed)."""
    if axes is None:
        return shape[::-1]
    perm = tuple(axes)
    if len(perm) != len(shape) or sorted(_axes_of(shape, perm)) != list(range(len(shape))):
        raise ShapeError(f"axes {perm} are not a permutation of the axes of {_fmt(shape)}")
    return tuple(shape[a] for a in _axes_of(shape, perm))


def swapaxes(shape: Shape, axis1: int, axis2: int) -> Shape:
    """`jnp.swapaxes`."""
    a, b = _axis_of(shape, axis1), _axis_of(shape, axis2)
    perm = list(range(len(shape)))
    perm[a], perm[b] = b, a
    return tuple(shape[p] for p in perm)


def moveaxis(shape: Shape, source: int | Sequence[int], destination: int | Sequence[int]) -> Shape:
    """`jnp.moveaxis`: `source` axes end up at `destination` positions.

    Like JAX (unlike NumPy), a repeated destination is accepted: the axes are
    inserted in sorted (destination, source) order.
    """
    src = _axes_of(shape, source)
    dst = tuple(_axis_of(shape, d) for d in _as_tuple(destination))
    if len(src) != len(dst):
        raise ShapeError(
            f"moveaxis: source {source} and destination {destination} differ in length"
        )
    perm = [i for i in range(len(shape)) if i not in src]
    for d, s in sorted(zip(dst, src)):
        perm.insert(d, s)
    return tuple(shape[p] for p in perm)


def expand_dims(shape: Shape, axis: int | Sequence[int]) -> Shape:
    """`jnp.expand_dims`; axes index the result."""
    count = 1 if isinstance(axis, int) else len(axis)
    out_ndim = len(shape) + count
    try:
        axes = normalize_axes(axis, out_ndim)
    except ShapeError as e:
        raise ShapeError(f"expand_dims of {_fmt(shape)}: {e}") from None
    dims = iter(shape)
    return tuple(1 if i in axes else next(dims) for i in range(out_ndim))


def squeeze(shape: Shape, axis: Axes = None) -> Shape:
    """`jnp.squeeze`; an explicitly named axis must have size 1."""
    if axis is None:
        return tuple(d for d in shape if d != 1)
    axes = _axes_of(shape, axis)
    if any(shape[a] != 1 for a in axes):
        raise ShapeError(f"cannot squeeze axes {axis} of {_fmt(shape)}: size is not 1")
    return tuple(d for i, d in enumerate(shape) if i not in axes)


def concatenate(shapes: Sequence[Shape], axis: int | None = 0) -> Shape:
    """`jnp.concatenate`: equal shapes except along `axis` (None: flattened)."""
    if not shapes:
        raise ShapeError("need at least one array to concatenate")
    if axis is None:
        return (sum(size(s) for s in shapes),)
    first = shapes[0]
    if not first:
        raise ShapeError("zero-dimensional arrays cannot be concatenated")
    ax = _axis_of(first, axis)
    for s in shapes[1:]:
        if len(s) != len(first) or any(a != b for i, (a, b) in enumerate(zip(s, first)) if i != ax):
            raise ShapeError(f"cannot concatenate shapes {_fmt_all([first, s])} along axis {axis}")
    return first[:ax] + (sum(s[ax] for s in shapes),) + first[ax + 1 :]


def stack(shapes: Sequence[Shape], axis: int = 0) -> Shape:
    """`jnp.stack`: equal shapes, joined along a new `axis`."""
    if not shapes:
        raise ShapeError("need at least one array to stack")
    first = shapes[0]
    for s in shapes[1:]:
        if s != first:
            raise ShapeError(f"cannot stack shapes {_fmt_all([first, s])}: they differ")
    return _insert(first, axis, len(shapes))


def vstack(shapes: Sequence[Shape]) -> Shape:
    """`jnp.vstack`: the arrays at least 2-d (a vector is a row), joined along axis 0."""
    return concatenate([s if len(s) >= 2 else (1, *s) if s else (1, 1) for s in shapes], 0)


def hstack(shapes: Sequence[Shape]) -> Shape:
    """`jnp.hstack`: the arrays at least 1-d, joined along axis 0 if they are vectors, else 1."""
    at_least = [s if s else (1,) for s in shapes]
    return concatenate(at_least, 0 if at_least and len(at_least[0]) == 1 else 1)


def diag(shape: Shape, k: int = 0) -> Shape:
    """`jnp.diag`: a vector's square matrix with it on diagonal `k`, or a matrix's diagonal
    `k` as a vector."""
    if len(shape) == 1:
        n = shape[0] + abs(k)
        return (n, n)
    if len(shape) == 2:
        rows, cols = shape
        return (max(0, min(rows, cols - k) if k >= 0 else min(rows + k, cols)),)
    raise ShapeError(f"diag takes a vector or a matrix, got {_fmt(shape)}")


def diagonal(shape: Shape, offset: int = 0, axis1: int = 0, axis2: int = 1) -> Shape:
    """`jnp.diagonal`: axes `axis1` and `axis2` removed, their diagonal `offset` appended."""
    a, b = normalize_axis(axis1, len(shape)), normalize_axis(axis2, len(shape))
    if a == b:
        raise ShapeError(f"axis1 and axis2 are the same axis ({axis1}, {axis2})")
    rows, cols = shape[a], shape[b]
    n = max(0, min(rows, cols - offset) if offset >= 0 else min(rows + offset, cols))
    return (*(d for i, d in enumerate(shape) if i not in (a, b)), n)


def _insert(shape: Shape, axis: int, dim: int) -> Shape:
    """`shape` with a new axis of size `dim` at `axis` (which indexes the result)."""
    try:
        ax = normalize_axis(axis, len(shape) + 1)
    except ShapeError:
        raise ShapeError(f"axis {axis} is out of bounds for a new axis of {_fmt(shape)}") from None
    return shape[:ax] + (dim,) + shape[ax:]


def split(shape: Shape, indices_or_sections: int | Sequence[int], axis: int = 0) -> list[Shape]:
    """`jnp.split` into equal sections or at increasing indices (as JAX, no clipping)."""
    ax = _axis_of(shape, axis)
    n = shape[ax]
    if isinstance(indices_or_sections, int):
        sections = indices_or_sections
        if sections <= 0 or n % sections:
            raise ShapeError(
                f"cannot split axis {axis} of {_fmt(shape)} into {sections} equal parts"
            )
        sizes = [n // sections] * sections
    else:
        bounds = [0, *indices_or_sections, n]
        sizes = [hi - lo for lo, hi in itertools.pairwise(bounds)]
        if any(s < 0 for s in sizes):
            raise ShapeError(
                f"split indices {list(indices_or_sections)} must be increasing "
                f"and within axis {axis} of {_fmt(shape)}"
            )
    return [shape[:ax] + (s,) + shape[ax + 1 :] for s in sizes]


def array_split(shape: Shape, sections: int, axis: int = 0) -> list[Shape]:
    """`jnp.array_split` into `sections` parts: the first `n % sections` one longer."""
    ax = _axis_of(shape, axis)
    if sections <= 0:
        raise ShapeError(f"the number of sections must be positive, got {sections}")
    n = shape[ax]
    big, rest = divmod(n, sections)
    sizes = [big + 1] * rest + [big] * (sections - rest)
    return [shape[:ax] + (s,) + shape[ax + 1 :] for s in sizes]


def kron(a: Shape, b: Shape) -> Shape:
    """`jnp.kron`: the shapes left-padded with ones to one rank, multiplied."""
    n = max(len(a), len(b))
    a, b = (1,) * (n - len(a)) + tuple(a), (1,) * (n - len(b)) + tuple(b)
    return tuple(x * y for x, y in zip(a, b))


def atleast(shape: Shape, rank: int) -> Shape:
    """`jnp.atleast_1d` / `2d` / `3d`: a vector becomes a row (1, n), a matrix (m, n, 1)."""
    if len(shape) >= rank:
        return tuple(shape)
    if not shape:
        return (1,) * rank
    if len(shape) == 1:
        return (1, shape[0], 1)[:rank] if rank == 3 else (1, shape[0])
    return (*shape, 1)


def tile(shape: Shape, reps: int | Sequence[int]) -> Shape:
    """`jnp.tile`: `shape` and `reps` are left-padded with ones to equal length."""
    reps_t = _as_tuple(reps)
    if any(r < 0 for r in reps_t):
        raise ShapeError(f"tile repetitions {reps_t} must be non-negative")
    n = max(len(shape), len(reps_t))
    padded = (1,) * (n - len(shape)) + shape
    reps_p = (1,) * (n - len(reps_t)) + reps_t
    return tuple(d * r for d, r in zip(padded, reps_p))


def repeat(shape: Shape, repeats: int, axis: int | None = None) -> Shape:
    """`jnp.repeat` with a scalar count (None: of the flattened array)."""
    if repeats < 0:
        raise ShapeError(f"repeat count {repeats} must be non-negative")
    if axis is None or not shape:  # JAX ignores the axis of a 0-d array
        return (size(shape) * repeats,)
    ax = _axis_of(shape, axis)
    return shape[:ax] + (shape[ax] * repeats,) + shape[ax + 1 :]


def pad(shape: Shape, pad_width: int | Sequence) -> Shape:
    """`jnp.pad`: `pad_width` is n, (n,), (lo, hi), ((lo, hi),) or one pair per axis."""
    pairs = _pad_pairs(pad_width, len(shape))
    if any(p < 0 for pair in pairs for p in pair):
        raise ShapeError(f"pad widths {pad_width} must be non-negative")
    return tuple(d + lo + hi for d, (lo, hi) in zip(shape, pairs))


def _pad_pairs(pad_width: int | Sequence, ndim: int) -> list[tuple[int, int]]:
    """One (before, after) pair per axis, for the forms `jnp.pad` accepts."""
    if isinstance(pad_width, int):
        return [(pad_width, pad_width)] * ndim
    flat = tuple(pad_width)
    if flat and all(isinstance(p, int) for p in flat) and len(flat) in (1, 2):
        return [(flat[0], flat[-1])] * ndim
    rows = [tuple(r) for r in flat if not isinstance(r, int)]
    if rows and len(rows) == len(flat) and all(len(r) == 2 for r in rows):
        if len(rows) == ndim:
            return rows
        if len(rows) == 1:
            return rows * ndim
    raise ShapeError(f"pad_width {pad_width} does not fit an array of rank {ndim}")


def triu(shape: Shape, k: int = 0) -> Shape:
    """`jnp.triu` / `jnp.tril`: same shape, at least 2-D."""
    if len(shape) < 2:
        raise ShapeError(f"triu/tril need an array of rank >= 2, got {_fmt(shape)}")
    return shape


tril = triu


# --- Contractions --------------------------------------------------------------


def matmul(a: Shape, b: Shape) -> Shape:
    """`jnp.matmul` / ``a @ b``: 1-D operands are promoted, batch dims broadcast."""
    if not a or not b:
        raise ShapeError(f"matmul operands must be at least 1-D, got {_fmt_all([a, b])}")
    a2 = a if len(a) > 1 else (1,) + a
    b2 = b if len(b) > 1 else b + (1,)
    if a2[-1] != b2[-2]:
        raise ShapeError(f"matmul contracting dimensions differ: shapes {_fmt_all([a, b])}")
    try:
        batch = broadcast_shapes(a2[:-2], b2[:-2])
    except ShapeError:
        raise ShapeError(f"matmul batch dimensions do not broadcast: {_fmt_all([a, b])}") from None
    rows = (a[-2],) if len(a) > 1 else ()
    cols = (b[-1],) if len(b) > 1 else ()
    return batch + rows + cols


def dot(a: Shape, b: Shape) -> Shape:
    """`jnp.dot`: a scalar scales; otherwise a's last axis meets b's second-to-last."""
    if not a or not b:
        return a or b
    b_axis = 0 if len(b) == 1 else len(b) - 2
    if a[-1] != b[b_axis]:
        raise ShapeError(f"dot contracting dimensions differ: shapes {_fmt_all([a, b])}")
    return a[:-1] + b[:b_axis] + b[b_axis + 1 :]


def tensordot(a: Shape, b: Shape, axes: int | Sequence = 2) -> Shape:
    """`jnp.tensordot`: contract `axes` last of a with first of b, or named pairs."""
    if isinstance(axes, int):
        if not 0 <= axes <= min(len(a), len(b)):
            raise ShapeError(f"tensordot axes={axes} does not fit shapes {_fmt_all([a, b])}")
        return dot_general(a, b, ((range(len(a) - axes, len(a)), range(axes)), ((), ())))
    if len(axes) != 2:
        raise ShapeError(f"invalid tensordot axes {axes!r}")
    a_axes, b_axes = ((x,) if isinstance(x, int) else tuple(x) for x in axes)
    if len(a_axes) != len(b_axes) or isinstance(axes[0], int) != isinstance(axes[1], int):
        raise ShapeError(f"invalid tensordot axes {axes!r}")
    contract = (
        tuple(_axis_of(a, x) for x in a_axes),
        tuple(_axis_of(b, x) for x in b_axes),
    )
    return dot_general(a, b, (contract, ((), ())))


DimensionNumbers = tuple[tuple[Sequence[int], Sequence[int]], tuple[Sequence[int], Sequence[int]]]


def dot_general(a: Shape, b: Shape, dimension_numbers: DimensionNumbers) -> Shape:
    """`lax.dot_general`: batch dims, then a's free dims, then b's free dims."""
    (a_con, b_con), (a_bat, b_bat) = (tuple(map(tuple, p)) for p in dimension_numbers)
    both = _fmt_all([a, b])
    for name, shape, con, bat in (("lhs", a, a_con, a_bat), ("rhs", b, b_con, b_bat)):
        if any(not 0 <= d < len(shape) for d in con + bat):
            raise ShapeError(f"dot_general {name} dimensions {con}, {bat} out of range for {both}")
        if len(set(con)) != len(con) or len(set(bat)) != len(bat) or set(con) & set(bat):
            raise ShapeError(f"dot_general {name} dimensions {con}, {bat} repeat an axis")
    if _pick(a, a_bat) != _pick(b, b_bat):
        raise ShapeError(f"dot_general batch dimensions differ for shapes {both}")
    if _pick(a, a_con) != _pick(b, b_con):
        raise ShapeError(f"dot_general contracting dimensions differ for shapes {both}")
    a_free = tuple(d for i, d in enumerate(a) if i not in a_con + a_bat)
    b_free = tuple(d for i, d in enumerate(b) if i not in b_con + b_bat)
    return _pick(a, a_bat) + a_free + b_free


def _pick(shape: Shape, axes: Sequence[int]) -> Shape:
    return tuple(shape[a] for a in axes)


def einsum(subscripts: str, *shapes: Shape) -> Shape:
    """`jnp.einsum`: explicit or implicit output, ``...``, size-1 broadcasting."""
    spec = subscripts.replace(" ", "")
    inputs, arrow, output = spec.partition("->")
    terms = inputs.split(",")
    if len(terms) != len(shapes):
        raise ShapeError(f"einsum {subscripts!r} names {len(terms)} operands, got {len(shapes)}")
    sizes: dict[str, int] = {}
    counts: dict[str, int] = {}
    ellipses: list[Shape] = []
    for term, shape in zip(terms, shapes):
        labels, ell = _einsum_term(term, shape, subscripts)
        if ell is not None:
            ellipses.append(ell)
        _einsum_sizes(labels, shape[len(shape) - len(labels) :], sizes, subscripts)
        for c in labels:
            counts[c] = counts.get(c, 0) + 1
    try:
        ell_shape = broadcast_shapes(*ellipses)
    except ShapeError as e:
        raise ShapeError(f"einsum {subscripts!r}: ellipsis dimensions: {e}") from None
    if not arrow:
        singles = sorted(c for c, n in counts.items() if n == 1)
        return ell_shape + tuple(sizes[c] for c in singles)
    out_labels, out_ell = _einsum_output(output, sizes, subscripts)
    return (ell_shape if out_ell else ()) + tuple(sizes[c] for c in out_labels)


def _einsum_term(term: str, shape: Shape, subscripts: str) -> tuple[str, Shape | None]:
    """The labels of one operand and its ellipsis dims (None without ``...``)."""
    labels = term.replace("...", "")
    if term.count("...") > 1 or any(c not in string.ascii_letters for c in labels):
        raise ShapeError(f"invalid einsum subscripts {subscripts!r}")
    if "..." in term:
        if len(labels) > len(shape):
            raise ShapeError(f"einsum term {term!r} has more labels than shape {_fmt(shape)}")
        return labels, shape[: len(shape) - len(labels)]
    if len(labels) != len(shape):
        raise ShapeError(f"einsum term {term!r} does not match the rank of shape {_fmt(shape)}")
    return labels, None


def _einsum_sizes(labels: str, dims: Shape, sizes: dict[str, int], subscripts: str) -> None:
    """Record each label's size; sizes must agree, except that 1 broadcasts."""
    local: dict[str, int] = {}
    for c, d in zip(labels, dims):
        if local.setdefault(c, d) != d:
            raise ShapeError(
                f"einsum {subscripts!r}: label {c!r} repeats with sizes {local[c]} and {d}"
            )
        seen = sizes.get(c, 1)
        if seen != 1 and d != 1 and seen != d:
            raise ShapeError(f"einsum {subscripts!r}: label {c!r} has sizes {seen} and {d}")
        sizes[c] = d if seen == 1 else seen


def _einsum_output(output: str, sizes: dict[str, int], subscripts: str) -> tuple[str, bool]:
    """The output labels of an explicit einsum, and whether it keeps ``...``."""
    labels = output.replace("...", "", 1)
    bad = [c for c in labels if c not in sizes]
    if "..." in labels or bad or len(set(labels)) != len(labels):
        raise ShapeError(f"invalid einsum output {output!r} in {subscripts!r}")
    return labels, "..." in output


# --- Indexing ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ArrayIndex:
    """An integer array used as an index (advanced indexing), by its shape."""

    shape: Shape  #: shape of the integer index array.


#: One item of an index tuple.
IndexItem = int | slice | None | EllipsisType | ArrayIndex


def index(shape: Shape, idx: IndexItem | tuple[IndexItem, ...]) -> Shape:
    """``x[idx]`` by NumPy's rules, basic and advanced (integer-array) indexing.

    With an array in the index, integers count as 0-d arrays too; the
    broadcast index shape replaces the indexed axes where they are adjacent
    in the index, and goes first where they are separated.
    """
    written = idx if isinstance(idx, tuple) else (idx,)
    items = _expand_index(shape, written)
    arrays = [it.shape for it in items if isinstance(it, ArrayIndex)]
    try:
        adv_shape = broadcast_shapes(*arrays)
    except ShapeError as e:
        raise ShapeError(f"index arrays do not broadcast: {e}") from None
    dims = iter(shape)
    reads = size(adv_shape) > 0  # broadcast to no element, an n-d index array reads none
    parts = [
        _index_item(it, next(dims, 0) if it is not None else 0, shape, reads) for it in items
    ]
    advanced = [i for i, it in enumerate(items) if arrays and isinstance(it, (int, ArrayIndex))]
    if not advanced:
        return sum(parts, ())
    # adjacent as written: an `...` between two of them separates them even where it
    # stands for no axis (`x[:, :, ids, ..., 0]` of a 4-d x puts the index shape first)
    as_written = [i for i, it in enumerate(written) if isinstance(it, (int, ArrayIndex))]
    adjacent = as_written == list(range(as_written[0], as_written[-1] + 1))
    at = advanced[0] if adjacent else 0
    return sum(parts[:at], ()) + adv_shape + sum(parts[at:], ())


def _index_item(item: IndexItem, dim: int, shape: Shape, reads: bool = True) -> Shape:
    """The dims one index item keeps on its own: a slice's length, None's 1.  `reads`:
    the index arrays, broadcast together, have elements."""
    if item is None:
        return (1,)
    if isinstance(item, slice):
        if item.step == 0:
            raise ShapeError("slice step cannot be zero")
        return (len(range(*item.indices(dim))),)
    if isinstance(item, int) and not -dim <= item < dim:
        raise ShapeError(
            f"index {item} is out of bounds for an axis of size {dim} in {_fmt(shape)}"
        )
    # NumPy checks a 0-d index array's item as it checks an int, before broadcasting; an
    # n-d one's items as the broadcast index reads them (none, if it has no elements)
    if isinstance(item, ArrayIndex) and dim == 0 and size(item.shape) and (
            reads or item.shape == ()):
        raise ShapeError(f"cannot index an empty axis of {_fmt(shape)} with a non-empty array")
    return ()


def _expand_index(shape: Shape, items: tuple[IndexItem, ...]) -> list[IndexItem]:
    """The index with ``...`` (or the implied trailing one) as full slices."""
    for it in items:
        if not (it is None or it is Ellipsis or isinstance(it, (int, slice, ArrayIndex))):
            raise ShapeError(f"unsupported index item {it!r}")
    used = sum(1 for it in items if it is not None and it is not Ellipsis)
    if used > len(shape):
        raise ShapeError(f"too many indices ({used}) for shape {_fmt(shape)}")
    n_ell = sum(1 for it in items if it is Ellipsis)
    if n_ell > 1:
        raise ShapeError("an index can only have a single ellipsis ('...')")
    if not n_ell:
        items = items + (Ellipsis,)
    at = items.index(Ellipsis)
    return [*items[:at], *[slice(None)] * (len(shape) - used), *items[at + 1 :]]


def take(shape: Shape, indices: Shape, axis: int | None = None) -> Shape:
    """`jnp.take`: the indices' shape replaces `axis` (None: of the flattened array)."""
    if axis is None:
        shape, ax = (size(shape),), 0
    else:
        ax = _axis_of(shape, axis)
    if shape[ax] == 0:
        if size(indices):
            raise ShapeError(
                f"cannot take {_fmt(indices)} indices from an empty axis of {_fmt(shape)}"
            )
        return shape  # JAX returns the (empty) array itself here, unlike NumPy
    return shape[:ax] + indices + shape[ax + 1 :]


def take_along_axis(shape: Shape, indices: Shape, axis: int | None) -> Shape:
    """`jnp.take_along_axis`: the other axes of array and indices broadcast."""
    if axis is None:
        if len(indices) != 1:
            raise ShapeError(
                f"take_along_axis with axis=None needs 1-D indices, got {_fmt(indices)}"
            )
        return indices
    if len(indices) != len(shape):
        raise ShapeError(
            f"take_along_axis: indices {_fmt(indices)} and array {_fmt(shape)} differ in rank"
        )
    ax = _axis_of(shape, axis)
    try:
        out = broadcast_shapes(_set(shape, ax, 1), _set(indices, ax, 1))
    except ShapeError:
        raise ShapeError(
            f"take_along_axis: cannot broadcast {_fmt_all([shape, indices])}"
        ) from None
    return _set(out, ax, indices[ax])


def _set(shape: Shape, axis: int, dim: int) -> Shape:
    """`shape` with axis `axis` replaced by `dim`."""
    return shape[:axis] + (dim,) + shape[axis + 1 :]


def one_hot(shape: Shape, num_classes: int, axis: int = -1) -> Shape:
    """`jax.nn.one_hot`: a new axis of `num_classes` at `axis` of the result."""
    if num_classes < 0:
        raise ShapeError(f"one_hot num_classes must be non-negative, got {num_classes}")
    return _insert(shape, axis, num_classes)


def top_k(shape: Shape, k: int, axis: int = -1) -> Shape:
    """`lax.top_k` (each of its two results): `axis` shrinks to `k`."""
    ax = _axis_of(shape, axis)
    if not 0 <= k <= shape[ax]:
        raise ShapeError(f"top_k: k={k} must be in [0, {shape[ax]}] for shape {_fmt(shape)}")
    return shape[:ax] + (k,) + shape[ax + 1 :]


# --- Convolution and pooling ---------------------------------------------------


def _dilate(sizes: Sequence[int], dilations: Sequence[int] | None) -> list[int]:
    """Sizes after putting `dilation - 1` holes between neighbouring elements."""
    dilations = dilations or (1,) * len(sizes)
    return [max(0, 1 + r * (d - 1)) for d, r in zip(sizes, dilations)]


Pads = list[tuple[int, int]]


def _same_pads(
    ins: Sequence[int], wins: Sequence[int], strides: Sequence[int], lower: bool = False
) -> Pads:
    """Pad so that the output has ceil(input / stride) entries; odd extra goes high."""
    pads = []
    for i, w, s in zip(ins, wins, strides):
        total = max(0, (-(-i // s) - 1) * s + w - i)
        small, big = total // 2, total - total // 2
        pads.append((big, small) if lower else (small, big))
    return pads


def _causal_pads(ins: Sequence[int], wins: Sequence[int], strides: Sequence[int]) -> Pads:
    """Flax's CAUSAL: pad the whole (dilated) window on the low side; 1-D only."""
    if len(wins) != 1:
        raise ShapeError(
            f"CAUSAL padding is only for 1-D convolutions, got {len(wins)} spatial dims"
        )
    return [(wins[0] - 1, 0)]


# Padding modes, each computing pads from dilated input sizes, window sizes, strides.
_PAD_RULES: dict[str, Callable[[Sequence[int], Sequence[int], Sequence[int]], Pads]] = {
    "SAME": _same_pads,
    "SAME_LOWER": lambda i, w, s: _same_pads(i, w, s, lower=True),
    "VALID": lambda i, w, s: [(0, 0)] * len(i),
    "CIRCULAR": lambda i, w, s: [((k - 1) // 2, k // 2) for k in w],  # flax pads by wrapping
    "CAUSAL": _causal_pads,
}


def padtype_to_pads(
    in_spatial: Sequence[int],
    window: Sequence[int],
    strides: Sequence[int],
    padding: Padding,
    lhs_dilation: Sequence[int] | None = None,
    rhs_dilation: Sequence[int] | None = None,
) -> Pads:
    """Explicit (low, high) pads for a padding mode, as `lax.padtype_to_pads`.

    Sizes are dilated first, as `lax.conv_general_dilated` does. "CIRCULAR"
    and "CAUSAL" follow `flax.linen.Conv`, which pads the input itself.
    """
    n = len(in_spatial)
    _check_lengths(
        n,
        window=window,
        strides=strides,
        lhs_dilation=lhs_dilation,
        rhs_dilation=rhs_dilation,
    )
    if not isinstance(padding, str):
        pairs = [tuple(p) for p in padding]
        if len(pairs) != n or any(len(p) != 2 for p in pairs):
            raise ShapeError(
                f"padding {padding!r} needs one (low, high) pair per spatial dim ({n})"
            )
        return [(int(lo), int(hi)) for lo, hi in pairs]
    rule = _PAD_RULES.get(padding.upper())
    if rule is None:
        raise ShapeError(
            f"unknown padding {padding!r}; expected one of {', '.join(_PAD_RULES)} or pairs"
        )
    return rule(_dilate(in_spatial, lhs_dilation), _dilate(window, rhs_dilation), strides)


def _check_lengths(n: int, **params: Sequence[int] | None) -> None:
    """Each given per-spatial-dim parameter has `n` positive entries (windows may be 0)."""
    for name, value in params.items():
        if value is None:
            continue
        if len(value) != n:
            raise ShapeError(f"{name} {tuple(value)} needs {n} entries, one per spatial dim")
        least = 0 if name == "window" else 1
        for v in value:  # a loop, not any(): called for every convolution and pooling
            if v < least:
                raise ShapeError(f"{name} {tuple(value)} must be >= {least}")


def _windowed(
    ins: Sequence[int],
    wins: Sequence[int],
    strides: Sequence[int],
    pads: Sequence[tuple[int, int]],
) -> Shape:
    """Output sizes of a strided window sliding over padded inputs (dilated sizes).

    A window that does not fit gives size 0, as in `lax.reduce_window`.
    """
    return tuple(
        max(0, (i + lo + hi - w) // s + 1) for i, w, s, (lo, hi) in zip(ins, wins, strides, pads)
    )


def reduce_window_shape(shape: Shape, window: Sequence[int], strides: Sequence[int],
                        padding: Padding) -> Shape:
    """`lax.reduce_window`'s output: a window over every axis, padded as `padding` says."""
    pads = padtype_to_pads(shape, window, strides, padding)
    return _windowed(shape, window, strides, pads)


def conv_permutations(ndim: int, numbers: Sequence[Any]
                      ) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
    """(lhs, rhs, out) permutations to (batch, feature, *spatial) of three layout strings
    such as ("NHWC", "HWIO", "NHWC"), as lax's `conv_general_permutations` computes them, or
    of three such permutations (a `lax.ConvDimensionNumbers`), checked as lax's shape rule
    checks them."""
    if all(not isinstance(spec, str) for spec in numbers):
        return _spec_permutations(ndim, numbers)
    lhs, rhs, out = numbers
    pairs = (("N", "C"), ("O", "I"), ("N", "C"))
    for spec, (a, b) in zip(numbers, pairs):
        if len(spec) != ndim or spec.count(a) != 1 or spec.count(b) != 1 or \
                len(set(spec)) != len(spec):
            raise ShapeError(f"layout {spec!r} must name {ndim} distinct axes with one {a!r} "
                             f"and one {b!r}")
    if not set(lhs) - {"N", "C"} == set(rhs) - {"O", "I"} == set(out) - {"N", "C"}:
        raise ShapeError(f"layouts {tuple(numbers)!r} must share their spatial axes")

    def perm(spec: str, pair: tuple[str, str]) -> tuple[int, ...]:
        spatial = [i for i, c in enumerate(spec) if c not in pair]
        if spec is not rhs:
            spatial.sort(key=lambda i: rhs.index(spec[i]))
        return (spec.index(pair[0]), spec.index(pair[1]), *spatial)

    return perm(lhs, pairs[0]), perm(rhs, pairs[1]), perm(out, pairs[2])


def _spec_permutations(ndim: int, numbers: Sequence[Any]
                       ) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
    """The three permutations of a `ConvDimensionNumbers`, each a permutation of the axes."""
    specs = []
    for what, spec in zip(("lhs_spec", "rhs_spec", "out_spec"), numbers):
        if not (isinstance(spec, (tuple, list)) and all(
                isinstance(a, int) and not isinstance(a, bool) for a in spec)
                and sorted(spec) == list(range(ndim))):
            raise ShapeError(f"{what} {spec!r} must be a permutation of the {ndim} axes")
        specs.append(tuple(spec))
    return specs[0], specs[1], specs[2]


def conv_output_shape(
    lhs_shape: Shape,
    rhs_shape: Shape,
    strides: Sequence[int] | None = None,
    padding: Padding = "SAME",
    lhs_dilation: Sequence[int] | None = None,
    rhs_dilation: Sequence[int] | None = None,
    feature_group_count: int = 1,
) -> Shape:
    """`lax.conv_general_dilated` (flax `Conv`) for channels-last layouts."""
    if len(lhs_shape) != len(rhs_shape) or len(lhs_shape) < 2:
        raise ShapeError("conv input and kernel must have the same rank >= 2, got "
                         f"{_fmt_all([lhs_shape, rhs_shape])}")
    n = len(lhs_shape) - 2
    strides = tuple(strides) if strides is not None else (1,) * n
    _check_lengths(n, strides=strides, lhs_dilation=lhs_dilation, rhs_dilation=rhs_dilation)
    _check_features(lhs_shape[-1], rhs_shape[-2], rhs_shape[-1], feature_group_count,
                    lhs_shape, rhs_shape)
    if isinstance(padding, str) and any(d != 1 for d in lhs_dilation or ()):
        raise ShapeError(
            "string padding is not supported with lhs_dilation; give (low, high) pairs"
        )
    spatial, window = lhs_shape[1:-1], rhs_shape[:-2]
    pads = padtype_to_pads(spatial, window, strides, padding, lhs_dilation, rhs_dilation)
    ins, wins = _dilate(spatial, lhs_dilation), _dilate(window, rhs_dilation)
    for i, (lo, hi) in zip(ins, pads):
        if i + lo + hi < 0:  # lax.conv rejects this; reduce_window does not
            raise ShapeError(f"negative padding {(lo, hi)} exceeds the input size {i}")
    return (lhs_shape[0], *_windowed(ins, wins, strides, pads), rhs_shape[-1])


def _check_features(
    in_features: int, kernel_in: int, out_features: int, groups: int, lhs_shape: Shape,
    rhs_shape: Shape
) -> None:
    if (
        groups < 1
        or in_features % groups
        or in_features // groups != kernel_in
        or out_features % groups
    ):
        raise ShapeError(
            f"conv feature dimensions do not match for shapes "
            f"{_fmt_all([lhs_shape, rhs_shape])} with "
            f"feature_group_count={groups}: input features / groups must equal the "
            "kernel's input features, and groups must divide the output features"
        )


def conv_transpose_output_shape(
    lhs_shape: Shape,
    rhs_shape: Shape,
    strides: Sequence[int] | None = None,
    padding: Padding = "SAME",
    rhs_dilation: Sequence[int] | None = None,
) -> Shape:
    """`lax.conv_transpose` (flax `ConvTranspose`), channels-last, kernel not flipped."""
    if len(lhs_shape) != len(rhs_shape) or len(lhs_shape) < 2:
        both = _fmt_all([lhs_shape, rhs_shape])
        raise ShapeError(f"conv input and kernel must have the same rank >= 2, got {both}")
    n = len(lhs_shape) - 2
    strides = tuple(strides) if strides is not None else (1,) * n
    _check_lengths(n, strides=strides, rhs_dilation=rhs_dilation)
    pads: Padding = padding  # pairs are the transposed conv's own, as in lax
    if padding in ("SAME", "VALID"):  # the forward conv's mode
        wins = _dilate(rhs_shape[:-2], rhs_dilation)
        pads = [_transpose_pads(k, s, padding) for k, s in zip(wins, strides)]
    elif isinstance(padding, str):
        raise ShapeError(
            f"conv_transpose padding must be 'SAME', 'VALID' or pairs, got {padding!r}"
        )
    return conv_output_shape(lhs_shape, rhs_shape, (1,) * n, pads, strides, rhs_dilation)


def conv_transpose_pads(
    window: Sequence[int],
    strides: Sequence[int],
    padding: str,
    rhs_dilation: Sequence[int] | None = None,
) -> Pads:
    """The pads `lax.conv_transpose` gives its fractionally strided convolution."""
    wins = _dilate(window, rhs_dilation)
    return [_transpose_pads(k, s, padding) for k, s in zip(wins, strides)]


def _transpose_pads(k: int, s: int, mode: str) -> tuple[int, int]:
    """`lax._conv_transpose_padding`: pads of the fractionally strided conv."""
    if mode == "SAME":
        total = k + s - 2
        low = k - 1 if s > k - 1 else -(-total // 2)
    else:
        total = k + s - 2 + max(k - s, 0)
        low = k - 1
    return low, total - low


_POOL_PADDINGS = ("SAME", "SAME_LOWER", "VALID")


def pool_output_shape(
    shape: Shape,
    window_shape: Sequence[int],
    strides: Sequence[int] | None = None,
    padding: Padding = "VALID",
) -> Shape:
    """`flax.linen.max_pool` / `avg_pool`: a window over the dims before features."""
    n = len(window_shape)
    batch = len(shape) - n - 1
    if batch < 0:
        raise ShapeError(
            f"pool window {tuple(window_shape)} needs an input of rank >= {n + 1}, "
            f"got {_fmt(shape)}"
        )
    strides = tuple(strides) if strides is not None else (1,) * n
    _check_lengths(n, strides=strides)
    if any(w < 1 for w in window_shape):
        raise ShapeError(f"pool window {tuple(window_shape)} must be positive")
    if not isinstance(padding, str) and batch > 1:
        raise ShapeError(f"explicit pool padding needs at most one batch dim, got {_fmt(shape)}")
    if isinstance(padding, str) and padding.upper() not in _POOL_PADDINGS:
        modes = ", ".join(_POOL_PADDINGS)
        raise ShapeError(f"pool padding must be one of {modes} or pairs, got {padding!r}")
    spatial = shape[batch:-1]
    pads = padtype_to_pads(spatial, window_shape, strides, padding)
    return shape[:batch] + _windowed(spatial, window_shape, strides, pads) + shape[-1:]
