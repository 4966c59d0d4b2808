"""Python operators, indexing and methods on arrays (`x + y`, `x[:, 0]`, `x.reshape(...)`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from .. import dtypes as dt
from .. import shapes as sh
from ..program import Code, Tensor
from ..quoting import identifier
from ..sizes import has_code
from ..values import describe_value
from .arrays import clip, emit_same, reduction, shape_rule, simple
from .calls import FnCall, aval_of, value_code
from .elementwise import KindSpec
from .registry import REGISTRY, Entry, Signature
from .stochastic import RngKey, is_raw_key

# ------------------------------------------------------------- indexing


def _index_code(item: Any) -> Code:
    if isinstance(item, slice):  # bounds read from arrays keep their code (`:x.shape[1] - 1`)
        bounds = (item.start, item.stop) if item.step is None else \
            (item.start, item.stop, item.step)
        return Code.join(":", [Code(("",)) if v is None else value_code(v) if has_code(v)
                               else Code((str(v),)) for v in bounds])
    if item is None:
        return Code(("None",))
    if item is Ellipsis:
        return Code(("...",))
    return value_code(item)


def _list_index(call: FnCall, x: Tensor, items: tuple, k: int, it: list) -> sh.ArrayIndex:
    """A static list inside an index tuple (`x[:, :, [0, 2]]`): an integer array index of
    its shape, or a 1-d static boolean mask (its True positions); jax reads both so. Its
    numbers must lie in the axis they index."""
    leaves = np.asarray(it, dtype=object)  # (a ragged list: an array of lists, refused)
    mask = leaves.ndim == 1 and leaves.size > 0 and all(type(v) is bool for v in leaves)
    if not mask and not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool)
                            for v in leaves.ravel()):
        raise call.fail(f"an index list must hold static ints (or be a 1-d list of bools), "
                        f"got {describe_value(it)}", "AOT211")
    before = items[:k]
    if any(i is Ellipsis for i in before):
        axis = x.ndim - sum(1 for i in items[k:] if i is not None and i is not Ellipsis)
    else:
        axis = sum(1 for i in before if i is not None)
    if not 0 <= axis < x.ndim:
        raise call.fail(f"too many indices for {x.describe()}", "AOT211")
    size = x.shape[axis]
    if mask:
        if leaves.size != size:
            raise call.fail(f"a boolean index of {leaves.size} items for an axis of {size}",
                            "AOT211")
        return sh.ArrayIndex((sum(it),))
    bad = [int(v) for v in leaves.ravel() if not -size <= int(v) < size]
    if bad:
        raise call.fail(f"index {bad[0]} is out of bounds for axis {axis} of size {size}",
                        "AOT211")
    return sh.ArrayIndex(leaves.shape)


def index_shape(call: FnCall, x: Tensor, index: Any, *, in_bounds: bool = True
                ) -> tuple[tuple[int, ...], Code]:
    """Shape of `x[index]` and the code of the index (what goes between the brackets).

    `in_bounds=False` accepts static integers outside the axis (`x.at[i]` methods
    clip, drop or fill them, as their `mode=` says).
    """
    items = index if isinstance(index, tuple) else (index,)
    spec: list[Any] = []
    for k, it in enumerate(items):
        if isinstance(it, list):
            if not isinstance(index, tuple):
                raise call.fail("a list as the whole index is refused by jax (it would be "
                                "read as a tuple)", "AOT211",
                                hint="index with a tuple (x[[0, 2],] or x[:, [0, 2]]) or "
                                     "with jnp.array([...])")
            spec.append(_list_index(call, x, items, k, it))
        elif isinstance(it, Tensor):
            if not (dt.is_integer(it.dtype) or dt.is_bool(it.dtype)) or isinstance(it, RngKey):
                raise call.fail(f"array indices must be integers, got {it.describe()}", "AOT211")
            if dt.is_bool(it.dtype):
                raise call.fail("boolean mask indexing has a data-dependent shape", "AOT211",
                                hint="use jnp.where(mask, x, 0) instead")
            spec.append(sh.ArrayIndex(it.shape))
        elif isinstance(it, bool) or not isinstance(it, (int, slice, type(None), type(...))):
            raise call.fail(f"unsupported index {describe_value(it)}", "AOT211")
        elif isinstance(it, int) and not in_bounds:
            spec.append(sh.ArrayIndex(()))  # the shape of a 0-d index, whatever its value
        else:
            spec.append(it)
    shape = shape_rule(call, sh.index, x.shape, tuple(spec))
    inner = Code.join(", ", [_index_code(i) for i in items])
    if isinstance(index, tuple) and len(items) == 1:
        inner = Code.of(inner, ",")
    return shape, inner


def _getitem(call: FnCall) -> Tensor:
    x = call.tensor("operand")
    index = call.args["index"]
    if isinstance(x, RngKey):
        return _key_getitem(call, x, index)
    shape, inner = index_shape(call, x, index)
    out = call.out(shape, x.dtype, x.weak)
    call.emit_call([out], stem=None, code=Code.of(x, "[", inner, "]"))
    return out


def _key_getitem(call: FnCall, keys: RngKey, index: Any) -> Tensor:
    """An element (or a slice) of an array of random keys is keys again; raw key data
    (uint32[..., 2]) indexed along its last axis too is the uint32 array it is
    (`jax.random.PRNGKey(0)[1]`, a uint32 scalar, as jax computes it)."""
    shape, inner = index_shape(call, keys, index)
    items = index if isinstance(index, tuple) else (index,)
    if is_raw_key(keys) and (any(it is Ellipsis or it is None for it in items)
                             or len(items) >= keys.ndim):
        data = call.out(shape, keys.dtype, False)
        call.emit_call([data], stem=None, code=Code.of(keys, "[", inner, "]"))
        return data
    out = RngKey(shape, keys.dtype)
    call.emit_call([out], stem="key", code=Code.of(keys, "[", inner, "]"))
    return out


REGISTRY.add(Entry("getitem", ("operator",), "function", Signature.parse("operand, index"),
                   _getitem, "ops/call.j2", doc="x[index] (basic and integer-array indexing)",
                   extra={"takes_keys": True}))

# ------------------------------------------------------------- x.at[index]


@dataclass(frozen=True, eq=False)
class AtIndex:
    """`x.at` and `x.at[index]`, before one of its methods (`set`, `add`, ...) is called."""

    operand: Tensor
    #: The index, once subscripted; `NO_INDEX` for plain `x.at`.
    index: Any

    @property
    def description(self) -> str:
        return "x.at" if self.index is NO_INDEX else "x.at[...]"


NO_INDEX = object()

#: method -> what it does to the operand's dtype (divide makes integers float, as jax does).
AT_METHODS = {"set": "= = = = =", "add": "= = = = =", "subtract": "= = = = =",
              "multiply": "= = = = =", "mul": "= = = = =", "divide": "F F F = =",
              "power": "Is =s =s = =", "min": "= = = = =", "max": "= = = = ="}
#: Methods that compute in the promoted dtype of operand and values, which must not be bool.
_ARITHMETIC = ("add", "subtract", "multiply", "mul", "divide", "power")
_SCATTER_MODES = (None, "promise_in_bounds", "clip", "drop", "fill")


def _at_update(spec_text: str) -> Callable[[FnCall], Tensor]:
    spec = KindSpec.parse(spec_text)

    def rule(call: FnCall) -> Tensor:
        x = call.tensor("operand")
        shape, inner = index_shape(call, x, call.args["index"], in_bounds=False)
        values = call.aval("values")
        if call.entry.name in _ARITHMETIC and dt.is_bool(
                dt.promote((x.dtype, x.weak), (values[1], values[2]))[0]):
            raise call.fail(f"{call.written} does not accept a bool array with bool values",
                            hint="use .set(...), or cast first, e.g. x.astype(jnp.int32)")
        if not _broadcasts_to(values[0], shape):
            raise call.fail(f"{call.written}: values of shape {values[0]} do not broadcast to "
                            f"the indexed shape {shape} of {x.describe()}", "AOT210")
        _check_mode(call)
        dtype, weak = spec.apply(x.dtype, x.weak)
        out = call.out(x.shape, dtype, weak)
        call.emit_call([out], stem=None, code=_at_code(call, x, inner))
        return out

    return rule


def _at_get(call: FnCall) -> Tensor:
    x = call.tensor("operand")
    shape, inner = index_shape(call, x, call.args["index"], in_bounds=False)
    _check_mode(call)
    fill = call.args["fill_value"]
    if fill is not None and aval_of(fill) is None:
        raise call.fail(f"{call.written}: fill_value must be a number, got "
                        f"{describe_value(fill)}", "AOT203")
    out = call.out(shape, x.dtype, x.weak)
    call.emit_call([out], stem=None, code=_at_code(call, x, inner))
    return out


def _broadcasts_to(shape: tuple[int, ...], target: tuple[int, ...]) -> bool:
    try:
        return sh.broadcast_shapes(shape, target) == target
    except sh.ShapeError:
        return False


def _check_mode(call: FnCall) -> None:
    mode = call.args["mode"]
    if mode not in _SCATTER_MODES:
        modes = ", ".join(repr(m) for m in _SCATTER_MODES[1:])
        raise call.fail(f"{call.written}: mode must be one of {modes}, got "
                        f"{describe_value(mode)}", "AOT203")
    for flag in ("indices_are_sorted", "unique_indices"):
        call.static(flag, bool)


def _at_code(call: FnCall, x: Tensor, inner: Code) -> Code:
    """`x.at[index].method(args as written)`."""
    parts = [value_code(a) for a in call.positional[2:]]
    parts += [Code.of(f"{identifier(k, 'keyword argument name')}=", value_code(v))
              for k, v in call.keywords.items()]
    return Code.of(x, ".at[", inner, f"].{call.entry.name}(", Code.join(", ", parts), ")")


_AT_FLAGS = "indices_are_sorted=False, unique_indices=False, mode=None"
for _name, _spec in AT_METHODS.items():
    REGISTRY.add(Entry(_name, ("at",), "method",
                       Signature.parse(f"operand, index, values, *, {_AT_FLAGS}"),
                       _at_update(_spec), "ops/call.j2", doc=f"x.at[index].{_name}(values)",
                       extra={"kind_spec": _spec}))
REGISTRY.add(Entry("get", ("at",), "method",
                   Signature.parse(f"operand, index, *, {_AT_FLAGS}, fill_value=None"),
                   _at_get, "ops/call.j2", doc="x.at[index].get() (with mode= and fill_value=)"))

# jax.ops.index_update(x, idx, y) and its kin, as 2020 code wrote `x.at[idx].set(y)`
# (jax replaced them with `.at` in 0.2.22): the same rule, emitted as the `.at` call
_INDEX_OPS = {"index_update": "set", "index_add": "add", "index_mul": "multiply",
              "index_min": "min", "index_max": "max"}


def _index_op(method: str) -> Callable[[FnCall], Tensor]:
    at_rule = _at_update(AT_METHODS[method])

    def rule(call: FnCall) -> Tensor:
        at = REGISTRY.lookup("at", method)
        assert at is not None
        flags = {k: v for k, v in call.keywords.items() if k != "y"}
        x, index, y = call.args["x"], call.args["idx"], call.args["y"]
        args = {"operand": x, "index": index, "values": y, "mode": None,
                "indices_are_sorted": call.args["indices_are_sorted"],
                "unique_indices": call.args["unique_indices"]}
        return at_rule(FnCall(at, call.written, args, [x, index, y], flags, call.span,
                              call.ctx))

    return rule


for _name, _method_name in _INDEX_OPS.items():
    REGISTRY.add(Entry(_name, ("jax.ops",), "function",
                       Signature.parse("x, idx, y, indices_are_sorted=False, "
                                       "unique_indices=False"),
                       _index_op(_method_name), "ops/call.j2",
                       doc=f"x.at[idx].{_method_name}(y), as jax 0.2 wrote it"))

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
    _sig = "a, axis=None, dtype=None, out=None, keepdims=False, initial=None, where=None"
    if _kind == "mean":
        _sig = "a, axis=None, dtype=None, out=None, keepdims=False, *, where=None"
    if _kind == "same":
        _sig = "a, axis=None, out=None, keepdims=False, initial=None, where=None"
    if _kind in ("bool", "index"):
        _sig = "a, axis=None, out=None, keepdims=False"
    if _n in ("var", "std"):
        _sig = "a, axis=None, dtype=None, out=None, ddof=0, keepdims=False"
    _method(_n, _sig, reduction(_kind), f"x.{_n}()")


_method("clip", "a, min=None, max=None, *, a_min=None, a_max=None", clip,
        "x.clip(min, max) (a_min= and a_max= are their old names)")
_method("repeat", "a, repeats, axis=None, *, total_repeat_length=None",
        simple(sh.repeat, "repeats", "axis"), "x.repeat(repeats, axis=None)")
