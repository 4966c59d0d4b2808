"""Python operators, indexing and methods on arrays (`x + y`, `x[:, 0]`, `x.reshape(...)`)."""

from __future__ import annotations

from typing import Any, Callable

from .. import dtypes as dt
from .. import shapes as sh
from ..program import Code, Tensor
from .arrays import emit_same, reduction, shape_rule, simple
from .calls import FnCall, value_code
from .registry import REGISTRY, Entry, Signature

# ------------------------------------------------------------- indexing


def _index_code(item: Any) -> Code:
    if isinstance(item, slice):
        parts = ["" if v is None else str(v) for v in (item.start, item.stop)]
        text = ":".join(parts)
        if item.step is not None:
            text += f":{item.step}"
        return Code((text,))
    if item is None:
        return Code(("None",))
    if item is Ellipsis:
        return Code(("...",))
    return value_code(item)


def _getitem(call: FnCall) -> Tensor:
    x = call.tensor("operand")
    index = call.args["index"]
    items = index if isinstance(index, tuple) else (index,)
    spec: list[Any] = []
    for it in items:
        if isinstance(it, Tensor):
            if not (dt.is_integer(it.dtype) or dt.is_bool(it.dtype)):
                raise call.fail(f"array indices must be integers, got {it.describe()}", "AOT211")
            if dt.is_bool(it.dtype):
                raise call.fail("boolean mask indexing has a data-dependent shape", "AOT211",
                                hint="use jnp.where(mask, x, 0) instead")
            spec.append(sh.ArrayIndex(it.shape))
        elif isinstance(it, bool) or not isinstance(it, (int, slice, type(None), type(...))):
            raise call.fail(f"unsupported index {it!r}", "AOT211")
        else:
            spec.append(it)
    shape = shape_rule(call, sh.index, x.shape, tuple(spec))
    out = call.out(shape, x.dtype, x.weak)
    inner = Code.join(", ", [_index_code(i) for i in items])
    if isinstance(index, tuple) and len(items) == 1:
        inner = Code.of(inner, ",")
    call.emit_call([out], stem=None, code=Code.of(x, "[", inner, "]"))
    return out


REGISTRY.add(Entry("getitem", ("operator",), "function", Signature.parse("operand, index"),
                   _getitem, "ops/call.j2", doc="x[index] (basic and integer-array indexing)"))

# ------------------------------------------------------------- methods on arrays


def _method(name: str, sig: str, rule: Callable[[FnCall], Any], doc: str) -> None:
    REGISTRY.add(Entry(name, ("array",), "method", Signature.parse(sig), rule, "ops/call.j2",
                       doc=doc))


def _reshape_method(call: FnCall) -> Tensor:
    x = call.tensor("a")
    shape = call.args["shape"]
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = tuple(shape[0])
    shape = shape_rule(call, sh.reshape, x.shape, tuple(shape))
    return emit_same(call, shape, x.dtype, x.weak)


def _transpose_method(call: FnCall) -> Tensor:
    x = call.tensor("a")
    axes = call.args["axes"]
    if len(axes) == 1 and isinstance(axes[0], (tuple, list)):
        axes = tuple(axes[0])
    shape = shape_rule(call, sh.transpose, x.shape, tuple(axes) or None)
    return emit_same(call, shape, x.dtype, x.weak)


def _astype_method(call: FnCall) -> Tensor:
    x = call.tensor("a")
    return emit_same(call, x.shape, dt.canonicalize(call.dtype("dtype", allow_none=False)))


_method("reshape", "a, *shape, order='C'", _reshape_method, "x.reshape(...)")
_method("transpose", "a, *axes", _transpose_method, "x.transpose(...)")
_method("astype", "a, dtype", _astype_method, "x.astype(dtype)")
_method("squeeze", "a, axis=None", simple(sh.squeeze, "axis"), "x.squeeze()")
_method("swapaxes", "a, axis1, axis2", simple(sh.swapaxes, "axis1", "axis2"), "x.swapaxes()")
_method("flatten", "a, order='C'", simple(lambda s: (sh.size(s),)), "x.flatten()")
_method("ravel", "a, order='C'", simple(lambda s: (sh.size(s),)), "x.ravel()")
for _n, _kind in [("sum", "sum"), ("prod", "sum"), ("mean", "mean"), ("var", "mean"),
                  ("std", "mean"), ("max", "same"), ("min", "same"), ("all", "bool"),
                  ("any", "bool"), ("argmax", "index"), ("argmin", "index")]:
    _sig = "a, axis=None, dtype=None, out=None, keepdims=False"
    if _kind in ("same", "bool", "index"):
        _sig = "a, axis=None, out=None, keepdims=False"
    if _n in ("var", "std"):
        _sig = "a, axis=None, dtype=None, out=None, ddof=0, keepdims=False"
    _method(_n, _sig, reduction(_kind), f"x.{_n}()")


def _clip_method(call: FnCall) -> Tensor:
    x = call.tensor("a")
    return emit_same(call, x.shape, x.dtype, x.weak)


_method("clip", "a, min=None, max=None", _clip_method, "x.clip(min, max)")
