"""Function transformations of model code: `jax.vmap` over a function of the model file.

`jax.vmap(f, in_axes=0, out_axes=0)(*args)` (or `@jax.vmap` on a `def`) resolves `f`
once for one row of its mapped arguments and is emitted as a real `jax.vmap` over
a nested function, as a person would write it.  The function may use any array
operation; layers, randomness and state belong to modules and are rejected inside.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .. import ir
from ..diagnostics import Span
from ..ops.calls import value_code
from ..program import Code, Function, Op, Tensor
from ..values import Closure, describe_value, is_static
from .base import Frame, _Abort
from .helpers import _rebuild, _tensors, _unpack_code


@dataclass(frozen=True, eq=False)
class Vmapped:
    """`jax.vmap(f, in_axes, out_axes)` before it is called."""

    fn: Any
    in_axes: Any
    out_axes: Any
    span: Span


class TransformsMixin:
    """`jax.vmap`."""

    def _vmap(self, args: list, kwargs: dict, span: Span) -> Vmapped:
        from ..ops.registry import CallError, Signature

        try:
            b = Signature.parse("fun, in_axes=0, out_axes=0").bind("jax.vmap", args, kwargs)
        except CallError as e:
            raise self.error(e.code, e.message, span, hint=e.hint) from None
        for name in ("in_axes", "out_axes"):
            if not is_static(b[name]):
                raise self.error("AOT203", f"jax.vmap: {name} must be static, got "
                                 f"{describe_value(b[name])}", span)
        return Vmapped(b["fun"], b["in_axes"], b["out_axes"], span)

    def _call_vmapped(self, v: Vmapped, args: list, kwargs: dict, expr: ir.Call,
                      frame: Frame) -> Any:
        span = expr.span
        fn, _ = self._need_module_frame(frame, span, "jax.vmap")
        if kwargs:
            raise self.error("AOT365", "a vmapped function takes positional arguments only",
                             span)
        axes = v.in_axes if isinstance(v.in_axes, (tuple, list)) else (v.in_axes,) * len(args)
        if len(axes) != len(args):
            raise self.error("AOT365", f"jax.vmap: in_axes has {len(axes)} entries for "
                             f"{len(args)} arguments", span)
        rows, size = [], None
        for a, axis in zip(args, axes):
            if not isinstance(a, Tensor):
                raise self.error("AOT365", f"jax.vmap: arguments must be arrays, got "
                                 f"{describe_value(a)}", span,
                                 hint="bind static values first: jax.vmap(lambda x: f(x, 2.0))")
            if axis is None:
                rows.append(a)
                continue
            if not isinstance(a, Tensor) or not isinstance(axis, int) or isinstance(axis, bool):
                raise self.error("AOT365", f"jax.vmap maps arrays over an int axis, got "
                                 f"{describe_value(a)} with in_axes entry {axis!r}", span)
            if not -a.ndim <= axis < a.ndim:
                raise self.error("AOT365", f"jax.vmap: axis {axis} is out of range for "
                                 f"{a.describe()}", span)
            axis %= a.ndim
            if size is not None and a.shape[axis] != size:
                raise self.error("AOT365", f"jax.vmap: mapped axes have different sizes "
                                 f"({size} and {a.shape[axis]})", span)
            size = a.shape[axis]
            rows.append(type(a)(a.shape[:axis] + a.shape[axis + 1:], a.dtype, a.weak))
        if size is None:
            raise self.error("AOT365", "jax.vmap needs at least one mapped array argument",
                             span)
        result, nested = self._vmap_body(v, rows, args, span, frame)
        out_axis = v.out_axes
        if not isinstance(out_axis, int) or isinstance(out_axis, bool):
            raise self.error("AOT365", "jax.vmap: out_axes must be one int here", span)
        leaves = _tensors(result)
        outs = []
        for t in leaves:
            if not -(t.ndim + 1) <= out_axis <= t.ndim:
                raise self.error("AOT365", f"jax.vmap: out_axes={out_axis} is out of range for "
                                 f"an output {t.describe()} of one row", span)
            at = out_axis % (t.ndim + 1)
            outs.append(type(t)(t.shape[:at] + (size,) + t.shape[at:], t.dtype, t.weak))
        stacked = _rebuild(result, outs)
        call = Code.of(f"jax.vmap({nested.name}, in_axes={_axes_code(v.in_axes)}, "
                       f"out_axes={out_axis!r})(",
                       Code.join(", ", [value_code(a) for a in args]), ")")
        fn.ops.append(Op("ops/module_call.j2", (
            ("target", _unpack_code(stacked, stacked, [])), ("call", call)), tuple(outs), (),
            span, "vmapped", nested))
        return stacked

    def _vmap_body(self, v: Vmapped, rows: list, args: list, span: Span,
                   frame: Frame) -> tuple[Any, Function]:
        fn = frame.fn
        assert fn is not None
        outer_ops, outer_params = fn.ops, dict(fn.params)
        outer_rng, outer_state = fn.takes_rng, dict(fn.state_values)
        fn.ops = []
        errors = self.errors
        try:
            result = self._call(v.fn, list(rows), {}, ir.Call(ir.Name("f", span), (), (), span),
                                frame)
            body = fn.ops
        finally:
            fn.ops = outer_ops
        if self.errors != errors:
            raise _Abort()
        if fn.params != outer_params or fn.takes_rng != outer_rng or \
                fn.state_values != outer_state:
            fn.takes_rng, fn.state_values = outer_rng, outer_state
            raise self.error("AOT365", "a vmapped function may not use layers, randomness "
                             "or state (they belong to modules)", span,
                             hint="vmap a plain function of arrays; apply layers to the batch")
        leaves = _tensors(result)
        if not leaves or any(not isinstance(x, Tensor) for x in _leaves_of(result)):
            raise self.error("AOT365", f"a vmapped function must return arrays, got "
                             f"{describe_value(result)}", span)
        name = getattr(v.fn, "name", "fn")
        inputs = []
        names = [p.name for p in v.fn.params.params if p.kind == "positional"] \
            if isinstance(v.fn, Closure) else []
        for i, row in enumerate(rows):
            inputs.append((names[i] if i < len(names) else f"x{i}", row))
        fn_name = self._function_name(name if str(name).isidentifier() else "mapped")
        nested = Function(
            name=fn_name, doc=f"`{name}` for one row, vmapped", takes_params=False,
            state_collections=(), takes_rng=False, inputs=tuple(inputs), body=tuple(body),
            result=value_code(result), result_tensors=tuple(leaves),
            span=v.fn.span if isinstance(v.fn, Closure) else span, hints=dict(fn.hints))
        return result, nested


def _leaves_of(value: Any) -> list[Any]:
    if isinstance(value, (tuple, list)):
        return [x for v in value for x in _leaves_of(v)]
    return [value]


def _axes_code(axes: Any) -> str:
    if isinstance(axes, (tuple, list)):
        return "(" + ", ".join(repr(a) for a in axes) + ("," if len(axes) == 1 else "") + ")"
    return repr(axes)


__all__ = ["TransformsMixin", "Vmapped"]
