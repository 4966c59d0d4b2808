"""numpy host arrays in the interpreter: calls, operators, indexing, stores, conversions.

The rules live in `ops/host.py`; this mixin routes the interpreter's expressions
to them when a numpy array (a `HostArray`) is involved and no array of the
computation is, and converts host arrays with `jnp.asarray` where they cross into
a layer, another module or a module's result (JAX would convert them there too;
converting explicitly keeps numpy semantics from leaking into code typed as jnp).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from .. import ir
from ..diagnostics import Span
from ..ops import CallError, Entry, host
from ..ops.host import HostArray, HostCall
from ..program import Code, Tensor
from ..sizes import has_code, plain
from ..values import (
    POISON,
    BoundMethod,
    DType,
    Poison,
    RecordTuple,
    describe_value,
    is_static,
)
from .base import Abort, Frame, ImportTimeSignal
from .helpers import holds

if TYPE_CHECKING:
    from .core import Resolver


def involves_host(*values: Any) -> bool:
    """A numpy array is among `values` and no array of the computation is."""
    found = False
    for v in values:
        if isinstance(v, HostArray):
            found = True
        elif isinstance(v, Tensor):
            return False
    return found


class HostMixin:
    """numpy on the host (see `ops/host.py`)."""

    def _host_call(self: Resolver, entry: Entry, written: str, args: list, kwargs: dict, span: Span,
                   frame: Frame) -> Any:
        """`np.zeros(...)`, `np.sin(x)`: a numpy function of the table."""
        # numpy runs at build time: sizes are the ints they are (no code to read them);
        # what numpy makes of them keeps their code (`HostCall.sized`)
        sized = any(has_code(a) for a in args) or any(has_code(v) for v in kwargs.values())
        given = (args, kwargs)
        args, kwargs = [plain(a) for a in args], {k: plain(v) for k, v in kwargs.items()}
        try:
            bound = entry.signature.bind(written, args, kwargs)
            call = HostCall(entry, written, bound, list(args), dict(kwargs), span, frame.fn)
            if sized:
                call.sized = entry.signature.bind(written, list(given[0]), dict(given[1]))
            return entry.rule(call)
        except CallError as e:
            if e.code == "AOT324" and frame.fn is None and self.import_time:
                raise ImportTimeSignal() from None  # a top-level table: read where used
            hint = e.hint
            if e.code == "AOT324" and frame.fn is None:
                hint = self._top_level_array_hint() or hint
            raise self.error(e.code, e.message, e.span or span, hint=hint,
                             notes=e.notes) from None

    def _numpy_random(self: Resolver, name: str, args: list, kwargs: dict, span: Span,
                      frame: Frame) -> Any:
        """numpy's global random functions: `np.random.seed(s)` seeds a state of the
        function being built (as it seeds numpy's), each draw advances it at build time
        and the numbers drawn are a table of the generated code (`host.random_draw`)."""
        fn = frame.fn
        if fn is None:
            raise self.error("AOT324", f"np.random.{name} can only be called inside a "
                             "module's apply", span)
        args, kwargs = [plain(a) for a in args], {k: plain(v) for k, v in kwargs.items()}
        if name == "seed":
            seed = args[0] if len(args) == 1 and not kwargs else kwargs.get("seed")
            if len(args) + len(kwargs) != 1 or not isinstance(seed, int) or isinstance(
                    seed, bool) or not 0 <= seed < 2 ** 32:
                raise self.error("AOT349", "np.random.seed takes one static int seed in "
                                 f"[0, 2**32), got {describe_value(seed)}", span,
                                 hint=None if seed is not None else
                                 "np.random.seed() without a seed draws differently every run")
            fn.np_random = np.random.RandomState(seed)
            return None
        if fn.np_random is None:
            raise self.error("AOT349", f"np.random.{name} draws from numpy's global random "
                             "state, which this module has not seeded: its numbers would "
                             "differ on every run", span,
                             hint="call np.random.seed(s) first, in the same module")
        try:
            return host.random_draw(fn, fn.np_random, name, args, kwargs, span)
        except CallError as e:
            raise self.error(e.code, e.message, span, hint=e.hint, notes=e.notes) from None

    def _host_operator(self: Resolver, symbol: str, operands: list[Any], span: Span, frame: Frame) -> Any:
        try:
            return host.operator(frame.fn, symbol, [plain(o) for o in operands], span)
        except CallError as e:
            raise self.error(e.code, e.message, span, hint=e.hint, notes=e.notes) from None

    def _host_getitem(self: Resolver, value: HostArray, index: Any, span: Span, frame: Frame) -> Any:
        try:
            return host.getitem(frame.fn, value, index, span)
        except CallError as e:
            raise self.error(e.code, e.message, span, hint=e.hint, notes=e.notes) from None

    def _host_store(self: Resolver, target: HostArray, index: Any, value: Any, span: Span, frame: Frame,
                    augmented: str | None = None) -> None:
        if isinstance(value, Poison):
            raise Abort()
        try:
            host.store(frame.fn, target, index, value, span, augmented)
        except CallError as e:
            raise self.error(e.code, e.message, span, hint=e.hint, notes=e.notes) from None

    def _host_augassign(self: Resolver, stmt: ir.AugAssign, frame: Frame) -> bool:
        """`pe += v` / `pe[i] += v` on a numpy array: in place, as numpy does it.

        Returns False when the target is not a numpy array (the caller goes on).
        """
        target = stmt.target
        if isinstance(target, ir.Subscript):
            container = self.eval(target.value, frame)
            if not isinstance(container, HostArray):
                return False
            index = self.eval(target.index, frame)
            value = self.eval(stmt.value, frame)
            self._host_store(container, index, value, stmt.span, frame, stmt.op)
            return True
        if isinstance(target, ir.Name):
            found, current = frame.env.lookup(target.id)
            if not (found and isinstance(current, HostArray)) or current.scalar:
                return False  # numpy scalars are immutable: `s += 1` rebinds `s`
            value = self.eval(stmt.value, frame)
            if isinstance(value, Tensor) and not isinstance(value, HostArray):
                return False  # `table += x` with x traced: a new jnp array, bound to `table`
            self._host_store(current, host.WHOLE, value, stmt.span, frame, stmt.op)
            return True
        return False

    def _host_attribute(self: Resolver, value: HostArray, attr: str, span: Span, frame: Frame) -> Any:
        if attr in ("shape", "ndim", "size"):
            return {"shape": value.shape, "ndim": value.ndim,
                    "size": _size(value.shape)}[attr]
        if attr == "dtype":
            return DType(value.np_dtype, host=True)
        if attr == "T":
            return self._host_method(value, "T", [], {}, span, frame)
        if attr in host.METHODS:
            return BoundMethod(value, attr, span)
        raise self.error("AOT346", f"numpy arrays have no supported attribute '{attr}'", span,
                         hint=f"supported: shape, ndim, size, dtype, T and the methods "
                              f"{', '.join(sorted(host.METHODS))}")

    def _host_method(self: Resolver, value: HostArray, name: str, args: list, kwargs: dict, span: Span,
                     frame: Frame) -> Any:
        try:
            return host.method(frame.fn, value, name, args, kwargs, span)
        except CallError as e:
            raise self.error(e.code, e.message, span, hint=e.hint, notes=e.notes) from None

    def _host_scalar_type(self: Resolver, dtype: DType, args: list, kwargs: dict, span: Span,
                          frame: Frame) -> Any:
        """`np.float32(0.5)`, `x.dtype.type(0)`: numpy's scalar types.

        On a static number it is that numpy scalar, computed at build time (an int or bool
        becomes a Python int or bool); on a numpy array, numpy's conversion.
        """
        if len(args) != 1 or kwargs:  # np.float32() and np.float32(x, ...) are not scalars
            raise self.error("AOT301", f"np.{dtype.name}(...) takes one value", span)
        value = args[0]
        if isinstance(value, Poison):
            raise Abort()
        if dtype.name not in host.HOST_DTYPES:
            return NotImplemented  # bfloat16: numpy has none of its own; jnp's conversion
        try:
            name = host.dtype_name(dtype, f"np.{dtype.name}")
            if isinstance(value, HostArray):
                call = HostCall(None, f"np.{dtype.name}", {}, [value], {}, span,  # type: ignore
                                frame.fn)
                return host.new_array(call, value.shape, name, Code.of(
                    host.dtype_code(name), "(", value, ")"), "table", scalar=value.scalar)
            if isinstance(value, (bool, int, float, complex)) or host.is_numpy_scalar(value):
                import numpy as np

                return host.evaluate(np.dtype(name).type, f"np.{dtype.name}", value)
        except CallError as e:
            raise self.error(e.code, e.message, span, hint=e.hint, notes=e.notes) from None
        return NotImplemented  # a traced array or anything else: the jnp conversion decides

    def _to_device(self: Resolver, value: Any, frame: Frame, span: Span) -> Any:
        """`value` with each numpy array converted by `jnp.asarray` (emitted)."""
        if isinstance(value, HostArray):
            if frame.fn is None:
                return value
            out = Tensor(value.shape, value.dtype)
            frame.fn.emit("ops/call.j2", {"call": Code.of("jnp.asarray(", value, ")")}, (out,),
                          span, frame.fn.hints.get(id(value), "table"))
            return out
        if isinstance(value, RecordTuple):
            return RecordTuple.make(value.cls, [self._to_device(v, frame, span) for v in value])
        if isinstance(value, tuple):
            return tuple(self._to_device(v, frame, span) for v in value)
        if isinstance(value, list):
            return [self._to_device(v, frame, span) for v in value]
        if isinstance(value, dict) and not is_static(value):
            return {k: self._to_device(v, frame, span) for k, v in value.items()}
        return value

    def _device_args(self: Resolver, args: list, kwargs: dict, frame: Frame,
                     span: Span) -> tuple[list, dict]:
        if not holds(args, HostArray) and not holds(kwargs, HostArray):
            return args, kwargs
        return ([self._to_device(a, frame, span) for a in args],
                {k: self._to_device(v, frame, span) for k, v in kwargs.items()})


def _size(shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


__all__ = ["HostMixin", "involves_host", "POISON", "describe_value"]
