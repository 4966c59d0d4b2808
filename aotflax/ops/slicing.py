"""Padding, slicing and segment reductions: `jnp.pad`, `jax.lax.pad`, `jax.lax.slice`,
`jax.lax.dynamic_slice` / `dynamic_update_slice` and their `_in_dim` forms, and
`jax.ops.segment_sum` / `max` / `min` / `prod`.

Sizes are build-time values everywhere (they fix output shapes); start indices
of the dynamic forms may be arrays.  Each call is emitted as written.
"""

from __future__ import annotations

from typing import Any

from .. import dtypes as dt
from .. import shapes as sh
from ..program import Tensor
from ..values import describe_value, is_static
from .arrays import emit_same, int_tree, register, shape_rule
from .calls import FnCall, aval_of

# ------------------------------------------------------------- jnp.pad

#: mode -> the keyword arguments it takes (as numpy.pad and jax.numpy.pad define them).
PAD_MODES: dict[str, tuple[str, ...]] = {
    "constant": ("constant_values",), "edge": (), "linear_ramp": ("end_values",),
    "maximum": ("stat_length",), "mean": ("stat_length",), "median": ("stat_length",),
    "minimum": ("stat_length",), "reflect": ("reflect_type",),
    "symmetric": ("reflect_type",), "wrap": (), "empty": (),
}
_PAD_KEYWORDS = ("constant_values", "end_values", "stat_length", "reflect_type")


def _jnp_pad(call: FnCall) -> Tensor:
    if len(call.positional) == 4:
        # the jnp.pad of 2020 took constant_values fourth, `jnp.pad(x, pads, 'constant',
        # (0, 0))`; today's takes it by keyword only: the call as emitted names it
        call.keywords["constant_values"] = call.positional.pop()
    x = call.tensor("array")
    mode = call.args["mode"]
    if not isinstance(mode, str) or mode not in PAD_MODES:
        raise call.fail(f"jnp.pad: unknown mode {describe_value(mode)}", "AOT203",
                        hint=f"modes: {', '.join(PAD_MODES)}")
    extra = sorted(k for k in call.keywords if k in _PAD_KEYWORDS and k not in PAD_MODES[mode])
    if extra:
        takes = ", ".join(PAD_MODES[mode]) or "no keyword arguments"
        raise call.fail(f"jnp.pad: mode {mode!r} does not take {', '.join(extra)} (it takes "
                        f"{takes})", "AOT203")
    # an int array of known value (`jnp.array([[0, 0], [0, n]])`) was concrete in 2020's JAX
    width = call.concrete("pad_width")
    if not is_static(width) or not int_tree(width):
        raise call.fail(f"jnp.pad: pad_width must be static ints, got {describe_value(width)}",
                        "AOT203", hint="pad widths fix the output shape: write them as ints")
    shape = shape_rule(call, sh.pad, x.shape, width)
    if mode not in ("constant", "empty"):
        before = sh.pad(x.shape, width)
        for axis, (d, padded) in enumerate(zip(x.shape, before)):
            if d == 0 and padded > 0:
                raise call.fail(f"jnp.pad: cannot pad the empty axis {axis} of {x.describe()} "
                                f"with mode {mode!r}", "AOT210")
    if mode == "constant":
        _pad_values(call, x, "constant_values")
    elif mode == "linear_ramp":
        _pad_values(call, x, "end_values")
    elif mode in ("reflect", "symmetric") and call.args["reflect_type"] not in ("even", "odd"):
        raise call.fail(f"jnp.pad: reflect_type must be 'even' or 'odd', got "
                        f"{describe_value(call.args['reflect_type'])}", "AOT203")
    elif PAD_MODES[mode] == ("stat_length",) and call.args["stat_length"] is not None:
        length = call.args["stat_length"]
        if not is_static(length) or not int_tree(length) or not _positive(length):
            raise call.fail(f"jnp.pad: stat_length must be positive ints, got "
                            f"{describe_value(length)}", "AOT203")
        shape_rule(call, sh.pad, x.shape, length)  # the same forms as pad_width
    return emit_same(call, shape, x.dtype, x.weak)


def _positive(tree: Any) -> bool:
    if isinstance(tree, (tuple, list)):
        return all(_positive(t) for t in tree)
    return tree > 0


def _pad_values(call: FnCall, x: Tensor, name: str) -> None:
    """constant_values / end_values: a scalar, one pair, or one (before, after) pair per axis."""
    aval = aval_of(call.args[name])
    if aval is None:
        raise call.fail(f"jnp.pad: {name} must be numbers or an array, got "
                        f"{describe_value(call.args[name])}", "AOT202")
    s = aval[0]
    ok = len(s) == 0 or (len(s) == 1 and s[0] in (1, 2)) or (
        len(s) == 2 and s[0] in (1, x.ndim) and s[1] in (1, 2))
    if not ok:
        raise call.fail(f"jnp.pad: {name} of shape {s} does not fit {x.describe()}: give a "
                        "scalar, a (before, after) pair or one pair per axis", "AOT210")


register("pad", ("jnp",), "array, pad_width, mode='constant', constant_values=0, *, "
         "stat_length=None, end_values=0, reflect_type='even'", _jnp_pad,
         doc="pad with any numpy mode (constant, edge, reflect, symmetric, wrap, maximum, "
             "minimum, mean, median, linear_ramp, empty)")

# ------------------------------------------------------------- lax.pad and slices


def _same_dtype_scalar(call: FnCall, name: str, x: Tensor) -> bool:
    """A scalar of x's dtype (a Python scalar of the same kind counts); returns its weakness."""
    value = call.args[name]
    aval = aval_of(value)
    if aval is None or aval[0] != () or aval[1] != x.dtype:
        raise call.fail(f"{call.written}: '{name}' must be a scalar of the operand's dtype "
                        f"{dt.short_name(x.dtype)}, got {describe_value(value)}", "AOT201",
                        hint=f"cast it, e.g. jnp.asarray(0, jnp.{x.dtype})")
    return aval[2]


def _lax_pad(call: FnCall) -> Tensor:
    x = call.tensor("operand")
    weak = _same_dtype_scalar(call, "padding_value", x) and x.weak
    config = call.args["padding_config"]
    if not (isinstance(config, (tuple, list)) and len(config) == x.ndim and all(
            isinstance(c, (tuple, list)) and len(c) == 3 and all(
                isinstance(v, int) and not isinstance(v, bool) for v in c) for c in config)):
        raise call.fail(f"jax.lax.pad: padding_config must be one static (low, high, interior) "
                        f"triple per axis of {x.describe()}, got {describe_value(config)}",
                        "AOT203")
    shape = []
    for d, (lo, hi, interior) in zip(x.shape, config):
        if interior < 0:
            raise call.fail(f"jax.lax.pad: interior padding must be >= 0, got {interior}",
                            "AOT203")
        size = lo + hi + d + max(0, d - 1) * interior
        if size < 0:
            raise call.fail(f"jax.lax.pad: padding {(lo, hi, interior)} leaves an axis of "
                            f"{x.describe()} with a negative size {size}", "AOT210")
        shape.append(size)
    return emit_same(call, tuple(shape), x.dtype, weak)


register("pad", ("lax",), "operand, padding_value, padding_config", _lax_pad,
         doc="pad with (low, high, interior) per axis; negative pads crop")


def _lax_slice(call: FnCall) -> Tensor:
    x = call.tensor("operand")
    start = _static_ints(call, "start_indices", x.ndim)
    limit = _static_ints(call, "limit_indices", x.ndim)
    strides = (1,) * x.ndim if call.args["strides"] is None else \
        _static_ints(call, "strides", x.ndim)
    shape = []
    for d, a, b, s in zip(x.shape, start, limit, strides):
        if not 0 <= a <= b <= d or s < 1:
            raise call.fail(f"jax.lax.slice: start {start}, limit {limit} and strides {strides} "
                            f"must satisfy 0 <= start <= limit <= size, stride >= 1, for "
                            f"{x.describe()}", "AOT210")
        shape.append(len(range(a, b, s)))
    return emit_same(call, tuple(shape), x.dtype, x.weak)


def _slice_in_dim(call: FnCall) -> Tensor:
    x = call.tensor("operand")
    axis = shape_rule(call, sh.normalize_axis, call.int("axis"), x.ndim)
    d = x.shape[axis]
    start = 0 if call.args["start_index"] is None else call.int("start_index")
    limit = d if call.args["limit_index"] is None else call.int("limit_index")
    start, limit = start + d if start < 0 else start, limit + d if limit < 0 else limit
    stride = call.int("stride")
    if not 0 <= start <= limit <= d or stride < 1:
        raise call.fail(f"jax.lax.slice_in_dim: [{start}:{limit}:{stride}] does not fit axis "
                        f"{axis} of {x.describe()}", "AOT210")
    shape = list(x.shape)
    shape[axis] = len(range(start, limit, stride))
    return emit_same(call, tuple(shape), x.dtype, x.weak)


def _static_ints(call: FnCall, name: str, n: int) -> tuple[int, ...]:
    value = call.args[name]
    if not isinstance(value, (tuple, list)) or not int_tree(value) or len(value) != n or any(
            isinstance(v, (tuple, list)) for v in value):
        raise call.fail(f"{call.written}: '{name}' must be {n} static ints, one per axis, got "
                        f"{describe_value(value)}", "AOT203")
    return tuple(value)


register("slice", ("lax",), "operand, start_indices, limit_indices, strides=None", _lax_slice,
         doc="a static slice: start, limit and strides per axis")
register("slice_in_dim", ("lax",), "operand, start_index, limit_index, stride=1, axis=0",
         _slice_in_dim, doc="a static slice along one axis")


def _index_in_dim(call: FnCall) -> Tensor:
    x = call.tensor("operand")
    axis = shape_rule(call, sh.normalize_axis, call.int("axis"), x.ndim)
    index = call.int("index")
    if not -x.shape[axis] <= index < x.shape[axis]:
        raise call.fail(f"jax.lax.index_in_dim: index {index} is out of bounds for axis {axis} "
                        f"of {x.describe()}", "AOT210")
    return emit_same(call, _dropped(x.shape, axis, call.bool("keepdims")), x.dtype, x.weak)


def _dropped(shape: tuple[int, ...], axis: int, keepdims: bool) -> tuple[int, ...]:
    return shape[:axis] + ((1,) if keepdims else ()) + shape[axis + 1:]


register("index_in_dim", ("lax",), "operand, index, axis=0, keepdims=True", _index_in_dim,
         doc="one static index along an axis")

# ------------------------------------------------------------- dynamic slices


def _start_indices(call: FnCall, name: str, ndim: int) -> None:
    """One scalar integer (static or array) per axis, or an integer array of shape (ndim,)."""
    value = call.args[name]
    if isinstance(value, Tensor):
        if value.shape != (ndim,) or not dt.is_integer(value.dtype):
            raise call.fail(f"{call.written}: '{name}' must be {ndim} integer start indices, got "
                            f"{value.describe()}", "AOT201")
        return
    if not isinstance(value, (tuple, list)) or len(value) != ndim:
        raise call.fail(f"{call.written}: '{name}' must give one start index per axis ({ndim}), "
                        f"got {describe_value(value)}", "AOT203")
    arrays = set()
    for v in value:
        if isinstance(v, Tensor):
            if v.shape or not dt.is_integer(v.dtype):
                raise call.fail(f"{call.written}: start indices must be integer scalars, got "
                                f"{v.describe()}", "AOT201")
            arrays.add(v.dtype)
        elif isinstance(v, bool) or not isinstance(v, int):
            raise call.fail(f"{call.written}: start indices must be ints or integer scalars, got "
                            f"{describe_value(v)}", "AOT203")
    if len(arrays) > 1:
        raise call.fail(f"{call.written}: start indices must share one integer dtype, got "
                        f"{', '.join(sorted(arrays))}", "AOT201")


def _start_index(call: FnCall, name: str) -> None:
    value = call.args[name]
    if isinstance(value, Tensor):
        if value.shape or not dt.is_integer(value.dtype):
            raise call.fail(f"{call.written}: '{name}' must be an integer scalar, got "
                            f"{value.describe()}", "AOT201")
    elif isinstance(value, bool) or not isinstance(value, int):
        raise call.fail(f"{call.written}: '{name}' must be an int or an integer scalar, got "
                        f"{describe_value(value)}", "AOT203")


def _sizes(call: FnCall, x: Tensor, sizes: Any) -> tuple[int, ...]:
    if isinstance(sizes, Tensor) or not isinstance(sizes, (tuple, list)) or not int_tree(
            sizes) or any(isinstance(v, (tuple, list)) for v in sizes):
        raise call.fail(f"{call.written}: slice sizes must be static ints, got "
                        f"{describe_value(sizes)}", "AOT203",
                        hint="sizes fix the output shape: write them as a tuple of ints")
    sizes = tuple(sizes)
    if len(sizes) != x.ndim or any(not 0 <= s <= d for s, d in zip(sizes, x.shape)):
        raise call.fail(f"{call.written}: slice sizes {sizes} must give one size per axis of "
                        f"{x.describe()}, each between 0 and the axis size", "AOT210")
    return sizes


def _dynamic_slice(call: FnCall) -> Tensor:
    x = call.tensor("operand")
    _start_indices(call, "start_indices", x.ndim)
    shape = _sizes(call, x, call.concrete("slice_sizes"))
    return emit_same(call, shape, x.dtype, x.weak)


def _dynamic_slice_in_dim(call: FnCall) -> Tensor:
    x = call.tensor("operand")
    axis = shape_rule(call, sh.normalize_axis, call.int("axis"), x.ndim)
    _start_index(call, "start_index")
    size = call.int("slice_size")
    if not 0 <= size <= x.shape[axis]:
        raise call.fail(f"{call.written}: slice_size {size} does not fit axis {axis} of "
                        f"{x.describe()}", "AOT210")
    shape = x.shape[:axis] + (size,) + x.shape[axis + 1:]
    return emit_same(call, shape, x.dtype, x.weak)


def _dynamic_index_in_dim(call: FnCall) -> Tensor:
    x = call.tensor("operand")
    axis = shape_rule(call, sh.normalize_axis, call.int("axis"), x.ndim)
    _start_index(call, "index")
    return emit_same(call, _dropped(x.shape, axis, call.bool("keepdims")), x.dtype, x.weak)


def _update(call: FnCall, x: Tensor, index_axis: int | None = None) -> Tensor:
    """The update of the operand's dtype that fits inside it (one axis fewer for a
    `dynamic_update_index_in_dim` along `index_axis`, which lax expands)."""
    update = call.tensor("update")
    if update.dtype != x.dtype:
        raise call.fail(f"{call.written}: the update {update.describe()} must have the "
                        f"operand's dtype {dt.short_name(x.dtype)}", "AOT201",
                        hint=f"cast it with .astype(jnp.{x.dtype})")
    shape = update.shape
    if index_axis is not None and update.ndim == x.ndim - 1:
        shape = shape[:index_axis] + (1,) + shape[index_axis:]
    if len(shape) != x.ndim or any(u > d for u, d in zip(shape, x.shape)):
        raise call.fail(f"{call.written}: the update {update.describe()} must have the rank of "
                        f"{x.describe()} and fit inside it", "AOT210")
    return update


def _dynamic_update_slice(call: FnCall) -> Tensor:
    x = call.tensor("operand")
    update = _update(call, x)
    _start_indices(call, "start_indices", x.ndim)
    return emit_same(call, x.shape, x.dtype, x.weak and update.weak)


def _dynamic_update_in_dim(call: FnCall) -> Tensor:
    x = call.tensor("operand")
    axis = shape_rule(call, sh.normalize_axis, call.int("axis"), x.ndim)
    update = _update(call, x, axis if call.entry.name == "dynamic_update_index_in_dim" else None)
    _start_index(call, call.entry.signature.params[2].name)
    return emit_same(call, x.shape, x.dtype, x.weak and update.weak)


register("dynamic_slice", ("lax",), "operand, start_indices, slice_sizes", _dynamic_slice,
         doc="a slice of static sizes at array-valued start indices (clamped into range)")
register("dynamic_slice_in_dim", ("lax",), "operand, start_index, slice_size, axis=0",
         _dynamic_slice_in_dim, doc="dynamic_slice along one axis")
register("dynamic_index_in_dim", ("lax",), "operand, index, axis=0, keepdims=True",
         _dynamic_index_in_dim, doc="one array-valued index along an axis")
register("dynamic_update_slice", ("lax",), "operand, update, start_indices",
         _dynamic_update_slice, doc="write `update` into the operand at start indices")
register("dynamic_update_slice_in_dim", ("lax",), "operand, update, start_index, axis",
         _dynamic_update_in_dim, doc="dynamic_update_slice along one axis")
register("dynamic_update_index_in_dim", ("lax",), "operand, update, index, axis",
         _dynamic_update_in_dim, doc="write a slice of one index along an axis")

# ------------------------------------------------------------- jax.ops segments


def _segment(call: FnCall) -> Tensor:
    data = call.tensor("data")
    ids = call.tensor("segment_ids")
    if not dt.is_integer(ids.dtype):
        raise call.fail(f"{call.written}: segment_ids must be integers, got {ids.describe()}",
                        "AOT201")
    if ids.shape != data.shape[:1]:
        raise call.fail(f"{call.written}: segment_ids {ids.describe()} must be 1-D with one id "
                        f"per row of data {data.describe()}", "AOT210")
    if call.args["num_segments"] is None:
        raise call.fail(f"{call.written} needs num_segments=: without it the output size "
                        "depends on the values of segment_ids", "AOT203",
                        hint="pass the number of segments as a static int")
    n = call.int("num_segments", minimum=0)
    if call.entry.name in ("segment_sum", "segment_prod") and dt.is_bool(data.dtype):
        raise call.fail(f"{call.written} does not accept {data.describe()}: it takes numeric "
                        "arrays", hint="cast first, e.g. x.astype(jnp.int32)")
    for flag in ("indices_are_sorted", "unique_indices"):
        call.static(flag, bool)
    if call.args["bucket_size"] is not None:
        call.int("bucket_size", minimum=1)
    return emit_same(call, (n,) + data.shape[1:], data.dtype)


for _name in ("segment_sum", "segment_max", "segment_min", "segment_prod"):
    register(_name, ("jax.ops",), "data, segment_ids, num_segments=None, "
             "indices_are_sorted=False, unique_indices=False, bucket_size=None, mode=None",
             _segment, doc=f"jax.ops.{_name} over a static number of segments")
