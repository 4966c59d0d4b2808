"""Array functions: `jnp.*`, `jax.lax.*`, `jax.nn.*` activations and array methods.

Most entries fall into families (elementwise, reductions, ...) that share one
rule; each family registers its members in a loop.  Every entry is emitted as
the same JAX call the user wrote, so the generated line reads like the DSL.
"""

from __future__ import annotations

from typing import Any, Callable

from .. import dtypes as dt
from .. import shapes as sh
from ..program import Code, Tensor, describe
from ..sizes import plain
from ..values import DType, OpRef, describe_value, to_code
from .calls import FnCall, aval_of, old_names, remember_ints, static_argument_error, value_code
from .registry import REGISTRY, CallError, Entry, Signature

NS_CODE = {"jnp": "jnp", "lax": "jax.lax", "jax.nn": "jax.nn", "nn": "jax.nn",
           "jax.random": "jax.random", "jnp.linalg": "jnp.linalg", "jnp.fft": "jnp.fft",
           "jax.ops": "jax.ops",
           "jax.scipy.special": "jax.scipy.special", "jax.scipy.linalg": "jax.scipy.linalg",
           "jax.scipy.stats.norm": "jax.scipy.stats.norm", "jax.image": "jax.image"}


def register(name: str, namespaces: tuple[str, ...], sig: str, rule: Callable[[FnCall], Any],
             *, code: str | None = None, doc: str = "", static_fn=None,
             template: str = "ops/call.j2", **extra: Any) -> Entry:
    """Add a function entry; `code` defaults to the first namespace's JAX spelling."""
    if code is None:
        code = f"{NS_CODE[namespaces[0]]}.{name}"
    entry = Entry(name, namespaces, "function", Signature.parse(sig, _DEFAULTS), rule, template,
                  code=code, doc=doc, static_fn=static_fn, extra=extra)
    return REGISTRY.add(entry)


_DEFAULTS: dict[str, Any] = {"float32": DType("float32"), "int32": DType("int32")}


def shape_rule(call: FnCall, fn: Callable[..., Any], *args: Any) -> Any:
    """Run a shape function; its ShapeError becomes a located user error."""
    try:
        return fn(*args)
    except sh.ShapeError as e:
        raise CallError("AOT210", f"{call.written}: {e}") from None
    except (TypeError, ValueError, IndexError, OverflowError) as e:
        # static arguments come straight from the model: a value of the wrong kind
        raise static_argument_error(call, args, e) from None


def int_tree(value: Any) -> bool:
    """An int, or (nested) tuples and lists of ints: axes, shifts, repetitions, pads."""
    if isinstance(value, (tuple, list)):
        return all(int_tree(v) for v in value)
    return isinstance(value, int) and not isinstance(value, bool)


def float_dtype(dtype: str) -> str:
    """What float-only functions (exp, mean, ...) compute in for this input dtype."""
    return dtype if dt.is_inexact(dtype) else "float32"


def emit_same(call: FnCall, shape: tuple[int, ...], dtype: str, weak: bool = False) -> Tensor:
    out = call.out(shape, dtype, weak)
    call.emit_call([out], stem=_stem(call))
    return out


def _stem(call: FnCall) -> str:
    return call.entry.name.lower().strip("_")


# ------------------------------------------------------------- selection


def _where(call: FnCall) -> Tensor:
    if call.args["x"] is None and call.args["y"] is None:
        raise call.fail("jnp.where with one argument has a data-dependent shape",
                        hint="pass x and y: jnp.where(cond, x, y)")
    c, a, b = call.aval("condition"), call.aval("x"), call.aval("y")
    shape = shape_rule(call, sh.broadcast_shapes, c[0], a[0], b[0])
    dtype, weak = dt.promote((a[1], a[2]), (b[1], b[2]))
    return emit_same(call, shape, dtype, weak)


register("where", ("jnp",), "condition, x=None, y=None", _where, doc="select elementwise")


def _lax_select(call: FnCall) -> Tensor:
    """`lax.select(pred, on_true, on_false)`: no broadcasting, no promotion, as in lax."""
    p, a, b = call.aval("pred"), call.aval("on_true"), call.aval("on_false")
    if p[1] != "bool":
        raise call.fail(f"{call.written}: pred must be a bool array, got {describe(*p[:2])}",
                        "AOT201")
    if a[0] != b[0] or dt.canonicalize(a[1]) != dt.canonicalize(b[1]):
        raise call.fail(f"{call.written}: on_true {describe(*a[:2])} and on_false "
                        f"{describe(*b[:2])} must have one shape and one dtype", "AOT201",
                        hint="cast or broadcast them first, or use jnp.where, which does")
    if p[0] not in ((), a[0]):
        raise call.fail(f"{call.written}: pred {describe(*p[:2])} must be a scalar or have "
                        f"the shape of on_true and on_false {a[0]}", "AOT210")
    return emit_same(call, a[0], dt.canonicalize(a[1]), a[2] and b[2])


register("select", ("lax",), "pred, on_true, on_false", _lax_select,
         doc="select elementwise (same shapes and dtypes)")


#: numpy's names of clip's bounds, which JAX took until 0.4.27 (2020 code wrote
#: `jnp.clip(x, a_min=0.0)`): emitted as today's `min=` / `max=`.
_OLD_CLIP_NAMES = {"a_min": "min", "a_max": "max"}


def clip(call: FnCall) -> Tensor:
    old_names(call, _OLD_CLIP_NAMES)
    x = call.aval(call.entry.signature.params[0].name)
    parts = [(x[1], x[2])]
    shapes = [x[0]]
    for k in ("min", "max"):
        if call.args[k] is not None:
            a = call.aval(k)
            parts.append((a[1], a[2]))
            shapes.append(a[0])
    shape = shape_rule(call, sh.broadcast_shapes, *shapes)
    dtype, weak = dt.promote(*parts)
    return emit_same(call, shape, dtype, weak)


register("clip", ("jnp",), "x, min=None, max=None, *, a_min=None, a_max=None", clip,
         doc="clip to [min, max] (a_min= and a_max= are their old names)")

# ------------------------------------------------------------- reductions


def sum_dtype(dtype: str) -> str:
    """What `jnp.sum` adds in: bools and narrow integers widen to 32 bits."""
    if dt.is_unsigned(dtype) and dt.itemsize(dtype) < 4:
        return "uint32"
    if dt.is_bool(dtype) or (dt.is_integer(dtype) and dt.itemsize(dtype) < 4):
        return "int32"
    return dtype


def reduction(kind: str) -> Callable[[FnCall], Tensor]:
    """kind: "sum" (bool/int -> int32), "mean" (float), "same" (max/min), "bool", "index"
    (one axis, int32), "count" (int32)."""

    def rule(call: FnCall) -> Tensor:
        x = call.tensor("a")
        axis = call.args.get("axis")
        keepdims = bool(call.args.get("keepdims", False))
        if kind == "index" and isinstance(axis, (tuple, list)):
            raise call.fail(f"{call.written}: axis must be a single int", "AOT203")
        shape = shape_rule(call, sh.reduce_shape, x.shape, axis, keepdims)
        if kind == "same" and call.args.get("where") is not None and \
                call.args.get("initial") is None:
            raise call.fail(f"{call.written} with where= needs initial= (the value where "
                            "nothing is selected)", "AOT203")
        no_identity = kind == "index" or call.entry.name == "median" or (
            kind == "same" and call.args.get("initial") is None)
        if no_identity and sh.size(shape) and not sh.size(x.shape):
            # jax: "attempt to get argmax of an empty sequence" (when it would trace)
            raise call.fail(f"{call.written} over an empty axis of {x.describe()} has no "
                            "value", "AOT210", hint=None if kind == "index" else
                            "give initial= (the value of an empty reduction)"
                            if kind == "same" else None)
        if call.args.get("dtype") is not None:
            dtype = call.dtype("dtype", allow_none=False)
        elif kind == "sum":
            dtype = sum_dtype(x.dtype)
        elif kind == "mean":
            dtype = float_dtype(x.dtype)
        elif kind == "bool":
            dtype = "bool"
        elif kind in ("index", "count"):
            dtype = "int32"
        else:
            dtype = x.dtype
        return emit_same(call, shape, dtype)

    return rule


for n, kind in [("sum", "sum"), ("prod", "sum"), ("mean", "mean"), ("var", "mean"),
                ("std", "mean"), ("max", "same"), ("min", "same"), ("amax", "same"),
                ("amin", "same"), ("all", "bool"), ("any", "bool"), ("nanmean", "mean"),
                ("nansum", "sum"), ("median", "mean"), ("ptp", "same")]:
    sig = {
        "sum": "a, axis=None, dtype=None, out=None, keepdims=False, initial=None, where=None",
        "mean": "a, axis=None, dtype=None, out=None, keepdims=False, *, where=None",
        "same": "a, axis=None, out=None, keepdims=False, initial=None, where=None",
        "bool": "a, axis=None, out=None, keepdims=False, *, where=None",
    }[kind]
    if n in ("var", "std"):
        sig = "a, axis=None, dtype=None, out=None, ddof=0, keepdims=False, *, where=None"
    if n in ("median", "ptp"):
        sig = "a, axis=None, out=None, keepdims=False"
    register(n, ("jnp",), sig, reduction(kind), doc=f"reduction jnp.{n}")
for n in ("argmax", "argmin"):
    register(n, ("jnp",), "a, axis=None, out=None, keepdims=False", reduction("index"),
             doc="index of the extreme value along an axis")
register("count_nonzero", ("jnp",), "a, axis=None, keepdims=False", reduction("count"),
         doc="number of nonzero elements over axes (int32)")


# ------------------------------------------------------------- shapes


def _reshape(call: FnCall) -> Tensor:
    """`jnp.reshape(a, shape)`; `newshape=`, numpy's name that JAX took until 2024, is
    emitted as `shape=`."""
    x = call.tensor("a")
    newshape = call.args["shape"]
    if call.args["newshape"] is not None:
        if newshape is not None:
            raise call.fail(f"{call.written}: give shape or newshape (its old name), not "
                            "both", "AOT203")
        newshape = call.args["newshape"]
        call.keywords = {("shape" if k == "newshape" else k): v
                         for k, v in call.keywords.items()}
    elif newshape is None:
        raise call.fail(f"{call.written} needs a shape", "AOT301")
    if isinstance(newshape, int):
        newshape = (newshape,)
    if not isinstance(newshape, (tuple, list)):
        raise call.fail(f"{call.written}: shape must be a tuple of ints", "AOT203")
    shape = shape_rule(call, sh.reshape, x.shape, tuple(newshape))
    return emit_same(call, shape, x.dtype, x.weak)


register("reshape", ("jnp",), "a, shape=None, order='C', *, newshape=None", _reshape,
         doc="reshape (one -1 allowed; newshape= is shape's old name)")


def simple(fn: Callable[..., tuple[int, ...]], *names: str, defaults: tuple = ()):
    def rule(call: FnCall) -> Tensor:
        x = call.tensor(call.entry.signature.params[0].name)
        args = [call.args[n] for n in names]
        for n, a in zip(names, args):
            if a is not None and not int_tree(a):
                raise call.fail(f"{call.written}: '{n}' must be an int or a tuple of ints, got "
                                f"{describe_value(a)}", "AOT203")
        shape = shape_rule(call, fn, x.shape, *args)
        return emit_same(call, tuple(shape), x.dtype, x.weak)

    return rule


register("transpose", ("jnp",), "a, axes=None", simple(sh.transpose, "axes"), doc="permute axes")
register("swapaxes", ("jnp",), "a, axis1, axis2", simple(sh.swapaxes, "axis1", "axis2"),
         doc="swap two axes")
register("moveaxis", ("jnp",), "a, source, destination",
         simple(sh.moveaxis, "source", "destination"), doc="move axes")
register("expand_dims", ("jnp",), "a, axis", simple(sh.expand_dims, "axis"), doc="insert axes")
register("squeeze", ("jnp",), "a, axis=None", simple(sh.squeeze, "axis"),
         doc="remove size-1 axes")
register("ravel", ("jnp",), "a, order='C'", simple(lambda s: (sh.size(s),)), doc="flatten")
register("tile", ("jnp",), "A, reps", simple(sh.tile, "reps"), doc="tile")
register("repeat", ("jnp",), "a, repeats, axis=None, *, total_repeat_length=None",
         simple(sh.repeat, "repeats", "axis"), doc="repeat elements")
register("flip", ("jnp",), "m, axis=None", simple(lambda s, a: s, "axis"), doc="reverse")
register("roll", ("jnp",), "a, shift, axis=None", simple(lambda s, a, b: s, "shift", "axis"),
         doc="roll")
# ------------------------------------------------------------- lax's strict layout ops


def _lax_layout(fn: Callable[..., tuple[int, ...]], *names: str) -> Callable[[FnCall], Tensor]:
    """A lax layout op (`lax.transpose(x, permutation)`): the shape function of its jnp
    counterpart on the static arguments `names`; the operand's dtype and weak type."""
    def rule(call: FnCall) -> Tensor:
        x = call.tensor(call.entry.signature.params[0].name)
        args = []
        for n in names:
            a = call.args[n]
            if not (a is None or int_tree(a)):
                raise call.fail(f"{call.written}: '{n}' must be ints, got {describe_value(a)}",
                                "AOT203")
            args.append(tuple(a) if isinstance(a, list) else a)
        return emit_same(call, tuple(shape_rule(call, fn, x.shape, *args)), x.dtype, x.weak)

    return rule


def _lax_reshape_shape(shape: tuple[int, ...], new_sizes: tuple[int, ...],
                       dimensions: tuple[int, ...] | None) -> tuple[int, ...]:
    if any(d < 0 for d in new_sizes):
        raise sh.ShapeError(f"lax.reshape takes no -1: sizes {new_sizes}")
    if dimensions is not None:
        shape = sh.transpose(shape, dimensions)
    return sh.reshape(shape, tuple(new_sizes))


def _broadcast_in_dim_shape(shape: tuple[int, ...], out: tuple[int, ...],
                            dims: tuple[int, ...]) -> tuple[int, ...]:
    if len(dims) != len(shape) or len(set(dims)) != len(dims) or list(dims) != sorted(dims) \
            or any(not 0 <= d < len(out) or shape[i] not in (1, out[d])
                   for i, d in enumerate(dims)):
        raise sh.ShapeError(f"cannot broadcast {shape} into {out} along dimensions {dims}")
    return tuple(out)


register("reshape", ("lax",), "operand, new_sizes, dimensions=None",
         _lax_layout(_lax_reshape_shape, "new_sizes", "dimensions"),
         doc="reshape to exact sizes (after an optional transpose)")
register("transpose", ("lax",), "operand, permutation", _lax_layout(sh.transpose, "permutation"),
         doc="permute axes")
register("squeeze", ("lax",), "array, dimensions", _lax_layout(sh.squeeze, "dimensions"),
         doc="remove size-1 axes")
register("expand_dims", ("lax",), "array, dimensions", _lax_layout(sh.expand_dims, "dimensions"),
         doc="insert size-1 axes")
register("rev", ("lax",), "operand, dimensions", _lax_layout(lambda s, d: s, "dimensions"),
         doc="reverse along axes")
register("broadcast_in_dim", ("lax",), "operand, shape, broadcast_dimensions, *, sharding=None",
         _lax_layout(_broadcast_in_dim_shape, "shape", "broadcast_dimensions"),
         doc="broadcast to a shape, each axis to the output axis given")


def _iota(call: FnCall) -> Tensor:
    dtype = call.dtype("dtype", allow_none=False)
    return emit_same(call, (call.int("size", minimum=0),), dtype)


register("iota", ("lax",), "dtype, size, dimension=0, sharding=None", _iota,
         doc="0, 1, ..., size - 1")


def _lax_full(call: FnCall) -> Tensor:
    shape = call.ints("shape", scalar_ok=True)
    fv = call.aval("fill_value")
    if fv[0]:
        raise call.fail(f"{call.written}: fill_value must be a scalar, got {fv[0]}", "AOT210")
    given = call.dtype("dtype")
    dtype, weak = (given, False) if given is not None else (fv[1], fv[2])
    return emit_same(call, tuple(shape), dt.canonicalize(dtype), weak)


register("full", ("lax",), "shape, fill_value, dtype=None, *, sharding=None", _lax_full,
         doc="an array of one value")


def _integer_pow(call: FnCall) -> Tensor:
    x = call.tensor("x")
    y = call.args["y"]
    if not isinstance(y, int) or isinstance(y, bool):
        raise call.fail(f"{call.written}: y must be a static int, got {describe_value(y)}",
                        "AOT203")
    if dt.is_bool(x.dtype) or (y < 0 and dt.is_integer(x.dtype)):
        raise call.fail(f"{call.written} cannot raise {x.describe()} to {y}", "AOT202")
    return emit_same(call, x.shape, x.dtype, x.weak)


register("integer_pow", ("lax",), "x, y", _integer_pow, doc="x to a static integer power")


def _clamp(call: FnCall) -> Tensor:
    lo, x, hi = call.tensor("min"), call.tensor("x"), call.tensor("max")
    for b in (lo, hi):
        if b.shape not in ((), x.shape):
            raise call.fail(f"{call.written}: bounds must be scalars or of x's shape, got "
                            f"{b.describe()} for {x.describe()}", "AOT210")
    if {lo.dtype, hi.dtype} != {x.dtype} and not (lo.weak and hi.weak):
        raise call.fail(f"{call.written} needs bounds of x's dtype, got {lo.describe()}, "
                        f"{x.describe()}, {hi.describe()}", "AOT201")
    return emit_same(call, x.shape, x.dtype, x.weak)


register("clamp", ("lax",), "min, x, max", _clamp, doc="clip between bounds (lax's order)")


def _lax_argmax(call: FnCall) -> Tensor:
    x = call.tensor("operand")
    axis = call.int("axis")
    if not 0 <= axis < x.ndim:
        raise call.fail(f"{call.written}: axis {axis} is out of range for {x.describe()}",
                        "AOT210")
    dtype = call.dtype("index_dtype", allow_none=False)
    if not dt.is_integer(dtype):
        raise call.fail(f"{call.written}: index_dtype must be an integer dtype", "AOT203")
    return emit_same(call, x.shape[:axis] + x.shape[axis + 1:], dtype)


register("argmax", ("lax",), "operand, axis, index_dtype", _lax_argmax,
         doc="index of the largest value along an axis")
register("argmin", ("lax",), "operand, axis, index_dtype", _lax_argmax,
         doc="index of the smallest value along an axis")


def _batch_matmul(call: FnCall) -> Tensor:
    a, b = call.tensor("lhs"), call.tensor("rhs")
    if a.ndim < 2 or a.ndim != b.ndim or a.shape[:-2] != b.shape[:-2] or \
            a.shape[-1] != b.shape[-2]:
        raise call.fail(f"{call.written} needs [..., m, k] and [..., k, n] with one batch "
                        f"shape, got {a.describe()} and {b.describe()}", "AOT210")
    if a.dtype != b.dtype:
        raise call.fail(f"{call.written} needs operands of one dtype, got {a.describe()} and "
                        f"{b.describe()}", "AOT201")
    return emit_same(call, (*a.shape[:-1], b.shape[-1]), a.dtype, a.weak and b.weak)


register("batch_matmul", ("lax",), "lhs, rhs, precision=None", _batch_matmul,
         doc="batched matrix product (one batch shape, one dtype)")


#: The reductions `lax.reduce_window` takes, by the entry a model names them with.
REDUCE_WINDOW_FUNCTIONS = frozenset({"lax.add", "lax.max", "lax.min", "lax.mul", "jnp.add",
                                     "jnp.maximum", "jnp.minimum", "jnp.multiply"})


def _reduce_window(call: FnCall) -> Tensor:
    """`lax.reduce_window(x, init, lax.max, dims, strides, padding)` (how flax.nn's pooling
    was written, and copied): a window over every axis, reduced by one of lax's monoids."""
    x = call.tensor("operand")
    fn = call.args["computation"]
    name = f"{fn.entry.namespaces[0]}.{fn.entry.name}" if isinstance(fn, OpRef) else None
    if name not in REDUCE_WINDOW_FUNCTIONS:
        raise call.fail(f"{call.written}: computation must be one of "
                        f"{', '.join(sorted(REDUCE_WINDOW_FUNCTIONS))}, got "
                        f"{describe_value(fn)}", "AOT203")
    init = call.args["init_value"]
    if not (isinstance(init, (int, float)) or (isinstance(init, Tensor) and not init.shape)):
        raise call.fail(f"{call.written}: init_value must be a scalar, got "
                        f"{describe_value(init)}", "AOT203")
    dims = tuple(call.ints("window_dimensions"))
    strides = tuple(call.ints("window_strides")) if call.args["window_strides"] is not None \
        else (1,) * x.ndim
    for k in ("base_dilation", "window_dilation"):
        if call.args[k] is not None and any(d != 1 for d in call.ints(k)):
            raise call.fail(f"{call.written}: {k} is not supported", "AOT203")
    padding = call.args["padding"]
    if len(dims) != x.ndim or len(strides) != x.ndim:
        raise call.fail(f"{call.written}: window_dimensions and window_strides need one entry "
                        f"per axis of {x.describe()}", "AOT210")
    if isinstance(padding, str):
        padding = padding.upper()
    elif not (isinstance(padding, (tuple, list)) and all(
            isinstance(p, (tuple, list)) and len(p) == 2 and int_tree(p) for p in padding)):
        raise call.fail(f"{call.written}: padding must be 'SAME', 'VALID' or (low, high) pairs",
                        "AOT203")
    shape = shape_rule(call, sh.reduce_window_shape, x.shape, dims, strides, padding)
    out = call.out(shape, x.dtype, x.weak)

    def code(v: Any) -> Code:  # the reduction by its name in the table (a fixed string)
        return Code((v.entry.code or v.written,)) if isinstance(v, OpRef) else value_code(v)

    call.emit_call([out], stem="pooled", code=call.call_code(arg_code=code))
    return out


register("reduce_window", ("lax",), "operand, init_value, computation, window_dimensions, "
         "window_strides=None, padding='VALID', base_dilation=None, window_dilation=None",
         _reduce_window, doc="reduce windows of an array with lax.add, lax.max, ...")


def _lax_sort(call: FnCall) -> Tensor:
    x = call.args["operand"]
    if not isinstance(x, Tensor):
        raise call.fail(f"{call.written}: sorting several operands is not supported; sort one "
                        "array", "AOT202", hint="for keys and values use lax.sort_key_val")
    shape_rule(call, sh.normalize_axis, call.int("dimension"), max(x.ndim, 1))
    if call.int("num_keys") != 1:
        raise call.fail(f"{call.written}: num_keys must be 1 for one operand", "AOT203")
    return emit_same(call, x.shape, x.dtype, x.weak)


register("sort", ("lax",), "operand, dimension=-1, is_stable=True, num_keys=1", _lax_sort,
         doc="sort along a dimension")


def _interp(call: FnCall) -> Tensor:
    x, xp, fp = call.tensor("x"), call.tensor("xp"), call.tensor("fp")
    if xp.ndim != 1 or fp.shape != xp.shape:
        raise call.fail(f"{call.written} needs xp and fp of one length, got {xp.describe()} and "
                        f"{fp.describe()}", "AOT210")
    for k in ("left", "right", "period"):
        if call.args[k] is not None and not isinstance(call.args[k], (int, float, Tensor)):
            raise call.fail(f"{call.written}: {k}= must be a number", "AOT203")
    dtype = dt.promote((float_dtype(x.dtype), False), (float_dtype(xp.dtype), False),
                       (float_dtype(fp.dtype), False))[0]
    return emit_same(call, x.shape, dtype)


register("interp", ("jnp",), "x, xp, fp, left=None, right=None, period=None", _interp,
         doc="linear interpolation at x of the points (xp, fp)")


def _digitize(call: FnCall) -> Tensor:
    x, bins = call.tensor("x"), call.tensor("bins")
    if bins.ndim != 1:
        raise call.fail(f"{call.written} needs a vector of bins, got {bins.describe()}",
                        "AOT210")
    return emit_same(call, x.shape, "int32")


register("digitize", ("jnp",), "x, bins, right=False, *, method=None", _digitize,
         doc="the bin of each value")


def _cross(call: FnCall) -> Tensor:
    a, b = call.tensor("a"), call.tensor("b")
    if call.args["axis"] is not None or any(call.int(k) != -1 for k in ("axisa", "axisb",
                                                                           "axisc")):
        raise call.fail(f"{call.written}: only the last axis is supported", "AOT203")
    if a.ndim < 1 or b.ndim < 1 or a.shape[-1] not in (2, 3) or b.shape[-1] not in (2, 3):
        raise call.fail(f"{call.written} needs vectors of 2 or 3 components, got "
                        f"{a.describe()} and {b.describe()}", "AOT210")
    batch = shape_rule(call, sh.broadcast_shapes, a.shape[:-1], b.shape[:-1])
    dtype, weak = dt.promote((a.dtype, a.weak), (b.dtype, b.weak))
    if a.shape[-1] == b.shape[-1] == 2:
        return emit_same(call, batch, dtype, weak)
    return emit_same(call, (*batch, 3), dtype, weak)


register("cross", ("jnp",), "a, b, axisa=-1, axisb=-1, axisc=-1, axis=None", _cross,
         doc="cross product along the last axis")


def _allclose(call: FnCall) -> Tensor:
    a, b = call.tensor("a"), call.tensor("b")
    shape_rule(call, sh.broadcast_shapes, a.shape, b.shape)
    return emit_same(call, (), "bool")


register("allclose", ("jnp",), "a, b, rtol=1e-05, atol=1e-08, equal_nan=False", _allclose,
         doc="whether all elements are close (a bool array)")


def _cumsum(call: FnCall) -> Tensor:
    """`jnp.cumsum`: bool counts as int32 (other dtypes stay, unlike sum); strong."""
    x = call.tensor("a")
    axis = call.args["axis"]
    if axis is None:
        shape: tuple[int, ...] = (sh.size(x.shape),)
    else:
        shape_rule(call, sh.normalize_axis, call.int("axis"), x.ndim)
        shape = x.shape
    dtype = call.dtype("dtype") or ("int32" if dt.is_bool(x.dtype) else x.dtype)
    return emit_same(call, shape, dt.canonicalize(dtype))


def _lax_cumulative(call: FnCall) -> Tensor:
    """`lax.cumsum` and friends: numbers only, the operand's shape and dtype."""
    x = call.tensor("operand")
    if dt.is_bool(x.dtype):
        raise call.fail(f"{call.written} does not take bool, got {x.describe()}", "AOT202",
                        hint="cast first, e.g. x.astype(jnp.int32)")
    shape_rule(call, sh.normalize_axis, call.int("axis"), max(x.ndim, 1))
    return emit_same(call, x.shape, x.dtype, x.weak)


for _name in ("cumsum", "cumprod", "cummax", "cummin", "cumlogsumexp"):
    register(_name, ("lax",), "operand, axis=0, reverse=False", _lax_cumulative,
             doc=f"cumulative {_name[3:]} along an axis")

register("cumsum", ("jnp",), "a, axis=None, dtype=None", _cumsum, doc="cumulative sum")
register("cumprod", ("jnp",), "a, axis=None, dtype=None", _cumsum, doc="cumulative product")


def _norm(call: FnCall) -> Tensor:
    """`jnp.linalg.norm`: vector norms over one axis, matrix norms over two; float, strong."""
    x = call.tensor("x")
    axis, ord_ = call.args["axis"], call.args["ord"]
    if isinstance(axis, (tuple, list)) and len(axis) > 2:
        raise call.fail(f"jnp.linalg.norm: axis {tuple(axis)} names more than two axes", "AOT203")
    if ord_ is not None and axis is None and x.ndim not in (1, 2):
        raise call.fail(f"jnp.linalg.norm with ord= needs axis= for {x.describe()}", "AOT203")
    if not (ord_ is None or isinstance(ord_, (int, float, str)) and not isinstance(ord_, bool)):
        raise call.fail(f"jnp.linalg.norm: ord must be a static number or name, got "
                        f"{describe_value(ord_)}", "AOT203")
    shape = shape_rule(call, sh.reduce_shape, x.shape, axis, call.bool("keepdims"))
    dtype = {"complex64": "float32", "complex128": "float64"}.get(x.dtype, float_dtype(x.dtype))
    return emit_same(call, shape, dtype)


register("norm", ("jnp.linalg",), "x, ord=None, axis=None, keepdims=False", _norm,
         doc="vector or matrix norm")


def _linspace(call: FnCall) -> Tensor | tuple[Tensor, Tensor]:
    if any(isinstance(call.args[n], Tensor) for n in ("start", "stop")):
        return _linspace_of_arrays(call)
    for name in ("start", "stop"):
        value = call.args[name]
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise call.fail(f"jnp.linspace needs numbers or arrays as bounds, got "
                            f"{describe_value(value)}", "AOT203")
    num = call.int("num", minimum=0)
    if call.int("axis") not in (0, -1):
        raise call.fail("jnp.linspace of static bounds has one axis: axis must be 0", "AOT203")
    dtype = dt.canonicalize(call.dtype("dtype") or "float32")
    samples = call.out((num,), dtype)
    if not call.bool("retstep"):
        call.emit_call([samples], stem="linspace")
        return samples
    step = call.out((), "float32" if not dt.is_inexact(dtype) else dtype)
    call.emit_call([samples, step], stem="linspace")
    return samples, step


def _linspace_of_arrays(call: FnCall) -> Tensor | tuple[Tensor, Tensor]:
    """`jnp.linspace(jnp.log(a), jnp.log(b), n)`: bounds that are arrays (of one shape
    after broadcasting); the samples' axis goes where `axis` says."""
    start, stop = call.aval("start"), call.aval("stop")
    for name, (_, dtype, _) in (("start", start), ("stop", stop)):
        if dt.is_bool(dtype) or dtype.startswith("complex"):
            raise call.fail(f"jnp.linspace: {name} must be real numbers, got "
                            f"{describe(*call.aval(name)[:2])}", "AOT201")
    bounds = shape_rule(call, sh.broadcast_shapes, start[0], stop[0])
    num = call.int("num", minimum=0)
    axis = shape_rule(call, sh.normalize_axis, call.int("axis"), len(bounds) + 1)
    given = call.dtype("dtype")
    if given is not None:
        dtype = dt.canonicalize(given)
    else:
        dtype = float_dtype(dt.result_type((start[1], start[2]), (stop[1], stop[2]))[0])
    samples = call.out(tuple(bounds[:axis]) + (num,) + tuple(bounds[axis:]), dtype)
    if not call.bool("retstep"):
        call.emit_call([samples], stem="linspace")
        return samples
    step = call.out(tuple(bounds), dtype if dt.is_inexact(dtype) else "float32")
    call.emit_call([samples, step], stem="linspace")
    return samples, step


register("linspace", ("jnp",), "start, stop, num=50, endpoint=True, retstep=False, dtype=None, "
         "axis=0", _linspace, doc="num evenly spaced values")


def _logspace(call: FnCall) -> Tensor:
    for k in ("start", "stop", "base"):
        if not isinstance(call.args[k], (int, float)) or isinstance(call.args[k], bool):
            raise call.fail(f"{call.written}: {k} must be a static number here", "AOT203")
    if call.int("axis") != 0:
        raise call.fail(f"{call.written}: axis must be 0 for scalar bounds", "AOT203")
    dtype = call.dtype("dtype") or "float32"
    return emit_same(call, (call.int("num", minimum=0),), dtype)


register("logspace", ("jnp",), "start, stop, num=50, endpoint=True, base=10.0, dtype=None, "
         "axis=0", _logspace, doc="num values evenly spaced on a log scale")
register("broadcast_to", ("jnp",), "array, shape",
         simple(lambda s, t: _bcast_to(s, tuple(t)), "shape"), doc="broadcast")
# `lax.broadcast(x, sizes)`: new leading axes of the given sizes (lax's broadcast_in_dim
# with the operand's axes last); dtype and weak type stay
register("broadcast", ("lax",), "operand, sizes",
         simple(lambda s, sizes: tuple(sizes) + s, "sizes"), doc="prepend axes")
for n in ("tril", "triu"):
    register(n, ("jnp",), "m, k=0", simple(lambda s, k: s, "k"), doc=f"{n} mask")


def _bcast_to(shape: tuple[int, ...], target: tuple[int, ...]) -> tuple[int, ...]:
    if sh.broadcast_shapes(shape, target) != target:
        raise sh.ShapeError(f"cannot broadcast {shape} to {target}")
    return target


def _sequence(call: FnCall, name: str) -> list[Tensor]:
    value = call.args[name]
    if not isinstance(value, (tuple, list)) or not value:
        raise call.fail(f"{call.written} expects a non-empty list of arrays", "AOT202")
    out = []
    for v in value:
        if not isinstance(v, Tensor):
            raise call.fail(f"{call.written} expects arrays, got a static value", "AOT202")
        out.append(v)
    return out


def _joining(fn: Callable[..., tuple[int, ...]], sequence: str = "arrays", axis: bool = True):
    """The rule of a function joining a sequence of arrays (along `axis=` if it takes one),
    promoting their dtypes, or giving its `dtype=`."""
    def rule(call: FnCall) -> Tensor:
        xs = _sequence(call, sequence)
        extra = (call.int("axis"),) if axis else ()
        shape = shape_rule(call, fn, [x.shape for x in xs], *extra)
        dtype, weak = dt.promote(*[(x.dtype, x.weak) for x in xs])
        if call.args["dtype"] is not None:
            dtype, weak = call.dtype("dtype", allow_none=False), False
        return emit_same(call, tuple(shape), dtype, weak)

    return rule


register("concatenate", ("jnp",), "arrays, axis=0, dtype=None", _joining(sh.concatenate),
         doc="join along an axis")
register("stack", ("jnp",), "arrays, axis=0, out=None, dtype=None", _joining(sh.stack),
         doc="stack along a new axis")


register("vstack", ("jnp",), "tup, dtype=None", _joining(sh.vstack, "tup", axis=False),
         doc="join rows (vectors as 1-row matrices) along axis 0")
register("hstack", ("jnp",), "tup, dtype=None", _joining(sh.hstack, "tup", axis=False),
         doc="join along axis 1 (vectors along axis 0)")


def _diag(call: FnCall) -> Tensor:
    x = call.tensor("v")
    shape = shape_rule(call, sh.diag, x.shape, call.int("k"))
    return emit_same(call, shape, x.dtype, x.weak)


register("diag", ("jnp",), "v, k=0", _diag,
         doc="a vector's diagonal matrix, or a matrix's diagonal")


def _lax_concatenate(call: FnCall) -> Tensor:
    """lax is strict: one dtype (no promotion) and a dimension in range (not negative)."""
    xs = _sequence(call, "operands")
    dimension = call.int("dimension")
    dtypes = sorted({x.dtype for x in xs})
    if len(dtypes) > 1:
        raise call.fail(f"{call.written} needs operands of one dtype, got {', '.join(dtypes)}",
                        hint="cast the operands, or use jnp.concatenate, which promotes")
    if not 0 <= dimension < xs[0].ndim:
        raise call.fail(f"{call.written}: dimension {dimension} is out of range for "
                        f"{xs[0].describe()}", "AOT210")
    shape = shape_rule(call, sh.concatenate, [x.shape for x in xs], dimension)
    return emit_same(call, tuple(shape), dtypes[0], all(x.weak for x in xs))


register("concatenate", ("lax",), "operands, dimension", _lax_concatenate,
         doc="join along a dimension (one dtype)")


def _split(call: FnCall) -> tuple[Tensor, ...]:
    x = call.tensor("ary")
    shapes = shape_rule(call, sh.split, x.shape, call.args["indices_or_sections"],
                         call.int("axis"))
    outs = [call.out(s, x.dtype) for s in shapes]
    call.emit_call(outs, stem="part")
    return tuple(outs)


register("split", ("jnp",), "ary, indices_or_sections, axis=0", _split, doc="split")


def _array_split(call: FnCall) -> list[Tensor]:
    x = call.tensor("ary")
    sections = call.args["indices_or_sections"]
    if isinstance(sections, int) and not isinstance(sections, bool):
        shapes = shape_rule(call, sh.array_split, x.shape, sections, call.int("axis"))
    else:  # split points: jnp.split's
        shapes = shape_rule(call, sh.split, x.shape, sections, call.int("axis"))
    outs = [call.out(s, x.dtype, x.weak) for s in shapes]
    call.emit_call(outs, stem="part")
    return outs


register("array_split", ("jnp",), "ary, indices_or_sections, axis=0", _array_split,
         doc="split into parts of nearly equal size (a list)")


def _atleast(rank: int) -> Callable[[FnCall], Any]:
    def rule(call: FnCall) -> Any:
        xs = [call.as_tensor(v, "arys") for v in call.args["arys"]]
        if not xs:
            raise call.fail(f"{call.written} needs an array", "AOT202")
        outs = [call.out(sh.atleast(x.shape, rank), x.dtype, x.weak) for x in xs]
        call.emit_call(outs, stem=f"at_least_{rank}d")
        return outs[0] if len(outs) == 1 else outs

    return rule


for _rank in (1, 2, 3):
    register(f"atleast_{_rank}d", ("jnp",), "*arys", _atleast(_rank),
             doc=f"arrays viewed with at least {_rank} dimensions")


def _kron(call: FnCall) -> Tensor:
    a, b = call.tensor("a"), call.tensor("b")
    dtype, weak = dt.promote((a.dtype, a.weak), (b.dtype, b.weak))
    return emit_same(call, sh.kron(a.shape, b.shape), dtype, weak)


register("kron", ("jnp",), "a, b", _kron, doc="Kronecker product")


def _select(call: FnCall) -> Tensor:
    """`jnp.select(condlist, choicelist, default)`: the first true condition's choice,
    elementwise; every array broadcast together, the choices and default promoted."""
    conds, choices = call.args["condlist"], call.args["choicelist"]
    if not isinstance(conds, (list, tuple)) or not isinstance(choices, (list, tuple)) or \
            len(conds) != len(choices) or not conds:
        raise call.fail(f"{call.written} needs lists of conditions and choices of one "
                        "non-zero length", "AOT203")
    cs = [call.as_tensor(c, "condlist") for c in conds]
    if any(c.dtype != "bool" for c in cs):
        raise call.fail(f"{call.written}: conditions must be bool arrays, got "
                        f"{', '.join(c.describe() for c in cs)}", "AOT202")
    vals = [call.as_tensor(v, "choicelist") for v in choices] + [
        call.as_tensor(call.args["default"], "default")]
    shape = shape_rule(call, sh.broadcast_shapes, *[t.shape for t in cs + vals])
    dtype, weak = dt.promote(*[(v.dtype, v.weak) for v in vals])
    return emit_same(call, shape, dtype, weak)


register("select", ("jnp",), "condlist, choicelist, default=0", _select,
         doc="elementwise choice by the first true condition")


def _searchsorted(call: FnCall) -> Tensor:
    a, v = call.tensor("a"), call.tensor("v")
    if a.ndim != 1:
        raise call.fail(f"{call.written} needs a sorted vector, got {a.describe()}", "AOT210")
    if call.static("side", str) not in ("left", "right"):
        raise call.fail(f"{call.written}: side must be 'left' or 'right'", "AOT203")
    if call.args["sorter"] is not None:
        raise call.fail(f"{call.written}: sorter= is not supported", "AOT203",
                        hint="sort the vector first (jnp.sort)")
    if call.static("method", str) not in ("scan", "scan_unrolled", "sort", "compare_all"):
        raise call.fail(f"{call.written}: unknown method", "AOT203")
    return emit_same(call, v.shape, "int32")


register("searchsorted", ("jnp",), "a, v, side='left', sorter=None, *, method='scan'",
         _searchsorted, doc="insertion indices into a sorted vector")


def _quantile(percent: bool) -> Callable[[FnCall], Tensor]:
    """`jnp.quantile` / `jnp.percentile`: q's shape before the reduced shape, in floats."""
    def rule(call: FnCall) -> Tensor:
        a = call.tensor("a")
        q = call.args["q"]
        if isinstance(q, Tensor):
            q_shape = q.shape
        elif isinstance(q, (int, float)) and not isinstance(q, bool):
            q_shape = ()
        elif isinstance(q, (list, tuple)):
            raise call.fail(f"{call.written}: q must be a number or an array (jax refuses a "
                            f"{type(q).__name__})", "AOT202",
                            hint=f"write jnp.array({to_code(plain(q))})")
        else:
            raise call.fail(f"{call.written}: q must be a number, numbers or an array, got "
                            f"{describe_value(q)}", "AOT203")
        if len(q_shape) > 1:
            raise call.fail(f"{call.written}: q must be a number or a vector", "AOT210")
        if call.static("method", str) not in ("linear", "lower", "higher", "midpoint",
                                              "nearest"):
            raise call.fail(f"{call.written}: unknown method", "AOT203")
        if call.args["weights"] is not None:
            raise call.fail(f"{call.written}: weights= is not supported", "AOT203")
        shape = shape_rule(call, sh.reduce_shape, a.shape, call.args["axis"],
                           call.bool("keepdims"))
        return emit_same(call, (*q_shape, *shape), float_dtype(a.dtype))

    return rule


for _name, _percent in (("quantile", False), ("percentile", True)):
    register(_name, ("jnp",), "a, q, axis=None, out=None, overwrite_input=False, "
             "method='linear', keepdims=False, *, weights=None", _quantile(_percent),
             doc=f"{_name}s over axes (q first in the shape)")

# ------------------------------------------------------------- linear algebra


def matmul_dtype(call: FnCall, a: tuple, b: tuple) -> tuple[str, bool]:
    """Promoted (dtype, weak) of a matrix product of the avals `a` and `b`.

    JAX computes an integer product narrower than 32 bits with a weak integer
    operand at int32 and then refuses to narrow it: an error there too.
    """
    dtype, weak = dt.promote((a[1], a[2]), (b[1], b[2]))
    if dt.is_integer(dtype) and dt.itemsize(dtype) < 4 and any(
            w and dt.is_integer(d) for _, d, w in (a, b)):
        raise call.fail(f"{call.written}: JAX cannot multiply a {dt.short_name(dtype)} matrix "
                        "by a weakly typed integer one", hint=f"cast the other operand with "
                        f".astype(jnp.{dtype})")
    return dtype, weak


def _matmul_like(fn: Callable[..., tuple[int, ...]]):
    def rule(call: FnCall) -> Tensor:
        names = [p.name for p in call.entry.signature.params[:2]]
        a, b = call.aval(names[0]), call.aval(names[1])
        shape = shape_rule(call, fn, a[0], b[0])
        dtype, weak = matmul_dtype(call, a, b)
        if call.args.get("preferred_element_type") is not None:
            dtype = call.dtype("preferred_element_type", allow_none=False)
        return emit_same(call, tuple(shape), dtype, weak)

    return rule


register("matmul", ("jnp",), "a, b, *, precision=None, preferred_element_type=None",
         _matmul_like(sh.matmul), doc="matrix product")
register("dot", ("jnp",), "a, b, *, precision=None, preferred_element_type=None",
         _matmul_like(sh.dot), doc="dot product")
register("outer", ("jnp",), "a, b", _matmul_like(lambda a, b: (sh.size(a), sh.size(b))),
         doc="outer product")


def _tensordot(call: FnCall) -> Tensor:
    a, b = call.tensor("a"), call.tensor("b")
    shape = shape_rule(call, sh.tensordot, a.shape, b.shape, call.args["axes"])
    dtype, weak = dt.promote((a.dtype, a.weak), (b.dtype, b.weak))
    return emit_same(call, tuple(shape), dtype, weak)


register("tensordot", ("jnp",), "a, b, axes=2, *, precision=None", _tensordot, doc="tensordot")


def _qr(call: FnCall) -> Tensor | tuple[Tensor, Tensor]:
    """`jnp.linalg.qr(a, mode)`: Q and R of each matrix of `a` (R alone for mode="r")."""
    a = call.tensor("a", floating=True)
    mode = call.static("mode", str)
    if mode not in ("reduced", "complete", "r"):
        raise call.fail(f"{call.written}: mode must be 'reduced', 'complete' or 'r', got "
                        f"{mode!r}", "AOT203")
    if a.ndim < 2:
        raise call.fail(f"{call.written} needs matrices (rank 2 or more), got {a.describe()}",
                        "AOT210")
    *batch, m, n = a.shape
    k = m if mode == "complete" else min(m, n)
    r = call.out((*batch, k, n), a.dtype)
    if mode == "r":
        call.emit_call([r], stem="r")
        return r
    q = call.out((*batch, m, k), a.dtype)
    call.emit_call([q, r], stem="q")
    return q, r


register("qr", ("jnp.linalg",), "a, mode='reduced'", _qr,
         doc="QR decomposition: (Q, R), or R for mode='r'")


def _matrices(call: FnCall, name: str = "a", square: bool = True) -> Tensor:
    """Argument `name` as a stack of (square) matrices of a type LAPACK takes."""
    a = call.tensor(name)
    if a.ndim < 2 or (square and a.shape[-1] != a.shape[-2]):
        kind = "square matrices" if square else "matrices"
        raise call.fail(f"{call.written} needs {kind} (rank 2 or more), got {a.describe()}",
                        "AOT210")
    if a.dtype in ("bfloat16", "float16"):
        raise call.fail(f"{call.written} has no {a.dtype} kernel, got {a.describe()}",
                        hint="cast first, e.g. a.astype(jnp.float32)")
    return a


def _per_matrix(result: str) -> Callable[[FnCall], Any]:
    """The rule of a function of square matrices (floats out, as jax promotes): `result`
    "same" (a matrix each: inv, cholesky), "scalar" (a number each: det), "slogdet"."""
    def rule(call: FnCall) -> Any:
        a = _matrices(call)
        dtype = float_dtype(a.dtype)
        batch = a.shape[:-2]
        if result == "same":
            return emit_same(call, a.shape, dtype)
        if result == "scalar":
            return emit_same(call, batch, dtype)
        sign, logdet = call.out(batch, dtype), call.out(batch, dtype)
        call.emit_call([sign, logdet], stem="sign")
        return sign, logdet

    return rule


register("inv", ("jnp.linalg",), "a", _per_matrix("same"), doc="inverse of each matrix")
register("det", ("jnp.linalg",), "a", _per_matrix("scalar"), doc="determinant of each matrix")
register("slogdet", ("jnp.linalg",), "a, *, method=None", _per_matrix("slogdet"),
         doc="(sign, log |det|) of each matrix")
register("cholesky", ("jnp.linalg",), "a, *, upper=False, symmetrize_input=True",
         _per_matrix("same"), doc="Cholesky factor of each positive-definite matrix")
# scipy's spellings (`jax.scipy.linalg.det`, as normalizing flows of 2020 wrote them)
register("inv", ("jax.scipy.linalg",), "a, overwrite_a=False, check_finite=True",
         _per_matrix("same"), doc="inverse of each matrix (scipy's spelling)")
register("det", ("jax.scipy.linalg",), "a, overwrite_a=False, check_finite=True",
         _per_matrix("scalar"), doc="determinant of each matrix (scipy's spelling)")
register("cholesky", ("jax.scipy.linalg",), "a, lower=False, overwrite_a=False, "
         "check_finite=True", _per_matrix("same"),
         doc="Cholesky factor of each positive-definite matrix (upper unless lower=True)")


def _solve(call: FnCall) -> Tensor:
    """`jnp.linalg.solve(a, b)` as jax (since 0.5) reads it: `b` one vector (a 1-D b), or
    matrices `[..., n, k]` whose batch broadcasts with a's."""
    a = _matrices(call)
    b = call.tensor("b")
    n = a.shape[-1]
    dtype, _ = dt.promote((float_dtype(a.dtype), False), (float_dtype(b.dtype), False))
    if b.ndim == 1:
        if b.shape[0] != n:
            raise call.fail(f"{call.written}: b has {b.shape[0]} rows for {n}x{n} matrices",
                            "AOT210")
        return emit_same(call, (*a.shape[:-1],), dtype)
    if b.shape[-2] != n:
        raise call.fail(f"{call.written}: b {b.describe()} needs {n} rows (matrices "
                        f"[..., {n}, k]) for {a.describe()}", "AOT210",
                        hint="for a batch of vectors write solve(a, b[..., None])[..., 0]")
    batch = shape_rule(call, sh.broadcast_shapes, a.shape[:-2], b.shape[:-2])
    return emit_same(call, (*batch, n, b.shape[-1]), dtype)


register("solve", ("jnp.linalg",), "a, b", _solve, doc="solve a x = b for each matrix")


def _scipy_solve(call: FnCall) -> Tensor:
    """`jax.scipy.linalg.solve(a, b, assume_a=...)`: jnp.linalg.solve's shapes and dtype
    (jax solves a "pos" matrix through its Cholesky factor, others as jnp.linalg does)."""
    if call.args["assume_a"] not in ("gen", "sym", "her", "pos"):
        raise call.fail(f"{call.written}: assume_a must be 'gen', 'sym', 'her' or 'pos', "
                        f"got {call.args['assume_a']!r}", "AOT203")
    return _solve(call)


register("solve", ("jax.scipy.linalg",), "a, b, lower=False, overwrite_a=False, "
         "overwrite_b=False, debug=False, check_finite=True, assume_a='gen'", _scipy_solve,
         doc="solve a x = b for each matrix (scipy's spelling)")


def _lu_factor(call: FnCall) -> tuple[Tensor, Tensor]:
    """`(lu, piv)` of each matrix: L and U packed in one matrix, int32 pivots."""
    a = _matrices(call, square=False)
    *batch, m, n = a.shape
    lu, piv = call.out(a.shape, float_dtype(a.dtype)), call.out((*batch, min(m, n)), "int32")
    call.emit_call([lu, piv], stem="lu")
    return lu, piv


register("lu_factor", ("jax.scipy.linalg",), "a, overwrite_a=False, check_finite=True",
         _lu_factor, doc="(lu, piv) of each matrix, for lu_solve")


def _lu_solve(call: FnCall) -> Tensor:
    """`lu_solve((lu, piv), b)`: b `(n,)` or `[..., n, k]`, in the factor's float type."""
    given = call.args["lu_and_piv"]
    if not (isinstance(given, tuple) and len(given) == 2
            and all(isinstance(t, Tensor) for t in given)):
        raise call.fail(f"{call.written} takes (lu, piv), as lu_factor returns them", "AOT201")
    lu, piv = given
    b = call.tensor("b")
    if lu.ndim < 2 or lu.shape[-1] != lu.shape[-2] or piv.shape != lu.shape[:-1]:
        raise call.fail(f"{call.written}: (lu, piv) must be a square factor and its pivots, "
                        f"got {lu.describe()} and {piv.describe()}", "AOT210")
    if call.args["trans"] not in (0, 1, 2):
        raise call.fail(f"{call.written}: trans must be 0, 1 or 2", "AOT203")
    n = lu.shape[-1]
    if (b.shape[0] if b.ndim == 1 else b.shape[-2] if b.ndim >= 2 else -1) != n:
        raise call.fail(f"{call.written}: b {b.describe()} needs {n} rows ((n,) or "
                        f"[..., {n}, k]) for {lu.describe()}", "AOT210")
    dtype, _ = dt.promote((float_dtype(lu.dtype), False), (float_dtype(b.dtype), False))
    shape = b.shape if b.ndim == 1 else (
        *shape_rule(call, sh.broadcast_shapes, lu.shape[:-2], b.shape[:-2]), *b.shape[-2:])
    return emit_same(call, shape, dtype)


register("lu_solve", ("jax.scipy.linalg",), "lu_and_piv, b, trans=0, overwrite_b=False, "
         "check_finite=True", _lu_solve, doc="solve a x = b from lu_factor's (lu, piv)")


def _eigh(call: FnCall) -> tuple[Tensor, Tensor]:
    a = _matrices(call)
    dtype = float_dtype(a.dtype)
    w = call.out(a.shape[:-1], dtype)
    v = call.out(a.shape, dtype)
    call.emit_call([w, v], stem="eigenvalues")
    return w, v


register("eigh", ("jnp.linalg",), "a, UPLO=None, symmetrize_input=True", _eigh,
         doc="(eigenvalues, eigenvectors) of each symmetric matrix")


def _svd(call: FnCall) -> Tensor | tuple[Tensor, Tensor, Tensor]:
    a = _matrices(call, square=False)
    if call.args["subset_by_index"] is not None or call.bool("hermitian"):
        raise call.fail(f"{call.written}: subset_by_index= and hermitian=True are not "
                        "supported", "AOT203")
    dtype = float_dtype(a.dtype)
    *batch, m, n = a.shape
    k = min(m, n)
    s = call.out((*batch, k), dtype)
    if not call.bool("compute_uv"):
        call.emit_call([s], stem="s")
        return s
    full = call.bool("full_matrices")
    u = call.out((*batch, m, m if full else k), dtype)
    vh = call.out((*batch, n if full else k, n), dtype)
    call.emit_call([u, s, vh], stem="u")
    return u, s, vh


register("svd", ("jnp.linalg",),
         "a, full_matrices=True, compute_uv=True, hermitian=False, subset_by_index=None", _svd,
         doc="(U, S, Vh) of each matrix, or S for compute_uv=False")


def _diagonal(trace: bool) -> Callable[[FnCall], Tensor]:
    """`jnp.diagonal` (the diagonal of axes axis1, axis2 as the last axis) and
    `jnp.trace` (its sum, in the dtype jnp.sum adds in)."""
    def rule(call: FnCall) -> Tensor:
        a = call.tensor("a")
        shape = shape_rule(call, sh.diagonal, a.shape, call.int("offset"), call.int("axis1"),
                           call.int("axis2"))
        if not trace:
            return emit_same(call, shape, a.dtype, a.weak)
        dtype = call.dtype("dtype") or sum_dtype(a.dtype)
        return emit_same(call, shape[:-1], dtype)

    return rule


register("diagonal", ("jnp",), "a, offset=0, axis1=0, axis2=1", _diagonal(False),
         doc="the diagonal of two axes, as the last axis")
register("trace", ("jnp",), "a, offset=0, axis1=0, axis2=1, dtype=None, out=None",
         _diagonal(True), doc="sum of the diagonal of two axes")


def _meshgrid(call: FnCall) -> list[Tensor]:
    """`jnp.meshgrid(*xi, sparse, indexing)`: a list of the vectors broadcast to a grid
    (for "xy", the first two axes swapped); each keeps its own dtype."""
    xs = [call.as_tensor(v, "xi") for v in call.args["xi"]]
    if any(x.ndim != 1 for x in xs):
        raise call.fail(f"{call.written} takes vectors, got "
                        f"{', '.join(x.describe() for x in xs)}", "AOT210")
    indexing = call.static("indexing", str)
    if indexing not in ("xy", "ij"):
        raise call.fail(f"{call.written}: indexing must be 'xy' or 'ij', got {indexing!r}",
                        "AOT203")
    sizes = [x.shape[0] for x in xs]
    order = list(range(len(xs)))
    if indexing == "xy" and len(xs) >= 2:
        order[0], order[1] = 1, 0
    grid = [sizes[i] for i in order]
    sparse = call.bool("sparse")
    outs = []
    for i, x in enumerate(xs):
        at = order.index(i)
        shape = tuple(d if j == at else 1 for j, d in enumerate(grid)) if sparse else tuple(grid)
        outs.append(call.out(shape, x.dtype, x.weak))
    call.emit_call(outs, stem="grid")
    return outs


register("meshgrid", ("jnp",), "*xi, copy=True, sparse=False, indexing='xy'", _meshgrid,
         doc="coordinate grids from vectors (a list of arrays)")


def _nan_to_num(call: FnCall) -> Tensor:
    x = call.tensor("x")
    for name in ("nan", "posinf", "neginf"):
        if call.args[name] is not None and not isinstance(call.args[name], (int, float)):
            raise call.fail(f"{call.written}: {name}= must be a static number, got "
                            f"{describe_value(call.args[name])}", "AOT203")
    return emit_same(call, x.shape, x.dtype, x.weak)


register("nan_to_num", ("jnp",), "x, copy=True, nan=0.0, posinf=None, neginf=None", _nan_to_num,
         doc="NaN and infinities replaced by numbers")

#: `jax.image.resize` methods, with the names jax also takes for them.
RESIZE_METHODS = ("nearest", "linear", "bilinear", "trilinear", "triangle", "cubic", "bicubic",
                  "tricubic", "keyscubic", "lanczos3", "lanczos5")


def _resize(call: FnCall) -> Tensor:
    """`jax.image.resize(image, shape, method)`: any axes to the sizes given; a method
    other than "nearest" computes in floats (an integer image comes back float32)."""
    image = call.tensor("image")
    shape = call.static("shape", tuple, list)
    if not int_tree(shape) or len(shape) != image.ndim or any(d < 0 for d in shape):
        raise call.fail(f"{call.written}: shape must be {image.ndim} sizes for "
                        f"{image.describe()}, got {describe_value(shape)}", "AOT203")
    method = call.static("method", str)
    if method not in RESIZE_METHODS:
        raise call.fail(f"{call.written}: unknown method {method!r}", "AOT203",
                        hint=f"one of {', '.join(repr(m) for m in RESIZE_METHODS)}")
    dtype = image.dtype if method == "nearest" or dt.is_inexact(image.dtype) else "float32"
    return emit_same(call, tuple(shape), dtype)


register("resize", ("jax.image",), "image, shape, method, antialias=True, precision=None",
         _resize, doc="resize an image (any axes) by interpolation")


def _einsum(call: FnCall) -> Tensor:
    subscripts = call.static("subscripts", str)
    ops = call.args["operands"]
    avals = []
    for i, _ in enumerate(ops):
        a = aval_of(ops[i])
        if a is None:
            raise call.fail("jnp.einsum operands must be arrays", "AOT202")
        avals.append(a)
    shape = shape_rule(call, sh.einsum, subscripts, *[a[0] for a in avals])
    dtype, weak = dt.promote(*[(a[1], a[2]) for a in avals])
    if call.args.get("preferred_element_type") is not None:
        dtype = call.dtype("preferred_element_type", allow_none=False)
    return emit_same(call, tuple(shape), dtype, weak)


register("einsum", ("jnp",),
         "subscripts, *operands, out=None, optimize='auto', precision=None, "
         "preferred_element_type=None", _einsum, doc="Einstein summation")


def _dot_general(call: FnCall) -> Tensor:
    a, b = call.tensor("lhs"), call.tensor("rhs")
    shape = shape_rule(call, sh.dot_general, a.shape, b.shape, call.args["dimension_numbers"])
    dtype, _ = dt.result_type((a.dtype, False), (b.dtype, False))
    if call.args.get("preferred_element_type") is not None:
        dtype = call.dtype("preferred_element_type", allow_none=False)
    return emit_same(call, tuple(shape), dtype)


register("dot_general", ("lax",), "lhs, rhs, dimension_numbers, precision=None, "
         "preferred_element_type=None", _dot_general, doc="general dot product")


def _lax_dot(call: FnCall) -> Tensor:
    """`lax.dot`: vector and matrix products only, typed as `lax.dot_general` types them."""
    a, b = call.tensor("lhs"), call.tensor("rhs")
    if a.ndim not in (1, 2) or b.ndim not in (1, 2):
        raise call.fail(f"{call.written} multiplies vectors and matrices, got {a.describe()} "
                        f"and {b.describe()}", hint="for batched products use jnp.matmul or "
                        "lax.dot_general with dimension numbers")
    shape = shape_rule(call, sh.dot, a.shape, b.shape)
    dtype, _ = dt.result_type((a.dtype, False), (b.dtype, False))
    if call.args.get("preferred_element_type") is not None:
        dtype = call.dtype("preferred_element_type", allow_none=False)
    return emit_same(call, tuple(shape), dtype)


register("dot", ("lax",), "lhs, rhs, precision=None, preferred_element_type=None", _lax_dot,
         doc="vector and matrix product")

# ------------------------------------------------------------- creation and casts


def _astype(call: FnCall) -> Tensor:
    x = call.tensor(call.entry.signature.params[0].name)
    dtype = call.dtype(call.entry.signature.params[1].name, allow_none=False)
    return emit_same(call, x.shape, dt.canonicalize(dtype))


register("astype", ("jnp",), "x, dtype, /, *, copy=False, device=None", _astype, doc="cast")
register("convert_element_type", ("lax",), "operand, new_dtype", _astype, doc="cast")


def _asarray(call: FnCall) -> Tensor:
    """A Python scalar (or a weak array) stays weak; lists and a given dtype are strong."""
    shape, dtype, weak = call.aval("a", convert=False)
    if call.args["dtype"] is not None:
        dtype, weak = call.dtype("dtype", allow_none=False), False
    return remember_ints(emit_same(call, shape, dt.canonicalize(dtype), weak), call.args["a"])


register("asarray", ("jnp",), "a, dtype=None, order=None, *, copy=None", _asarray, doc="array")
register("array", ("jnp",), "object, dtype=None, copy=True, order='K', ndmin=0",
         lambda c: _asarray(_rename(c, "object", "a")), doc="array")


def _rename(call: FnCall, old: str, new: str) -> FnCall:
    call.args[new] = call.args.pop(old)
    return call


def _filled(kind: str) -> Callable[[FnCall], Tensor]:
    """zeros/ones/full and their _like forms: without a dtype, `full` takes the fill
    value's type and the _like forms the array's, weak types included."""

    def rule(call: FnCall) -> Tensor:
        weak = False
        if kind == "like":
            x = call.tensor("a")
            shape = x.shape if call.args.get("shape") is None else tuple(call.ints("shape"))
            dtype = call.dtype("dtype") or x.dtype
            weak = call.args["dtype"] is None and call.args.get("shape") is None and x.weak
        else:
            shape = call.ints("shape", scalar_ok=True)
            given = call.dtype("dtype")
            if given is not None:
                dtype = given
            elif call.entry.name == "full":
                fv = call.aval("fill_value")
                shape_rule(call, _bcast_to, fv[0], tuple(shape))
                dtype, weak = fv[1], fv[2]
            else:
                dtype = "float32"
        return emit_same(call, tuple(shape), dt.canonicalize(dtype), weak)

    return rule


register("zeros", ("jnp",), "shape, dtype=None", _filled("new"), doc="zeros")
register("ones", ("jnp",), "shape, dtype=None", _filled("new"), doc="ones")
register("empty", ("jnp",), "shape, dtype=None", _filled("new"), doc="uninitialized (zeros)")
register("full", ("jnp",), "shape, fill_value, dtype=None", _filled("new"), doc="filled")
register("zeros_like", ("jnp",), "a, dtype=None, shape=None", _filled("like"), doc="zeros")
register("ones_like", ("jnp",), "a, dtype=None, shape=None", _filled("like"), doc="ones")
register("full_like", ("jnp",), "a, fill_value, dtype=None, shape=None", _filled("like"),
         doc="filled")


def _arange(call: FnCall) -> Tensor:
    start, stop, step = call.args["start"], call.args["stop"], call.args["step"]
    for v in (start, stop, step):
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))):
            raise call.fail(f"jnp.arange needs static numbers as bounds, got "
                            f"{describe_value(v)}", "AOT203")
    if stop is None:
        start, stop = 0, start
    step = 1 if step is None else step
    import math

    try:
        n = max(0, math.ceil((stop - start) / step))
    except (ZeroDivisionError, OverflowError, ValueError) as e:
        raise call.fail(f"jnp.arange({start}, {stop}, {step}): {e}", "AOT203") from None
    dtype = call.dtype("dtype") or (
        "float32" if any(isinstance(v, float) for v in (start, stop, step)) else "int32")
    return emit_same(call, (n,), dt.canonicalize(dtype))


register("arange", ("jnp",), "start, stop=None, step=None, dtype=None", _arange, doc="range")


def _eye(call: FnCall) -> Tensor:
    n = call.int("N", minimum=0)
    m = call.args["M"]
    m = n if m is None else m
    return emit_same(call, (n, m), call.dtype("dtype") or "float32")


register("eye", ("jnp",), "N, M=None, k=0, dtype=None", _eye, doc="identity")


def _identity(call: FnCall) -> Tensor:
    n = call.int("n", minimum=0)
    return emit_same(call, (n, n), call.dtype("dtype") or "float32")


register("identity", ("jnp",), "n, dtype=None", _identity, doc="the n x n identity")
register("tri", ("jnp",), "N, M=None, k=0, dtype=None", _eye, doc="lower triangle of ones")

# ------------------------------------------------------------- indexing-like


def _one_hot(call: FnCall) -> Tensor:
    x = call.tensor("x")
    n = call.int("num_classes", minimum=0)
    shape = shape_rule(call, sh.one_hot, x.shape, n, call.int("axis"))
    return emit_same(call, tuple(shape), call.dtype("dtype") or "float32")


register("one_hot", ("jax.nn", "nn"), "x, num_classes, *, dtype=float32, axis=-1", _one_hot,
         doc="one-hot encoding")


def _integer_indices(call: FnCall, name: str, dtype: str, shape: tuple[int, ...]) -> None:
    """jax gathers at integer indices only ("indices must have an integer type")."""
    if not dtype.startswith(("int", "uint")):
        raise call.fail(f"{call.written}: {name} must be integers, got "
                        f"{describe(shape, dtype)}", "AOT211",
                        hint="cast the indices with .astype(jnp.int32)")


def _take(call: FnCall) -> Tensor:
    a, idx = call.tensor("a"), call.aval("indices")
    _integer_indices(call, "indices", idx[1], idx[0])
    shape = shape_rule(call, sh.take, a.shape, idx[0], call.args["axis"])
    return emit_same(call, tuple(shape), a.dtype)


register("take", ("jnp",), "a, indices, axis=None, out=None, mode=None, unique_indices=False, "
         "indices_are_sorted=False, fill_value=None", _take, doc="gather")


def _take_along_axis(call: FnCall) -> Tensor:
    a, idx = call.tensor("arr"), call.tensor("indices")
    _integer_indices(call, "indices", idx.dtype, idx.shape)
    shape = shape_rule(call, sh.take_along_axis, a.shape, idx.shape, call.args["axis"])
    return emit_same(call, tuple(shape), a.dtype)


register("take_along_axis", ("jnp",), "arr, indices, axis, mode=None, fill_value=None",
         _take_along_axis, doc="gather along an axis")


def _sort_like(index: bool):
    def rule(call: FnCall) -> Tensor:
        x = call.tensor("a")
        axis = call.args["axis"]
        shape = x.shape if axis is not None else (sh.size(x.shape),)
        return emit_same(call, shape, "int32" if index else x.dtype)

    return rule


register("sort", ("jnp",), "a, axis=-1, *, kind=None, order=None, stable=True, descending=False",
         _sort_like(False), doc="sort")
register("argsort", ("jnp",), "a, axis=-1, *, kind=None, order=None, stable=True, "
         "descending=False", _sort_like(True), doc="indices that sort")


def _top_k(call: FnCall) -> tuple[Tensor, Tensor]:
    x = call.tensor("operand")
    shape = shape_rule(call, sh.top_k, x.shape, call.int("k", minimum=0))
    vals, idx = call.out(shape, x.dtype), call.out(shape, "int32")
    call.emit_call([vals, idx], stem="top")
    return vals, idx


register("top_k", ("lax",), "operand, k", _top_k, doc="top k values and indices")


def _sort_key_val(call: FnCall) -> tuple[Tensor, Tensor]:
    """`lax.sort_key_val(keys, values, dimension)`: both sorted by the keys along
    `dimension`; lax asks for one shape (no broadcasting) and keeps each dtype and weak type."""
    keys, values = call.tensor("keys"), call.tensor("values")
    if keys.shape != values.shape:
        raise call.fail(f"{call.written} needs keys and values of one shape, got "
                        f"{keys.describe()} and {values.describe()}", "AOT201")
    dimension = call.int("dimension")
    if not -keys.ndim <= dimension < keys.ndim:
        raise call.fail(f"{call.written}: dimension {dimension} is out of range for "
                        f"{keys.describe()}", "AOT210")
    out_keys = call.out(keys.shape, keys.dtype, keys.weak)
    out_values = call.out(values.shape, values.dtype, values.weak)
    call.emit_call([out_keys, out_values], stem="sorted")
    return out_keys, out_values


register("sort_key_val", ("lax",), "keys, values, dimension=-1, is_stable=True",
         _sort_key_val, doc="sort values by keys")

# ------------------------------------------------------------- jax.nn activations

def _softmax_like(call: FnCall) -> Tensor:
    x = call.tensor("x")
    shape_rule(call, sh.normalize_axes, call.args["axis"], x.ndim)
    return emit_same(call, x.shape, float_dtype(x.dtype))


for n in ("softmax", "log_softmax", "standardize"):
    sig = "x, axis=-1, where=None" + (", mean=None, variance=None, epsilon=1e-05"
                                     if n == "standardize" else "")
    register(n, ("nn", "jax.nn"), sig, _softmax_like, code=f"jax.nn.{n}", doc=f"jax.nn.{n}")


def _glu(call: FnCall) -> Tensor:
    x = call.tensor("x")
    axis = sh.normalize_axis(call.int("axis"), x.ndim)
    if x.shape[axis] % 2:
        raise call.fail(f"glu needs an even size along axis {axis}, got {x.describe()}")
    shape = tuple(d // 2 if i == axis else d for i, d in enumerate(x.shape))
    return emit_same(call, shape, float_dtype(x.dtype))


register("glu", ("nn", "jax.nn"), "x, axis=-1", _glu, code="jax.nn.glu", doc="gated linear unit")
