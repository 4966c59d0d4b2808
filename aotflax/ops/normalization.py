"""Normalization layers with state: BatchNorm, GroupNorm, RMSNorm.

Each rule follows Linen's `_compute_stats` and `_normalize` operation by
operation, so float32 results agree with Linen to rounding:

- statistics are computed in `promote_types(dtype or x.dtype, float32)`, so
  bfloat16 and float16 models keep float32 statistics;
- the variance is `max(0, E[x^2] - E[x]^2)` (`use_fast_variance=True`) or
  `E[(x - E[x])^2]`;
- the output is `(x - mean) * (rsqrt(var + eps) * scale) + bias`, cast to
  `dtype` (default: the promotion of the input and the parameters).

BatchNorm keeps its running statistics in the `batch_stats` collection as
Linen does (`mean` zeros and `var` ones, float32, shape of the feature axes):
a training call returns `momentum * old + (1 - momentum) * batch` for both, an
evaluation call (`use_running_average=True`) only reads them.

Generated code calls the runtime's helper of each layer in one line
(`_runtime.batch_norm_train(x, params["BatchNorm_0"], batch_stats["BatchNorm_0"],
momentum=0.9, epsilon=1e-05)`), with every hyperparameter that is not Linen's
default as a keyword argument; the helpers (templates/runtime.py.j2, section
"layers") perform the operations described here in this order.  The template
arguments the FLOP and axis rules read (`x`, `axes`, `scale`, `bias`, ...) are
passed along unrendered.
"""

from __future__ import annotations

from dataclasses import dataclass

from .. import dtypes as dt
from ..program import Code, Tensor, TreeVar, Var
from ..quoting import literal
from ..values import describe_value
from . import initializers as inits
from . import plans
from .calls import LayerCall
from .layers import dtype_option, layer, options, subtree

BATCH_STATS = "batch_stats"


# ------------------------------------------------------------- helpers


def _axes(call: LayerCall, name: str, ndim: int) -> tuple[int, ...]:
    """An int or a tuple of ints as sorted non-negative axes of a rank-`ndim` value."""
    value = call.args[name]
    items = call.ints(name, scalar_ok=True)
    assert items is not None
    out = set()
    for a in items:
        if not -ndim <= a < ndim:
            raise call.fail(f"{call.written}: {name}={value!r} is out of range for an input of "
                            f"rank {ndim}", "AOT203")
        out.add(a % ndim)
    return tuple(sorted(out))


def _stat_dtype(call: LayerCall, x: Tensor) -> str:
    """Linen: statistics in `promote_types(dtype or x.dtype, float32)`."""
    base = call.dtype("dtype") or x.dtype
    return dt.result_type((base, False), ("float32", False))[0]


def _shape_code(shape: tuple[int, ...]) -> str:
    return "(" + ", ".join(str(d) for d in shape) + ("," if len(shape) == 1 else "") + ")"


def _view(shape: tuple[int, ...], ndim: int, feature_axes: tuple[int, ...]) -> str:
    """`.reshape((1, 1, 1, -1))` turning a parameter of `shape` (the feature axes' sizes)
    into a view that broadcasts over a rank-`ndim` value.

    Linen reshapes explicitly too, so generated code runs under strict rank promotion.
    With one feature axis the view is written by rank alone (`-1` is the parameter's
    size), so the code is the same whatever the width.
    """
    view = tuple(shape[feature_axes.index(i)] if i in feature_axes else 1
                 for i in range(ndim))
    if view == shape:
        return ""
    if len(feature_axes) == 1:
        view = tuple(-1 if i in feature_axes else 1 for i in range(ndim))
    return f".reshape({_shape_code(view)})"


def _cast_to(call: LayerCall, x: Tensor, dtype: str, stem: str = "xf") -> Tensor:
    """`x.astype(dtype)` as its own statement (only when the dtype changes).

    Linen casts its inputs to the statistics dtype first and its result to `dtype`
    last (`jnp.asarray(y, dtype)`); a statement of its own keeps operator precedence
    out of the templates.
    """
    if x.dtype == dtype:
        return x
    out = call.out(x.shape, dtype)
    call.emit("ops/call.j2", {"call": Code.of(x, f".astype(jnp.{dtype})")}, [out], stem=stem)
    return out


def _affine(call: LayerCall, feature_shape: tuple[int, ...], view: str, *,
            bias: bool = True) -> tuple[list[str], dict[str, Code | str]]:
    """Declare `scale` / `bias` (Linen names, shape of the feature axes).

    **Returns:** their dtypes, and the template arguments: `scale` (` * scale_view`) and
    `bias` (` + bias_view`), empty when absent, and `params`, the code of the dict that
    holds them (the layer's parameter subtree).
    """
    pdt = call.dtype("param_dtype", allow_none=False)
    assert pdt is not None
    dtypes: list[str] = []
    args: dict[str, Code | str] = {"scale": "", "bias": ""}
    raw: dict[str, Code] = {}
    if call.bool("scale"):
        raw["scale"] = call.param("scale", feature_shape, pdt, call.initializer("scale_init"))
        args["scale"] = Code.of(" * ", raw["scale"], view)
        dtypes.append(pdt)
    if bias and call.bool("bias"):
        raw["bias"] = call.param("bias", feature_shape, pdt, call.initializer("bias_init"))
        args["bias"] = Code.of(" + ", raw["bias"], view)
        dtypes.append(pdt)
    args["params"] = subtree(raw)
    return dtypes, args


def _output_dtypes(call: LayerCall, x: Tensor, stat: str, params: list[str]) -> tuple[str, str]:
    """(dtype the normalized value is computed in, dtype Linen returns)."""
    computed = dt.result_type((x.dtype, False), (stat, False), *[(p, False) for p in params])[0]
    final = call.dtype("dtype") or dt.result_type((x.dtype, False),
                                                  *[(p, False) for p in params])[0]
    if not dt.is_inexact(final):
        final = dt.result_type((final, False), ("float32", False))[0]
    return computed, final


def _hint(call: LayerCall, value: Var, name: str) -> None:
    hint = getattr(call.ctx, "hint", None)
    if hint is not None:
        hint(value, name)


# ------------------------------------------------------------- BatchNorm


@dataclass(frozen=True, slots=True)
class _BatchNormPlan:
    """What a BatchNorm call derives from its input's type and static arguments."""

    feature_shape: tuple[int, ...]
    #: `.reshape(...)` of its parameters and statistics, as `Code` parts (" * ", view).
    view: str
    param_dtype: str
    scale: bool
    bias: bool
    final: str
    #: Template arguments: the reduced axes and the helper's keyword arguments.
    axes: Code
    options: Code
    template: str
    eval: bool


_BATCH_NORM_STATIC = ("use_running_average", "axis", "momentum", "epsilon", "bias", "scale",
                      "dtype", "param_dtype", "axis_name", "axis_index_groups",
                      "use_fast_variance", "batch_stats")


def _device_groups(call: LayerCall, axis_name: str | None) -> None:
    """`axis_index_groups`: groups of devices whose statistics are averaged together.

    flax.nn and Linen read it only with an `axis_name` (under `pmap`), so without one it
    is ignored, as there.  With one, the statistics of each group would be its own; under
    jit they cover the whole batch, so a grouping has no meaning here and is refused."""
    groups = call.static("axis_index_groups", tuple, list, allow_none=True)
    if groups is None or axis_name is None:
        return
    raise call.fail(f"{call.written}: axis_index_groups={describe_value(groups)} averages "
                    "statistics over groups of devices; generated code runs under jit, where "
                    "batch statistics always cover the whole batch", "AOT203",
                    hint="leave axis_index_groups=None: statistics cover the global batch")


def _batch_norm_plan(call: LayerCall, x: Tensor) -> _BatchNormPlan:
    """`batch_norm`'s checks and derived values, in its order (see `plans`)."""
    call.tensor("x", floating=True)
    feature_axes = _axes(call, "axis", x.ndim)
    reduction = tuple(i for i in range(x.ndim) if i not in feature_axes)
    feature_shape = tuple(x.shape[a] for a in feature_axes)
    view = _view(feature_shape, x.ndim, feature_axes)
    momentum = float(call.static("momentum", float, int))
    eps = float(call.static("epsilon", float, int))
    # axis_name synchronizes statistics across pmap devices; generated code runs under jit,
    # where XLA SPMD already reduces over the global batch (Linen: "for SPMD jit, you do not
    # need to manually synchronize"), so the name has nothing to refer to and is ignored.
    axis_name = call.static("axis_name", str, allow_none=True)
    _device_groups(call, axis_name)
    if call.args["batch_stats"] is not None:
        # old flax.nn took the Collection holding the statistics; here they are the target's
        # `batch_stats` state, passed in and returned as `new_state`
        raise call.fail(f"{call.written}: batch_stats= took a flax.nn Collection; here the "
                        f"statistics are the 'batch_stats' state of the target, got "
                        f"{describe_value(call.args['batch_stats'])}", "AOT203",
                        hint="leave batch_stats out: statistics arrive in the target's state "
                             "argument and leave in new_state")
    stat = _stat_dtype(call, x)
    pdt = call.dtype("param_dtype", allow_none=False)
    scale, bias = call.bool("scale"), call.bool("bias")
    _, final = _output_dtypes(call, x, stat, [pdt] * (scale + bias))
    axis = None if feature_axes == (x.ndim - 1,) else literal(
        feature_axes[0] if len(feature_axes) == 1 else feature_axes)
    dtype = dtype_option(call)
    if call.bool("use_running_average"):
        return _BatchNormPlan(feature_shape, view, pdt, scale, bias, final,
                              Code((_shape_code(reduction),)),
                              Code((options(axis=axis, epsilon=literal(eps), dtype=dtype),)),
                              "layers/batch_norm_eval.j2", True)
    fast = call.bool("use_fast_variance")
    return _BatchNormPlan(
        feature_shape, view, pdt, scale, bias, final, Code((_shape_code(reduction),)),
        Code((options(axis=axis, momentum=literal(momentum), epsilon=literal(eps),
                      dtype=dtype, use_fast_variance=None if fast else "False"),)),
        "layers/batch_norm.j2" if fast else "layers/batch_norm_centered.j2", False)


def _batch_norm_planned(call: LayerCall, x: Tensor, counts: dict[str, int] | None,
                        plan: _BatchNormPlan) -> Tensor:
    """`batch_norm` at one call site, from its plan: its declarations and its op."""
    fs = plan.feature_shape
    ra_mean = call.state(BATCH_STATS, "mean", fs, "float32", inits.ZEROS)
    ra_var = call.state(BATCH_STATS, "var", fs, "float32", inits.ONES)
    affine: dict[str, Code | str] = {"scale": "", "bias": ""}
    raw: dict[str, Code] = {}
    if plan.scale:
        raw["scale"] = call.param("scale", fs, plan.param_dtype, call.initializer("scale_init"))
        affine["scale"] = Code.of(" * ", raw["scale"], plan.view)
    if plan.bias:
        raw["bias"] = call.param("bias", fs, plan.param_dtype, call.initializer("bias_init"))
        affine["bias"] = Code.of(" + ", raw["bias"], plan.view)
    affine["params"] = subtree(raw)
    args: dict[str, Code | str | Tensor] = {
        "x": x, "axes": plan.axes, "stats": subtree({"mean": ra_mean, "var": ra_var}),
        **affine, "options": plan.options}
    out = call.out(x.shape, plan.final)
    outputs: list[Var] = [out]
    if not plan.eval:
        new_stats = TreeVar("new batch_stats")
        prefix = getattr(call.scope, "prefix", ())
        _hint(call, new_stats, f"{prefix[-1] if prefix else 'batch_norm'}_stats")
        outputs.append(new_stats)
    count = plans.flops(counts, plan.template)
    counted = call.emit(plan.template, args, outputs, stem="norm", flops=count)
    plans.record_flops(counts, plan.template, counted)
    if not plan.eval:
        call.set_state_tree(BATCH_STATS, outputs[1])
    return out


@layer("BatchNorm", "x, use_running_average=False, axis=-1, momentum=0.99, epsilon=1e-05, "
       "bias=True, scale=True, bias_init=zeros, scale_init=ones, dtype=None, "
       "param_dtype=float32, axis_name=None, axis_index_groups=None, use_fast_variance=True, "
       "batch_stats=None",
       "layers/batch_norm.j2",
       "batch normalization: scale (C,), bias (C,); batch_stats mean (C,), var (C,) in float32")
def batch_norm(call: LayerCall) -> Tensor:
    return plans.run(call, _batch_norm_plan, _batch_norm_planned, "x", _BATCH_NORM_STATIC)


# ------------------------------------------------------------- GroupNorm


def _groups(call: LayerCall, channels: int) -> int:
    num, size = call.args["num_groups"], call.args["group_size"]
    if (num is None) == (size is None):
        raise call.fail(f"{call.written}: give exactly one of num_groups and group_size",
                        "AOT203", hint="to set group_size, also pass num_groups=None")
    if size is not None:
        size = call.int("group_size", minimum=1)
        if channels % size:
            raise call.fail(f"{call.written}: {channels} channels are not a multiple of "
                            f"group_size={size}", "AOT203")
        return channels // size
    num = call.int("num_groups", minimum=1)
    if channels % num:
        raise call.fail(f"{call.written}: num_groups={num} does not divide the {channels} "
                        "channels", "AOT203")
    return num


@layer("GroupNorm", "x, num_groups=32, group_size=None, epsilon=1e-06, dtype=None, bias=True, "
       "scale=True, bias_init=zeros, scale_init=ones, param_dtype=float32, "
       "use_fast_variance=True", "layers/group_norm.j2",
       "group normalization over all but the batch axis: scale (C,), bias (C,) (Linen shapes)")
def group_norm(call: LayerCall) -> Tensor:
    x = call.tensor("x", floating=True)
    if x.ndim < 2:
        raise call.fail(f"{call.written} expects (batch, ..., channels), got {x.describe()}")
    channels = x.shape[-1]
    groups = _groups(call, channels)
    eps = float(call.static("epsilon", float, int))
    stat = _stat_dtype(call, x)
    params, affine = _affine(call, (channels,), _view((channels,), x.ndim, (x.ndim - 1,)))
    _, final = _output_dtypes(call, x, stat, params)
    # Linen reduces the grouped value over its non-batch axes, then repeats each group's
    # statistics over its channels and expands them back over the spatial axes (the
    # helper); the FLOP rule reads x, groups, scale and bias
    fast = call.bool("use_fast_variance")
    out = call.out(x.shape, final)
    call.emit("layers/group_norm.j2" if fast else "layers/group_norm_centered.j2", {
        "x": x, "groups": literal(groups), **affine,
        "options": options(num_groups=literal(groups), epsilon=literal(eps),
                           dtype=dtype_option(call), use_fast_variance=None if fast else "False"),
    }, [out], stem="norm")
    return out


# ------------------------------------------------------------- RMSNorm


@layer("RMSNorm", "x, epsilon=1e-06, dtype=None, param_dtype=float32, scale=True, "
       "scale_init=ones", "layers/rms_norm.j2",
       "root-mean-square normalization over the last axis: scale (C,); statistics in float32")
def rms_norm(call: LayerCall) -> Tensor:
    x = call.tensor("x", floating=True)
    if x.ndim == 0:
        raise call.fail(f"{call.written} expects at least a 1-D input, got {x.describe()}")
    eps = float(call.static("epsilon", float, int))
    stat = _stat_dtype(call, x)
    c = x.shape[-1]
    params, affine = _affine(call, (c,), _view((c,), x.ndim, (x.ndim - 1,)), bias=False)
    computed, final = _output_dtypes(call, x, stat, params)
    xf = _cast_to(call, x, stat)
    out = call.out(x.shape, computed)
    call.emit("layers/rms_norm.j2", {"xf": xf, "eps": literal(eps), "scale": affine["scale"]},
              [out], stem="norm", temps={"var": Tensor((*x.shape[:-1], 1), stat)})
    return _cast_to(call, out, final, "norm")
