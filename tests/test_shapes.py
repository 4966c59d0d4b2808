"""Static shape rules (aotflax.shapes) agree with `jax.eval_shape`.

Each property draws random configurations, valid and invalid, and checks
that our rule returns the shape JAX computes, and raises `ShapeError`
exactly where JAX raises.  Only tracing happens (no compilation).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aotflax import shapes
from aotflax.shapes import ArrayIndex, Shape, ShapeError

settings.register_profile(
    "aotflax-shapes", max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
SETTINGS = settings(settings.get_profile("aotflax-shapes"))

DIMS = st.sampled_from([0, 1, 1, 2, 2, 3, 4])
POSITIVE_DIMS = st.sampled_from([1, 1, 2, 3, 4])


def shape_st(min_rank: int = 0, max_rank: int = 4, dims: st.SearchStrategy[int] = DIMS):
    return st.lists(dims, min_size=min_rank, max_size=max_rank).map(tuple)


def spec(shape: Shape, dtype: Any = jnp.float32) -> jax.ShapeDtypeStruct:
    return jax.ShapeDtypeStruct(shape, dtype)


def jax_shape(fn: Callable, *shapes: Shape, index_shapes: Sequence[Shape] = ()) -> Any:
    """Shape(s) of `fn` traced on float arrays (then int arrays), or the exception."""
    args = [spec(s) for s in shapes] + [spec(s, jnp.int32) for s in index_shapes]
    try:
        # NumPy's broadcasting is the rule under test, whatever conftest.py makes strict.
        with jax.numpy_rank_promotion("allow"):
            out = jax.eval_shape(fn, *args)
    except Exception as e:  # JAX raises TypeError, ValueError, IndexError, ...
        return e
    return [o.shape for o in out] if isinstance(out, (list, tuple)) else out.shape


def our_shape(fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except ShapeError as e:
        return e


def agree(ours: Callable[[], Any], theirs: Any) -> None:
    """Our rule raises ShapeError iff JAX raised, and otherwise gives its shape."""
    got = our_shape(ours)
    if isinstance(theirs, Exception):
        assert isinstance(got, ShapeError), f"JAX raised {theirs!r} but we returned {got}"
    else:
        assert not isinstance(got, ShapeError), f"we raised {got} but JAX gave {theirs}"
        assert got == theirs


@st.composite
def broadcastable(draw: st.DrawFn, count: int) -> list[Shape]:
    """`count` shapes that usually broadcast (suffixes of one shape, some dims 1)."""
    base = draw(shape_st())
    out = []
    for _ in range(count):
        if draw(st.integers(0, 9)) == 0:
            out.append(draw(shape_st()))
            continue
        suffix = base[len(base) - draw(st.integers(0, len(base))) :]
        out.append(tuple(1 if draw(st.booleans()) else d for d in suffix))
    return out


def axis_st(ndim: int) -> st.SearchStrategy[int]:
    """An axis, mostly in range, sometimes one past either end."""
    return st.integers(-ndim - 1, ndim)


# --- Broadcasting, reductions -----------------------------------------------------


@SETTINGS
@given(broadcastable(2))
def test_broadcast_binary(pair: list[Shape]) -> None:
    agree(lambda: shapes.broadcast_shapes(*pair), jax_shape(jnp.add, *pair))


@SETTINGS
@given(broadcastable(3))
def test_where(triple: list[Shape]) -> None:
    expected = jax_shape(lambda c, x, y: jnp.where(c > 0, x, y), *triple)
    agree(lambda: shapes.where(*triple), expected)


def test_broadcast_message_names_both_shapes() -> None:
    with pytest.raises(ShapeError, match=r"\(8, 10\) and \(3,\)"):
        shapes.broadcast_shapes((8, 10), (3,))


@st.composite
def shape_and_axes(draw: st.DrawFn) -> tuple[Shape, Any]:
    shape = draw(shape_st())
    n = len(shape)
    axes = draw(st.one_of(st.none(), axis_st(n), st.lists(axis_st(n), max_size=3).map(tuple)))
    return shape, axes


@SETTINGS
@given(shape_and_axes(), st.booleans())
def test_reduce(shape_axes: tuple[Shape, Any], keepdims: bool) -> None:
    shape, axes = shape_axes
    expected = jax_shape(lambda x: jnp.sum(x, axis=axes, keepdims=keepdims), shape)
    agree(lambda: shapes.reduce_shape(shape, axes, keepdims), expected)


@SETTINGS
@given(shape_st(), st.data(), st.booleans(), st.sampled_from(["argmax", "argmin"]))
def test_argmax(shape: Shape, data: st.DataObject, keepdims: bool, name: str) -> None:
    axis = data.draw(st.one_of(st.none(), axis_st(len(shape))))
    fn = getattr(jnp, name)
    expected = jax_shape(lambda x: fn(x, axis=axis, keepdims=keepdims), shape)
    agree(lambda: getattr(shapes, name)(shape, axis, keepdims), expected)


@SETTINGS
@given(shape_st(), st.data())
def test_cumsum(shape: Shape, data: st.DataObject) -> None:
    axis = data.draw(st.one_of(st.none(), axis_st(len(shape))))
    agree(lambda: shapes.cumsum(shape, axis), jax_shape(lambda x: jnp.cumsum(x, axis), shape))


# --- Rearranging --------------------------------------------------------------------


@st.composite
def reshape_case(draw: st.DrawFn) -> tuple[Shape, tuple[int, ...]]:
    shape = draw(shape_st())
    if draw(st.booleans()):  # regroup the same elements
        new = list(draw(st.permutations(shape)))
        if len(new) >= 2 and draw(st.booleans()):
            new[:2] = [new[0] * new[1]]
    else:
        new = list(draw(shape_st()))
    for _ in range(draw(st.sampled_from([0, 1, 1, 2]))):
        new.insert(draw(st.integers(0, len(new))), -1)
    return shape, tuple(new)


@SETTINGS
@given(reshape_case())
def test_reshape(case: tuple[Shape, tuple[int, ...]]) -> None:
    shape, new = case
    agree(lambda: shapes.reshape(shape, new), jax_shape(lambda x: jnp.reshape(x, new), shape))
    agree(lambda: shapes.flatten(shape), jax_shape(jnp.ravel, shape))


@SETTINGS
@given(shape_st(), st.data())
def test_transpose(shape: Shape, data: st.DataObject) -> None:
    n = len(shape)
    perm = data.draw(st.one_of(st.none(), st.permutations(range(n)).map(tuple)))
    if perm is not None and data.draw(st.booleans()):  # negative, repeated or too many axes
        perm = tuple(data.draw(st.lists(axis_st(n), min_size=n, max_size=n + 1)))
    agree(lambda: shapes.transpose(shape, perm), jax_shape(lambda x: jnp.transpose(x, perm), shape))


@SETTINGS
@given(shape_st(), st.data())
def test_swapaxes_moveaxis(shape: Shape, data: st.DataObject) -> None:
    n = len(shape)
    a, b = data.draw(axis_st(n)), data.draw(axis_st(n))
    agree(lambda: shapes.swapaxes(shape, a, b), jax_shape(lambda x: jnp.swapaxes(x, a, b), shape))
    count = data.draw(st.integers(0, 3))
    src = tuple(data.draw(st.lists(axis_st(n), min_size=count, max_size=count)))
    dst = tuple(data.draw(st.lists(axis_st(n), min_size=count, max_size=count + 1)))
    expected = jax_shape(lambda x: jnp.moveaxis(x, src, dst), shape)
    agree(lambda: shapes.moveaxis(shape, src, dst), expected)
    agree(lambda: shapes.moveaxis(shape, a, b), jax_shape(lambda x: jnp.moveaxis(x, a, b), shape))


@SETTINGS
@given(shape_st(), st.data())
def test_expand_dims_squeeze(shape: Shape, data: st.DataObject) -> None:
    axes = data.draw(
        st.one_of(axis_st(len(shape) + 1), st.lists(axis_st(len(shape) + 2), max_size=3))
    )
    axes = tuple(axes) if isinstance(axes, list) else axes
    expected = jax_shape(lambda x: jnp.expand_dims(x, axes), shape)
    agree(lambda: shapes.expand_dims(shape, axes), expected)
    sq = data.draw(
        st.one_of(st.none(), axis_st(len(shape)), st.lists(axis_st(len(shape)), max_size=2))
    )
    sq = tuple(sq) if isinstance(sq, list) else sq
    agree(lambda: shapes.squeeze(shape, sq), jax_shape(lambda x: jnp.squeeze(x, sq), shape))


@st.composite
def joinable(draw: st.DrawFn) -> tuple[list[Shape], int]:
    """Shapes that mostly agree except along one axis."""
    base = draw(shape_st())
    axis = draw(axis_st(len(base)))
    out = []
    for _ in range(draw(st.integers(1, 3))):
        s = list(base)
        if s and draw(st.booleans()):
            s[draw(st.integers(0, len(s) - 1))] = draw(DIMS)
        out.append(tuple(s) if draw(st.integers(0, 9)) else draw(shape_st()))
    return out, axis


@SETTINGS
@given(joinable(), st.booleans())
def test_concatenate_stack(case: tuple[list[Shape], int], flat: bool) -> None:
    parts, axis = case
    ax = None if flat else axis
    expected = jax_shape(lambda *xs: jnp.concatenate(xs, axis=ax), *parts)
    agree(lambda: shapes.concatenate(parts, ax), expected)
    expected = jax_shape(lambda *xs: jnp.stack(xs, axis=axis), *parts)
    agree(lambda: shapes.stack(parts, axis), expected)


@SETTINGS
@given(shape_st(min_rank=1), st.data())
def test_split(shape: Shape, data: st.DataObject) -> None:
    axis = data.draw(axis_st(len(shape)))
    how = data.draw(st.one_of(st.integers(1, 4), st.lists(st.integers(-1, 5), max_size=3)))
    expected = jax_shape(lambda x: jnp.split(x, how, axis=axis), shape)
    agree(lambda: shapes.split(shape, how, axis), expected)


@SETTINGS
@given(shape_st(), st.data())
def test_tile_repeat_pad(shape: Shape, data: st.DataObject) -> None:
    reps = data.draw(
        st.one_of(st.integers(0, 3), st.lists(st.integers(0, 3), max_size=5).map(tuple))
    )
    agree(lambda: shapes.tile(shape, reps), jax_shape(lambda x: jnp.tile(x, reps), shape))
    count = data.draw(st.integers(-1, 3))
    axis = data.draw(st.one_of(st.none(), axis_st(len(shape))))
    expected = jax_shape(lambda x: jnp.repeat(x, count, axis=axis), shape)
    agree(lambda: shapes.repeat(shape, count, axis), expected)
    width = st.integers(-1, 3)
    pair = st.tuples(width, width)
    pad_width = data.draw(
        st.one_of(
            width,
            st.tuples(width),
            pair,
            st.tuples(pair),
            st.lists(pair, min_size=max(len(shape) - 1, 0), max_size=len(shape) + 1).map(tuple),
        )
    )
    agree(lambda: shapes.pad(shape, pad_width), jax_shape(lambda x: jnp.pad(x, pad_width), shape))


@SETTINGS
@given(shape_st(), st.integers(-2, 2))
def test_triu_tril(shape: Shape, k: int) -> None:
    agree(lambda: shapes.triu(shape, k), jax_shape(lambda x: jnp.triu(x, k), shape))
    agree(lambda: shapes.tril(shape, k), jax_shape(lambda x: jnp.tril(x, k), shape))


# --- Gathers --------------------------------------------------------------------------


@SETTINGS
@given(shape_st(), st.integers(0, 4), st.data())
def test_one_hot(shape: Shape, classes: int, data: st.DataObject) -> None:
    axis = data.draw(axis_st(len(shape) + 1))
    expected = jax_shape(lambda i: jax.nn.one_hot(i, classes, axis=axis), index_shapes=[shape])
    agree(lambda: shapes.one_hot(shape, classes, axis), expected)


@SETTINGS
@given(shape_st(), shape_st(max_rank=3), st.data())
def test_take(shape: Shape, idx: Shape, data: st.DataObject) -> None:
    axis = data.draw(st.one_of(st.none(), axis_st(len(shape))))
    expected = jax_shape(lambda x, i: jnp.take(x, i, axis=axis), shape, index_shapes=[idx])
    agree(lambda: shapes.take(shape, idx, axis), expected)


@SETTINGS
@given(broadcastable(2), st.data())
def test_take_along_axis(pair: list[Shape], data: st.DataObject) -> None:
    arr, idx = pair
    axis = data.draw(st.one_of(st.none(), axis_st(len(arr))))
    if idx and data.draw(st.booleans()):  # let the taken axis differ in size
        idx = idx[:-1] + (data.draw(DIMS),)
    expected = jax_shape(lambda x, i: jnp.take_along_axis(x, i, axis=axis), arr, index_shapes=[idx])
    agree(lambda: shapes.take_along_axis(arr, idx, axis), expected)


@SETTINGS
@given(shape_st(), st.integers(-1, 4), st.data())
def test_top_k(shape: Shape, k: int, data: st.DataObject) -> None:
    axis = data.draw(axis_st(len(shape)))
    expected = jax_shape(lambda x: jax.lax.top_k(x, k, axis=axis)[0], shape)
    agree(lambda: shapes.top_k(shape, k, axis), expected)


@st.composite
def index_case(draw: st.DrawFn) -> tuple[Shape, tuple]:
    """A shape and an index of ints, slices, None, ... and integer arrays."""
    shape = draw(shape_st())
    arrays = draw(broadcastable(3))
    bound = st.one_of(st.none(), st.integers(-5, 5))
    item = st.one_of(
        st.integers(-4, 3),
        st.builds(slice, bound, bound, st.sampled_from([None, 1, 2, 3, -1, -2])),
        st.just(slice(None)),
        st.none(),
        st.just(Ellipsis),
        st.sampled_from(arrays).map(ArrayIndex),
    )
    return shape, tuple(draw(st.lists(item, max_size=len(shape) + 2)))


def numpy_raises(shape: Shape, idx: tuple) -> bool:
    """NumPy's verdict (it checks integer bounds, which JAX clamps)."""
    np_idx = tuple(np.zeros(i.shape, int) if isinstance(i, ArrayIndex) else i for i in idx)
    try:
        np.empty(shape)[np_idx]
    except IndexError:
        return True
    return False


@settings(SETTINGS, max_examples=150)
@given(index_case())
def test_index(case: tuple[Shape, tuple]) -> None:
    shape, idx = case
    arrays = [i.shape for i in idx if isinstance(i, ArrayIndex)]

    def f(x: jax.Array, *ints: jax.Array) -> jax.Array:
        it = iter(ints)
        return x[tuple(next(it) if isinstance(i, ArrayIndex) else i for i in idx)]

    expected = jax_shape(f, shape, index_shapes=arrays)
    if numpy_raises(shape, idx):
        expected = IndexError("out of bounds in NumPy")
    agree(lambda: shapes.index(shape, idx), expected)


@pytest.mark.parametrize(
    ("shape", "idx", "expected"),
    [
        ((2, 3, 4), (0, slice(None), ArrayIndex((5,))), (5, 3)),  # separated: first
        ((2, 3, 4), (slice(None), 1, ArrayIndex((5,))), (2, 5)),  # adjacent: in place
        ((2, 3, 4), (ArrayIndex((5,)), None, ArrayIndex((5,))), (5, 1, 4)),
        ((2, 4), (ArrayIndex((5,)), Ellipsis, ArrayIndex((5,))), (5,)),
        # an `...` for no axis still separates them (hypothesis found it; JAX agrees)
        ((2, 2, 3, 3), (slice(None), slice(None), ArrayIndex((1,)), Ellipsis, 0), (1, 2, 2)),
        ((8, 10), (slice(None, None, -3), None), (3, 1, 10)),
    ],
)
def test_index_examples(shape: Shape, idx: tuple, expected: Shape) -> None:
    assert shapes.index(shape, idx) == expected


def test_a_non_empty_index_array_on_an_empty_axis_raises_even_when_the_result_is_empty() -> None:
    """NumPy checks an index array's own items (found by hypothesis: x[ids0, i] of an
    (0, 0) array, `ids0` of shape (0,), `i` a 0-d array, is out of bounds in NumPy)."""
    with pytest.raises(ShapeError, match="cannot index an empty axis"):
        shapes.index((0, 0), (ArrayIndex((0,)), ArrayIndex(())))
    assert shapes.index((0, 3), (ArrayIndex((0,)), ArrayIndex(()))) == (0,)
    # an n-d index array's items are checked as the broadcast index reads them: none here
    # (hypothesis again: x[ids00, ids1] of a (0, 0) array, ids00 (0, 0), ids1 (1,))
    assert shapes.index((0, 0), (ArrayIndex((0, 0)), ArrayIndex((1,)))) == (0, 0)


def test_index_out_of_range_int_raises() -> None:
    """JAX clamps a static out-of-range integer; we call it a bug, as NumPy does."""
    with pytest.raises(ShapeError, match=r"index 3 is out of bounds.*\(3, 4\)"):
        shapes.index((3, 4), (3,))


# --- Contractions ---------------------------------------------------------------------


@st.composite
def contractable(draw: st.DrawFn) -> tuple[Shape, Shape]:
    """Two shapes whose ends usually line up for matmul / dot."""
    a, b = draw(broadcastable(2))
    k = draw(POSITIVE_DIMS)
    if draw(st.integers(0, 4)):
        a = a + (k,)
        b = b[:-1] + (k,) + b[-1:] if len(b) >= 1 and draw(st.booleans()) else (k,) + b[-1:]
    return a, b


@SETTINGS
@given(contractable())
def test_matmul_dot(pair: tuple[Shape, Shape]) -> None:
    a, b = pair
    agree(lambda: shapes.matmul(a, b), jax_shape(jnp.matmul, a, b))
    agree(lambda: shapes.dot(a, b), jax_shape(jnp.dot, a, b))


@SETTINGS
@given(shape_st(), shape_st(), st.data())
def test_tensordot(a: Shape, b: Shape, data: st.DataObject) -> None:
    n = data.draw(st.integers(0, 3))
    if data.draw(st.booleans()):
        b = a[len(a) - n :] + b  # line up n axes
    form = data.draw(st.sampled_from(["int", "pair", "lists"]))
    axes: Any = n
    if form == "pair":
        axes = (data.draw(axis_st(len(a))), data.draw(axis_st(len(b))))
    elif form == "lists":
        count = data.draw(st.integers(0, 2))
        axes = tuple(
            data.draw(st.lists(axis_st(len(s)), min_size=count, max_size=count)) for s in (a, b)
        )
    expected = jax_shape(lambda x, y: jnp.tensordot(x, y, axes), a, b)
    agree(lambda: shapes.tensordot(a, b, axes), expected)


@st.composite
def dot_general_case(draw: st.DrawFn) -> tuple[Shape, Shape, Any]:
    """Shapes built from batch / contracting / free dims, then maybe perturbed."""
    batch = draw(shape_st(max_rank=2, dims=POSITIVE_DIMS))
    con = draw(shape_st(max_rank=2, dims=POSITIVE_DIMS))
    a_dims = [("b", i, d) for i, d in enumerate(batch)] + [("c", i, d) for i, d in enumerate(con)]
    b_dims = list(a_dims)
    a_dims += [("f", 0, d) for d in draw(shape_st(max_rank=2))]
    b_dims += [("f", 0, d) for d in draw(shape_st(max_rank=2))]
    a_dims, b_dims = draw(st.permutations(a_dims)), draw(st.permutations(b_dims))

    def where(dims: list, kind: str) -> list[int]:
        found = sorted((i, pos) for pos, (k, i, _) in enumerate(dims) if k == kind)
        return [pos for _, pos in found]

    dn = [[where(a_dims, "c"), where(b_dims, "c")], [where(a_dims, "b"), where(b_dims, "b")]]
    a, b = tuple(d for *_, d in a_dims), tuple(d for *_, d in b_dims)
    if draw(st.integers(0, 3)) == 0:  # break something
        which = draw(st.sampled_from([(0, 0), (0, 1), (1, 0), (1, 1)]))
        dn[which[0]][which[1]] = draw(st.lists(st.integers(0, 4), max_size=2))
    return a, b, ((tuple(dn[0][0]), tuple(dn[0][1])), (tuple(dn[1][0]), tuple(dn[1][1])))


@SETTINGS
@given(dot_general_case())
def test_dot_general(case: tuple[Shape, Shape, Any]) -> None:
    a, b, dn = case
    expected = jax_shape(lambda x, y: jax.lax.dot_general(x, y, dn), a, b)
    agree(lambda: shapes.dot_general(a, b, dn), expected)


@st.composite
def einsum_case(draw: st.DrawFn) -> tuple[str, list[Shape]]:
    """Subscripts over shared labels, with repeats, size-1 broadcasting and `...`."""
    letters = draw(st.lists(st.sampled_from("abcdeXY"), min_size=1, max_size=5, unique=True))
    sizes = {c: draw(DIMS) for c in letters}
    ell = draw(broadcastable(3))
    terms, operand_shapes = [], []
    for k in range(draw(st.integers(1, 3))):
        labels = draw(st.lists(st.sampled_from(letters), max_size=3))
        dims = [sizes[c] for c in labels]
        for j, c in enumerate(labels):  # size-1 broadcasting, unless c repeats here
            if labels.count(c) == 1 and draw(st.integers(0, 5)) == 0:
                dims[j] = 1
        term = "".join(labels)
        if draw(st.integers(0, 3)) == 0:
            term, dims = "..." + term, list(ell[k]) + dims
        terms.append(term)
        operand_shapes.append(tuple(dims))
    if draw(st.integers(0, 9)) == 0 and operand_shapes[0]:  # a size mismatch
        operand_shapes[0] = operand_shapes[0][:-1] + (draw(DIMS),)
    subscripts = ",".join(terms)
    if draw(st.booleans()):
        used = sorted(set("".join(terms).replace(".", "")))
        out = draw(st.lists(st.sampled_from(used), unique=True)) if used else []
        keep_ell = "..." in subscripts and draw(st.booleans())
        subscripts += "->" + ("..." if keep_ell else "") + "".join(out)
    return subscripts, operand_shapes


def repeats_unequal(subscripts: str, operand_shapes: list[Shape]) -> bool:
    """Whether a label repeats within one operand with different sizes.

    JAX then silently keeps one of the sizes; we raise, as NumPy does.
    """
    terms = subscripts.split("->")[0].split(",")
    for term, shape in zip(terms, operand_shapes):
        labels = term.replace("...", "")
        dims = shape[len(shape) - len(labels) :]
        if len(dims) == len(labels) and len({(c, d) for c, d in zip(labels, dims)}) != len(
            set(labels)
        ):
            return True
    return False


@settings(SETTINGS, max_examples=100)
@given(einsum_case())
def test_einsum(case: tuple[str, list[Shape]]) -> None:
    subscripts, operand_shapes = case
    expected = jax_shape(lambda *xs: jnp.einsum(subscripts, *xs), *operand_shapes)
    if repeats_unequal(subscripts, operand_shapes):
        expected = ValueError("NumPy's rule: a repeated label needs equal sizes")
    agree(lambda: shapes.einsum(subscripts, *operand_shapes), expected)


@pytest.mark.parametrize(
    ("subscripts", "operand_shapes"),
    [("ij->ii", [(2, 2)]), ("ij->k", [(2, 2)]), ("i1", [(2, 3)]), ("ij,jk", [(2, 3)])],
)
def test_einsum_errors(subscripts: str, operand_shapes: list[Shape]) -> None:
    with pytest.raises(ShapeError):
        shapes.einsum(subscripts, *operand_shapes)


# --- Convolution and pooling --------------------------------------------------------


def channels_last(n: int) -> jax.lax.ConvDimensionNumbers:
    spatial = tuple(range(1, n + 1))
    return jax.lax.ConvDimensionNumbers(
        lhs_spec=(0, n + 1, *spatial), rhs_spec=(n + 1, n, *range(n)), out_spec=(0, n + 1, *spatial)
    )


@st.composite
def conv_case(draw: st.DrawFn) -> dict[str, Any]:
    n = draw(st.integers(1, 3))

    def per_dim(values: st.SearchStrategy[int]) -> tuple[int, ...]:
        return tuple(draw(values) for _ in range(n))

    groups = draw(st.sampled_from([1, 1, 1, 2, 3]))
    c_in = groups * draw(st.integers(1, 2))
    feats = groups * draw(st.integers(1, 2))
    lhs = (draw(st.integers(1, 2)), *per_dim(st.integers(0, 9)), c_in)
    rhs = (*per_dim(st.integers(1, 4)), c_in // groups, feats)
    if draw(st.integers(0, 7)) == 0:  # break the feature dims
        rhs = rhs[:-2] + (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    pair = st.tuples(st.integers(-2, 3), st.integers(-2, 3))
    padding = draw(
        st.one_of(st.sampled_from(["SAME", "VALID", "SAME_LOWER"]), st.tuples(*[pair] * n))
    )
    explicit = not isinstance(padding, str)
    lhs_dil = per_dim(st.integers(1, 3)) if explicit and draw(st.booleans()) else None
    return dict(
        lhs=lhs,
        rhs=rhs,
        strides=per_dim(st.integers(1, 3)),
        padding=padding,
        lhs_dilation=lhs_dil,
        rhs_dilation=per_dim(st.integers(1, 3)) if draw(st.booleans()) else None,
        groups=groups,
    )


@SETTINGS
@given(conv_case())
def test_conv(c: dict[str, Any]) -> None:
    n = len(c["lhs"]) - 2

    params = (c["strides"], c["padding"], c["lhs_dilation"], c["rhs_dilation"])

    def conv(x: jax.Array, k: jax.Array) -> jax.Array:
        return jax.lax.conv_general_dilated(x, k, *params, channels_last(n), c["groups"])

    expected = jax_shape(conv, c["lhs"], c["rhs"])
    agree(lambda: shapes.conv_output_shape(c["lhs"], c["rhs"], *params, c["groups"]), expected)


@st.composite
def padtype_case(draw: st.DrawFn) -> dict[str, Any]:
    """Every example is a named padding (the only kind padtype_to_pads takes)."""
    n = draw(st.integers(1, 3))

    def per_dim(lo: int, hi: int) -> tuple[int, ...]:
        return tuple(draw(st.integers(lo, hi)) for _ in range(n))

    return dict(ins=per_dim(0, 9), wins=per_dim(1, 4), strides=per_dim(1, 3),
                padding=draw(st.sampled_from(["SAME", "VALID", "SAME_LOWER"])),
                lhs_dilation=per_dim(1, 3), rhs_dilation=per_dim(1, 3))


@SETTINGS
@given(padtype_case())
def test_padtype_to_pads(c: dict[str, Any]) -> None:
    """Our pads from undilated sizes equal lax's from dilated ones."""
    ins = [max(0, 1 + r * (d - 1)) for d, r in zip(c["ins"], c["lhs_dilation"])]
    wins = [max(0, 1 + r * (d - 1)) for d, r in zip(c["wins"], c["rhs_dilation"])]
    expected = jax.lax.padtype_to_pads(ins, wins, c["strides"], c["padding"])
    got = shapes.padtype_to_pads(c["ins"], c["wins"], c["strides"], c["padding"],
                                 c["lhs_dilation"], c["rhs_dilation"])
    assert got == [tuple(p) for p in expected]


@SETTINGS
@given(conv_case())
def test_conv_transpose(c: dict[str, Any]) -> None:
    n = len(c["lhs"]) - 2
    padding = c["padding"] if c["padding"] != "SAME_LOWER" else "VALID"
    # conv_transpose has no feature groups: a grouped kernel's features mismatch.
    rhs = c["rhs"] if c["groups"] > 1 else c["rhs"][:-2] + (c["lhs"][-1], c["rhs"][-1])

    def conv_t(x: jax.Array, k: jax.Array) -> jax.Array:
        return jax.lax.conv_transpose(
            x, k, c["strides"], padding, c["rhs_dilation"], dimension_numbers=channels_last(n)
        )

    expected = jax_shape(conv_t, c["lhs"], rhs)
    agree(
        lambda: shapes.conv_transpose_output_shape(
            c["lhs"], rhs, c["strides"], padding, c["rhs_dilation"]
        ),
        expected,
    )


@settings(SETTINGS, max_examples=15)
@given(
    st.sampled_from(["CIRCULAR", "CAUSAL"]),
    st.integers(1, 2),
    st.data(),
)
def test_flax_conv_padding_modes(padding: str, n: int, data: st.DataObject) -> None:
    """Flax pads CIRCULAR and CAUSAL inputs itself; compare with `nn.Conv`."""
    if padding == "CAUSAL":
        n = 1
    spatial = tuple(data.draw(st.integers(1, 7)) for _ in range(n))
    kernel = tuple(data.draw(st.integers(1, 4)) for _ in range(n))
    strides = tuple(data.draw(st.integers(1, 3)) for _ in range(n))
    dilation = tuple(data.draw(st.integers(1, 2)) for _ in range(n))
    lhs = (2, *spatial, 3)
    module = nn.Conv(5, kernel, strides, padding, kernel_dilation=dilation)
    out = jax.eval_shape(lambda x: module.init_with_output(jax.random.key(0), x)[0], spec(lhs))
    got = shapes.conv_output_shape(lhs, (*kernel, 3, 5), strides, padding, None, dilation)
    assert got == out.shape


@SETTINGS
@given(shape_st(min_rank=1), st.data())
def test_pool(shape: Shape, data: st.DataObject) -> None:
    n = data.draw(st.integers(0, max(len(shape) - 1, 0)))
    window = tuple(data.draw(st.integers(0 if n == 0 else 1, 4)) for _ in range(n))
    if window and data.draw(st.integers(0, 9)) == 0:
        window = window[:-1] + (0,)
    strides = data.draw(st.one_of(st.none(), st.tuples(*[st.integers(1, 3)] * n)))
    pair = st.tuples(st.integers(-1, 2), st.integers(-1, 2))
    padding = data.draw(st.one_of(st.sampled_from(["SAME", "VALID"]), st.tuples(*[pair] * n)))
    pool = data.draw(st.sampled_from([nn.max_pool, nn.avg_pool]))
    expected = jax_shape(lambda x: pool(x, window, strides, padding), shape)
    agree(lambda: shapes.pool_output_shape(shape, window, strides, padding), expected)


def test_conv_examples() -> None:
    assert shapes.conv_output_shape((8, 28, 28, 1), (3, 3, 1, 32), (2, 2), "SAME") == (
        8,
        14,
        14,
        32,
    )
    assert shapes.padtype_to_pads((10,), (3,), (1,), "SAME", rhs_dilation=(2,)) == [(2, 2)]
    assert shapes.conv_transpose_output_shape((1, 7, 7, 4), (3, 3, 4, 2), (2, 2), "SAME") == (
        1,
        14,
        14,
        2,
    )
    assert shapes.pool_output_shape((5, 7, 4), (2, 2), (2, 2), "SAME") == (3, 4, 4)
    with pytest.raises(ShapeError, match="CAUSAL"):
        shapes.conv_output_shape((1, 5, 5, 1), (2, 2, 1, 1), None, "CAUSAL")


def test_size() -> None:
    assert shapes.size(()) == 1
    assert shapes.size((2, 0, 3)) == 0
    assert shapes.size((2, 3, 4)) == 24


def test_public_names_are_documented() -> None:
    for name in shapes.__all__:
        obj = getattr(shapes, name)
        if callable(obj) and not isinstance(obj, type):
            assert obj.__doc__, name


def test_an_axis_is_an_int() -> None:
    """`np.mean(x, (0.5, 1, 2))` (a fuzzed PixelCNN++ initializer) reached generated code,
    where JAX refused it while tracing init: an internal error instead of a located one."""
    with pytest.raises(TypeError, match=r"an axis must be an int, got 0\.5"):
        shapes.reduce_shape((2, 3, 4), (0.5, 1))
    assert shapes.reduce_shape((2, 3, 4), (np.int64(0), 1)) == (4,)
