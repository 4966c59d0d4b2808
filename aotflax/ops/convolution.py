"""`jax.lax.conv_general_dilated` and `jax.lax.conv_transpose` as functions.

The layouts are `dimension_numbers` as lax takes them: None (NCHW input, OIHW
kernel), three strings such as ("NHWC", "HWIO", "NHWC"), or a
`lax.ConvDimensionNumbers` of three axis permutations (what `lax.conv_dimension_numbers`
and flax.nn's `_conv_dimension_numbers` return).  Shapes follow
lax's own rules (`conv_general_permutations`, `_conv_transpose_padding`): the
operands are permuted to channels-last and the shape rules of `nn.Conv` apply.
"""

from __future__ import annotations

from typing import Any

from .. import dtypes as dt
from .. import shapes as sh
from ..program import Tensor
from ..values import CONV_DIMENSION_NUMBERS, RecordTuple, conv_dimension_numbers, describe_value
from .arrays import emit_same, int_tree, register
from .calls import FnCall
from .registry import CallError, Signature

Perms = tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]
_PADDINGS = ("SAME", "SAME_LOWER", "VALID")


def conv_permutations(call: FnCall, ndim: int, numbers: Any) -> Perms:
    """(lhs, rhs, out) permutations to (batch, feature, *spatial), as lax computes them."""
    if numbers is None:
        default = tuple(range(ndim))
        return default, default, default
    named = isinstance(numbers, RecordTuple) and numbers.cls is CONV_DIMENSION_NUMBERS
    if not named and not (isinstance(numbers, (tuple, list)) and len(numbers) == 3 and all(
            isinstance(s, str) for s in numbers)):
        raise call.fail(f"{call.written}: dimension_numbers must be None, three layout strings "
                        f"such as ('NHWC', 'HWIO', 'NHWC') or a lax.ConvDimensionNumbers, got "
                        f"{describe_value(numbers)}", "AOT203")
    try:
        return sh.conv_permutations(ndim, tuple(numbers))
    except sh.ShapeError as e:
        raise call.fail(f"{call.written}: {e}", "AOT203") from None


def _per_axis(call: FnCall, name: str, n: int, value: Any = None) -> tuple[int, ...] | None:
    value = call.args[name] if value is None else value
    if value is None:
        return None
    if not isinstance(value, (tuple, list)) or len(value) != n or not int_tree(value) or any(
            isinstance(v, (tuple, list)) for v in value):
        raise call.fail(f"{call.written}: '{name}' must be {n} static ints, one per spatial "
                        f"axis, got {describe_value(value)}", "AOT203")
    return tuple(value)


def _padding(call: FnCall, name: str, n: int) -> str | list[tuple[int, int]]:
    value = call.args[name]
    if isinstance(value, str):
        if value.upper() not in _PADDINGS:
            raise call.fail(f"{call.written}: padding must be one of {', '.join(_PADDINGS)} or "
                            f"(low, high) pairs, got {value!r}", "AOT203")
        return value.upper()
    if not (isinstance(value, (tuple, list)) and len(value) == n and all(
            isinstance(p, (tuple, list)) and len(p) == 2 and int_tree(p) for p in value)):
        raise call.fail(f"{call.written}: padding must be a string or {n} (low, high) pairs, "
                        f"got {describe_value(value)}", "AOT203")
    return [tuple(p) for p in value]


def conv_shape(call: FnCall, lhs: Tensor, rhs_shape: tuple[int, ...], strides: Any,
               padding: Any, lhs_dilation: Any, rhs_dilation: Any, perms: Perms,
               groups: int, batch_groups: int) -> tuple[int, ...]:
    """Output shape of `lax.conv_general_dilated` for any layout."""
    lp, rp, op = perms
    n_lhs = tuple(lhs.shape[i] for i in lp)
    n_rhs = tuple(rhs_shape[i] for i in rp)
    lhs_last = (n_lhs[0], *n_lhs[2:], n_lhs[1])
    rhs_last = (*n_rhs[2:], n_rhs[1], n_rhs[0])
    if batch_groups != 1:
        if groups != 1 or n_lhs[0] % batch_groups or n_rhs[0] % batch_groups:
            raise call.fail(f"{call.written}: batch_group_count={batch_groups} must divide the "
                            "batch and the output features, with feature_group_count=1",
                            "AOT210")
    try:
        out = sh.conv_output_shape(lhs_last, rhs_last, strides, padding, lhs_dilation,
                                   rhs_dilation, groups)
    except sh.ShapeError as e:
        raise call.fail(f"{call.written}: {e}", "AOT210") from None
    canonical = (out[0] // batch_groups, out[-1], *out[1:-1])
    shape = [0] * len(canonical)
    for dim, axis in zip(canonical, op):
        shape[axis] = dim
    return tuple(shape)


def _operands(call: FnCall) -> tuple[Tensor, Tensor, str, bool]:
    lhs, rhs = call.tensor("lhs"), call.tensor("rhs")
    if lhs.ndim != rhs.ndim or lhs.ndim < 2:
        raise call.fail(f"{call.written}: input and kernel must have the same rank >= 2, got "
                        f"{lhs.describe()} and {rhs.describe()}", "AOT210")
    if lhs.dtype != rhs.dtype:
        raise call.fail(f"{call.written} needs input and kernel of one dtype, got "
                        f"{lhs.describe()} and {rhs.describe()}", "AOT201",
                        hint=f"cast the kernel with .astype(jnp.{lhs.dtype})")
    dtype, weak = lhs.dtype, lhs.weak and rhs.weak
    if call.args["preferred_element_type"] is not None:
        dtype, weak = dt.canonicalize(call.dtype("preferred_element_type", allow_none=False)), False
    return lhs, rhs, dtype, weak


def _conv(call: FnCall) -> Tensor:
    lhs, rhs, dtype, weak = _operands(call)
    n = lhs.ndim - 2
    perms = conv_permutations(call, lhs.ndim, call.args["dimension_numbers"])
    shape = conv_shape(call, lhs, rhs.shape, _per_axis(call, "window_strides", n),
                       _padding(call, "padding", n), _per_axis(call, "lhs_dilation", n),
                       _per_axis(call, "rhs_dilation", n), perms,
                       call.int("feature_group_count", minimum=1),
                       call.int("batch_group_count", minimum=1))
    return emit_same(call, shape, dtype, weak)


register("conv_general_dilated", ("lax",),
         "lhs, rhs, window_strides, padding, lhs_dilation=None, rhs_dilation=None, "
         "dimension_numbers=None, feature_group_count=1, batch_group_count=1, precision=None, "
         "preferred_element_type=None", _conv,
         doc="convolution with strides, padding, dilations, groups and any layout")

def _conv_defaults(call: FnCall) -> Tensor:
    """`lax.conv` and `lax.conv_with_general_padding`: conv_general_dilated in its default
    layout (NCHW, OIHW), without groups."""
    for name in ("lhs_dilation", "rhs_dilation", "dimension_numbers",
                 "preferred_element_type"):
        call.args.setdefault(name, None)
    call.args.setdefault("feature_group_count", 1)
    call.args.setdefault("batch_group_count", 1)
    return _conv(call)


register("conv", ("lax",), "lhs, rhs, window_strides, padding, precision=None, "
         "preferred_element_type=None", _conv_defaults,
         doc="convolution, NCHW input and OIHW kernel")
register("conv_with_general_padding", ("lax",), "lhs, rhs, window_strides, padding, "
         "lhs_dilation, rhs_dilation, precision=None, preferred_element_type=None",
         _conv_defaults, doc="convolution with dilations, NCHW input and OIHW kernel")

#: lax.conv_transpose's layouts when dimension_numbers is None, by rank.
_TRANSPOSE_DEFAULTS = {2: ("NC", "IO", "NC"), 3: ("NHC", "HIO", "NHC"),
                       4: ("NHWC", "HWIO", "NHWC"), 5: ("NHWDC", "HWDIO", "NHWDC")}


def _conv_transpose(call: FnCall) -> Tensor:
    lhs, rhs, dtype, weak = _operands(call)
    n = lhs.ndim - 2
    numbers = call.args["dimension_numbers"]
    if numbers is None:
        if lhs.ndim not in _TRANSPOSE_DEFAULTS:
            raise call.fail(f"{call.written}: give dimension_numbers for rank-{lhs.ndim} inputs",
                            "AOT203")
        numbers = _TRANSPOSE_DEFAULTS[lhs.ndim]
    perms = conv_permutations(call, lhs.ndim, numbers)
    strides = _per_axis(call, "strides", n)
    rhs_dilation = _per_axis(call, "rhs_dilation", n)
    padding = _padding(call, "padding", n)
    rp = perms[1]
    if padding in ("SAME", "VALID") and call.args["padding"] in ("SAME", "VALID"):
        window = [rhs.shape[i] for i in rp[2:]]
        padding = sh.conv_transpose_pads(window, strides or (), padding, rhs_dilation)
    rhs_shape = list(rhs.shape)
    if call.bool("transpose_kernel"):  # lax swaps the kernel's input and output features
        rhs_shape[rp[0]], rhs_shape[rp[1]] = rhs_shape[rp[1]], rhs_shape[rp[0]]
    shape = conv_shape(call, lhs, tuple(rhs_shape), (1,) * n, padding, strides, rhs_dilation,
                       perms, 1, 1)
    return emit_same(call, shape, dtype, weak)


register("conv_transpose", ("lax",),
         "lhs, rhs, strides, padding, rhs_dilation=None, dimension_numbers=None, "
         "transpose_kernel=False, precision=None, preferred_element_type=None",
         _conv_transpose, doc="transposed convolution (fractionally strided), any layout")


# ------------------------------------------------------------- dimension numbers as values


def _rank(what: str, shape: Any) -> int:
    if not (isinstance(shape, (tuple, list)) and all(
            isinstance(d, int) and not isinstance(d, bool) for d in shape)):
        raise CallError("AOT203", f"{what} must be a shape (a tuple of ints), got "
                        f"{describe_value(shape)}")
    return len(shape)


def flax_conv_numbers(args: list, kwargs: dict) -> RecordTuple:
    """flax.nn's `linear._conv_dimension_numbers(input_shape)`: channels-last input and
    output, HWIO kernel, as `lax.ConvDimensionNumbers` of permutations."""
    shape = Signature.parse("input_shape").bind(
        "nn.linear._conv_dimension_numbers", args, kwargs)["input_shape"]
    ndim = _rank("nn.linear._conv_dimension_numbers: input_shape", shape)
    if ndim < 2:
        raise CallError("AOT203", "nn.linear._conv_dimension_numbers needs a shape of rank "
                        f">= 2, got rank {ndim}")
    lhs = (0, ndim - 1, *range(1, ndim - 1))
    return conv_dimension_numbers((lhs, (ndim - 1, ndim - 2, *range(ndim - 2)), lhs))


def lax_conv_numbers(args: list, kwargs: dict) -> RecordTuple:
    """`lax.conv_dimension_numbers(lhs_shape, rhs_shape, dimension_numbers)`: the
    `ConvDimensionNumbers` lax's convolutions read `dimension_numbers` as."""
    name = "jax.lax.conv_dimension_numbers"
    bound = Signature.parse("lhs_shape, rhs_shape, dimension_numbers").bind(name, args, kwargs)
    numbers = bound["dimension_numbers"]
    if isinstance(numbers, RecordTuple) and numbers.cls is CONV_DIMENSION_NUMBERS:
        return numbers  # as lax returns it, unchecked
    ndim = _rank(f"{name}: lhs_shape", bound["lhs_shape"])
    if _rank(f"{name}: rhs_shape", bound["rhs_shape"]) != ndim:
        raise CallError("AOT210", f"{name}: convolution needs lhs and rhs of one rank, got "
                        f"{ndim} and {len(bound['rhs_shape'])}")
    if numbers is None:
        return conv_dimension_numbers((tuple(range(ndim)),) * 3)
    if not (isinstance(numbers, (tuple, list)) and len(numbers) == 3 and all(
            isinstance(s, str) for s in numbers)):
        raise CallError("AOT203", f"{name}: dimension_numbers must be None, three layout "
                        f"strings or a lax.ConvDimensionNumbers, got {describe_value(numbers)}")
    try:
        return conv_dimension_numbers(sh.conv_permutations(ndim, tuple(numbers)))
    except sh.ShapeError as e:
        raise CallError("AOT203", f"{name}: {e}") from None
