"""DenseGeneral and ConvTranspose: old `flax.nn` signatures, Linen trees and math.

`dense_general` is also the projection behind attention's `query` / `key` /
`value` / `out` submodules, so it takes the scope to declare into explicitly.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from .. import shapes as sh
from ..program import Code, Tensor
from ..quoting import literal
from ..values import Initializer
from . import initializers as inits
from .calls import LayerCall
from .layers import (
    cast,
    compute_dtype,
    feature_view,
    layer,
    need_batch,
    padding_pairs,
    precision_code,
    tuple_arg,
)

#: Initializers whose values do not depend on the shape they are asked for.
_SHAPE_FREE = (inits.ZEROS.code, inits.ONES.code)


# ------------------------------------------------------------- helpers


def sub_call(call: LayerCall, name: str, owner: str) -> LayerCall:
    """The same call declaring its parameters under the child `name` (a Linen submodule)."""
    return dataclasses.replace(call, scope=call.scope.child(name, owner))


def int_tuple(call: LayerCall, name: str) -> tuple[int, ...]:
    """An int or a tuple of ints, as a tuple (Linen's `_canonicalize_tuple`)."""
    value = call.args[name]
    if isinstance(value, int) and not isinstance(value, bool):
        return (value,)
    return call.ints(name)


def flat_init(init: Any, flat: tuple[int, ...], full: tuple[int, ...]) -> Any:
    """Linen's `kernel_init_wrap`: initialize the flattened 2-D shape, then reshape.

    Fan-in / fan-out of variance-scaling initializers then count whole input and
    output feature groups, as in Linen.  User initializers get the real shape.
    """
    if flat == full or not isinstance(init, Initializer) or init.code in _SHAPE_FREE:
        return init
    code = f"(lambda key, shape, dtype: jnp.reshape({init.code}(key, {flat!r}, dtype), shape))"
    return Initializer(code, f"{init.description} on the flattened shape {flat}")


# ------------------------------------------------------------- DenseGeneral


def dense_general(call: LayerCall, x: Tensor, features: tuple[int, ...],
                  axis: tuple[int, ...], batch_dims: tuple[int, ...] = (), *,
                  use_bias: bool, dtype: str | None, param_dtype: str, kernel_init: Any,
                  bias_init: Any, precision: str = "", stem: str = "dense") -> Tensor:
    """Emit Linen's DenseGeneral on `x` with parameters declared in `call`'s scope.

    `axis` and `batch_dims` are normalized (non-negative); `dtype` None means the
    promotion of input and parameter dtypes.
    """
    n_batch = len(batch_dims)
    batch_shape = tuple(x.shape[a] for a in batch_dims)
    in_shape = tuple(x.shape[a] for a in axis)
    kshape = batch_shape + in_shape + features
    kflat = (math.prod(batch_shape) * math.prod(in_shape), math.prod(features))
    kernel = call.param("kernel", kshape, param_dtype, flat_init(kernel_init, kflat, kshape))
    bias = None
    if use_bias:
        bshape = batch_shape + features
        bflat = (math.prod(batch_shape) * math.prod(features),)
        bias = call.param("bias", bshape, param_dtype, flat_init(bias_init, bflat, bshape))
    dtype = dtype or compute_dtype(call, x.dtype, param_dtype)
    free = [a for a in range(x.ndim) if a not in axis]
    out_shape = (*batch_shape, *(x.shape[a] for a in free if a not in batch_dims), *features)
    out = call.out(out_shape, dtype)
    contract = (tuple(axis), tuple(range(n_batch, n_batch + len(axis))))
    batch = (tuple(batch_dims), tuple(range(n_batch)))
    bias_code: Code | str = ""
    if bias is not None:
        # Linen reshapes the bias to (batch dims or 1, ..., *features) before adding it.
        expanded = tuple(x.shape[a] if a in batch_dims else 1 for a in free) + features
        bias_code = Code.of(" + ", cast(bias, param_dtype, dtype))
        if expanded != bshape and not batch_dims and len(features) == 1:
            # written by rank: (1, 1, -1)
            bias_code = Code.of(bias_code, f".reshape(({'1, ' * len(free)}-1))")
        elif expanded != bshape and not batch_dims:  # leading axes, by rank (bias named once)
            axes = tuple(range(len(free)))
            bias_code = Code.of(" + jnp.expand_dims(", cast(bias, param_dtype, dtype),
                                f", {literal(axes)})")
        elif expanded != bshape:
            bias_code = Code.of(bias_code, f".reshape({expanded!r})")
    call.emit("layers/dense_general.j2", {
        "x": cast(x, x.dtype, dtype), "kernel": cast(kernel, param_dtype, dtype),
        "dims": repr((contract, batch)), "precision": precision, "bias": bias_code,
    }, [out], stem=stem)
    return out


def _axes(call: LayerCall, name: str, ndim: int) -> tuple[int, ...]:
    try:
        return sh.normalize_axes(int_tuple(call, name), ndim)
    except sh.ShapeError as e:
        raise call.fail(f"{call.written}: {name}: {e}", "AOT210") from None


@layer("DenseGeneral", "inputs, features, axis=-1, batch_dims=(), bias=True, dtype=None, "
       "param_dtype=float32, precision=None, kernel_init=lecun_normal, bias_init=zeros",
       "layers/dense_general.j2",
       "linear map over several axes: kernel (*batch, *in_axes, *features), bias "
       "(*batch, *features)")
def dense_general_layer(call: LayerCall) -> Tensor:
    x = call.tensor("inputs", floating=True)
    features = int_tuple(call, "features")
    if not features or any(f < 1 for f in features):
        raise call.fail(f"{call.written}: features must be positive, got {features}", "AOT203")
    axis = _axes(call, "axis", x.ndim)
    batch_dims = _axes(call, "batch_dims", x.ndim)
    if batch_dims and set(batch_dims) != set(range(len(batch_dims))):
        raise call.fail(f"{call.written}: batch_dims {call.args['batch_dims']} must be "
                        "consecutive leading dimensions starting from 0", "AOT203")
    if set(axis) & set(batch_dims):
        raise call.fail(f"{call.written}: axis {call.args['axis']} overlaps batch_dims "
                        f"{call.args['batch_dims']}", "AOT203")
    return dense_general(call, x, features, axis, batch_dims, use_bias=call.bool("bias"),
                         dtype=call.dtype("dtype"), param_dtype=call.dtype("param_dtype", allow_none=False),
                         kernel_init=call.initializer("kernel_init"),
                         bias_init=call.initializer("bias_init"),
                         precision=precision_code(call))


# ------------------------------------------------------------- ConvTranspose


@layer("ConvTranspose", "inputs, features, kernel_size, strides=None, padding='SAME', "
       "kernel_dilation=None, bias=True, dtype=None, param_dtype=float32, precision=None, "
       "kernel_init=lecun_normal, bias_init=zeros, transpose_kernel=False",
       "layers/conv_transpose.j2",
       "transposed convolution (lax.conv_transpose), channels last: kernel (*window, in, "
       "features)")
def conv_transpose(call: LayerCall) -> Tensor:
    x = call.tensor("inputs", floating=True)
    ks = call.args["kernel_size"]
    ks = (ks,) if isinstance(ks, int) and not isinstance(ks, bool) else call.ints("kernel_size")
    n = len(ks)
    need_batch(call, x, n)
    features = call.int("features", minimum=1)
    strides = tuple_arg(call, "strides", n, 1)
    dilation = tuple_arg(call, "kernel_dilation", n, 1)
    pad_code, pad = padding_pairs(call, n)
    transpose_kernel = call.bool("transpose_kernel")
    cin = x.shape[-1]
    pdt = call.dtype("param_dtype", allow_none=False)
    try:
        shape = sh.conv_transpose_output_shape(x.shape, (*ks, cin, features), strides, pad,
                                               dilation)
    except sh.ShapeError as e:
        raise call.fail(f"{call.written}: {e}", "AOT210") from None
    kshape = (*ks, features, cin) if transpose_kernel else (*ks, cin, features)
    kernel = call.param("kernel", kshape, pdt, call.initializer("kernel_init"))
    bias = call.param("bias", (features,), pdt, call.initializer("bias_init")) \
        if call.bool("bias") else None
    dtype = compute_dtype(call, x.dtype, pdt)
    out = call.out(shape, dtype)
    extra = ""
    if any(d != 1 for d in dilation):
        extra += f", rhs_dilation={dilation!r}"
    if transpose_kernel:
        extra += ", transpose_kernel=True"
    call.emit("layers/conv_transpose.j2", {
        "x": cast(x, x.dtype, dtype), "kernel": cast(kernel, pdt, dtype),
        "strides": repr(strides), "padding": pad_code, "extra": extra + precision_code(call),
        "bias": Code.of(" + ", feature_view(cast(bias, pdt, dtype), len(shape)))
        if bias is not None else "",
    }, [out], stem="conv")
    return out
