"""Function transformations of model code: `jax.vmap` and `jax.checkpoint` over a
function of the model file.

`jax.vmap(f, in_axes=0, out_axes=0)(*args)` (or `@jax.vmap` on a `def`) resolves `f`
once for one row of its mapped arguments and is emitted as a real `jax.vmap` over
a nested function, as a person would write it.  `jax.checkpoint(f)(*args)` (and its
older name `jax.remat`) resolves `f` for the arguments and is emitted as
`jax.checkpoint(f)(...)`: a training target's gradient recomputes its values instead
of keeping them.  The function may use any array operation; layers, randomness and
state belong to modules and are rejected inside.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .. import ir, quoting
from ..diagnostics import Note, Span
from ..ops.calls import value_code
from ..program import Code, Function, FunctionRef, Op, OpInfo, Tensor, TreeVar, Var, call_code
from ..values import Closure, Env, contains_poison, describe_value, is_static, static_key
from .base import Abort, Frame
from .helpers import rebuild, tensors, unpack_code

if TYPE_CHECKING:
    from .core import Resolver


@dataclass(frozen=True, eq=False)
class Vmapped:
    """`jax.vmap(f, in_axes, out_axes)` before it is called."""

    fn: Any
    in_axes: Any
    out_axes: Any
    span: Span


@dataclass(frozen=True, eq=False)
class Checkpointed:
    """`jax.checkpoint(f, prevent_cse=...)` (`jax.remat`) before it is called."""

    fn: Any
    prevent_cse: bool
    written: str
    span: Span


class TransformsMixin:
    """`jax.vmap`, `jax.checkpoint`."""

    def _checkpoint(self: Resolver, written: str, args: list, kwargs: dict,
                    span: Span) -> Checkpointed:

        b = self._bind_signature("fun, *, prevent_cse=True, policy=None, static_argnums=()", written, args, kwargs, span)
        if b["policy"] is not None or b["static_argnums"] != ():
            raise self.error("AOT365", f"{written}: policy= and static_argnums= are not "
                             "supported", span, hint="checkpoint a function of arrays; bind "
                             "static arguments first: jax.checkpoint(lambda x: f(x, 2))")
        if not isinstance(b["prevent_cse"], bool):
            raise self.error("AOT203", f"{written}: prevent_cse must be True or False, got "
                             f"{describe_value(b['prevent_cse'])}", span)
        return Checkpointed(b["fun"], b["prevent_cse"], written, span)

    def _call_checkpointed(self: Resolver, c: Checkpointed, args: list, kwargs: dict,
                           expr: ir.Call, frame: Frame) -> Any:
        span = expr.span
        fn = self._need_function_frame(frame, span, c.written)
        if kwargs or not args or not all(isinstance(a, Tensor) for a in args):
            raise self.error("AOT365", f"a function made by {c.written} takes arrays as "
                             "positional arguments", span,
                             hint="bind static values first: jax.checkpoint(lambda x: f(x, 2))")
        result, nested = self._nested_body(c.fn, list(args), span, frame, c.written,
                                           "recomputed for the gradient (jax.checkpoint)")
        outs = [type(t)(t.shape, t.dtype, t.weak) for t in tensors(result)]
        fresh = rebuild(result, outs)
        options = "" if c.prevent_cse else ", prevent_cse=False"
        call = Code.of("jax.checkpoint(", FunctionRef(nested), f"{options})(",
                       Code.join(", ", [value_code(a) for a in args]), ")")
        fn.ops.append(Op("ops/module_call.j2", (
            ("target", unpack_code(fresh, fresh, [])), ("call", call)), tuple(outs), (),
            span, "checkpointed", (nested,), OpInfo("jax.checkpoint")))
        return fresh

    def _jvp(self: Resolver, args: list, kwargs: dict, expr: ir.Call, frame: Frame) -> Any:
        """`jax.jvp(fun, primals, tangents)`: `fun` resolved for the primals and emitted as
        a nested function, called as written; the result is `(fun's output, its tangent)`,
        arrays of the output's types."""

        span = expr.span
        b = self._bind_signature("fun, primals, tangents, has_aux=False", "jax.jvp", args, kwargs, span)
        fn = self._need_function_frame(frame, span, "jax.jvp")
        primals, tangents = b["primals"], b["tangents"]
        if b["has_aux"] is not False:
            raise self.error("AOT365", "jax.jvp: has_aux= is not supported", span)
        for name, value in (("primals", primals), ("tangents", tangents)):
            if not isinstance(value, (tuple, list)) or not all(
                    isinstance(a, Tensor) for a in value):
                raise self.error("AOT365", f"jax.jvp: {name} must be a tuple or list of "
                                 f"arrays, got {describe_value(value)}", span,
                                 hint="one entry per positional argument of the function")
        if len(primals) != len(tangents):
            raise self.error("AOT365", f"jax.jvp: {len(primals)} primals and "
                             f"{len(tangents)} tangents", span)
        for p, t in zip(primals, tangents):
            if (p.shape, p.dtype) != (t.shape, t.dtype):
                raise self.error("AOT365", f"jax.jvp: a tangent must have its primal's shape "
                                 f"and dtype: {t.describe()} for {p.describe()}", span)
            if not p.dtype.startswith(("float", "bfloat", "complex")):
                raise self.error("AOT365", f"jax.jvp: primals must be floating, got "
                                 f"{p.describe()}", span)
        result, nested = self._nested_body(b["fun"], list(primals), span, frame, "jax.jvp",
                                           "differentiated forward (jax.jvp)")
        leaves = tensors(result)
        outs = [type(t)(t.shape, t.dtype, t.weak) for t in leaves]
        touts = [type(t)(t.shape, t.dtype, t.weak) for t in leaves]
        pair = (rebuild(result, outs), rebuild(result, touts))
        call = Code.of("jax.jvp(", FunctionRef(nested), ", ",
                       value_code(tuple(primals)), ", ", value_code(tuple(tangents)), ")")
        fn.ops.append(Op("ops/module_call.j2", (
            ("target", unpack_code(pair, pair, [])), ("call", call)), tuple(outs + touts), (),
            span, "jvp", (nested,), OpInfo("jax.jvp")))
        return pair

    def _vmap(self: Resolver, args: list, kwargs: dict, span: Span) -> Vmapped:

        b = self._bind_signature("fun, in_axes=0, out_axes=0", "jax.vmap", args, kwargs, span)
        for name in ("in_axes", "out_axes"):
            if not is_static(b[name]):
                raise self.error("AOT203", f"jax.vmap: {name} must be static, got "
                                 f"{describe_value(b[name])}", span)
        return Vmapped(b["fun"], b["in_axes"], b["out_axes"], span)

    def _call_vmapped(self: Resolver, v: Vmapped, args: list, kwargs: dict, expr: ir.Call,
                      frame: Frame) -> Any:
        span = expr.span
        fn = self._need_function_frame(frame, span, "jax.vmap")
        if kwargs:
            raise self.error("AOT365", "a vmapped function takes positional arguments only",
                             span)
        axes = v.in_axes if isinstance(v.in_axes, (tuple, list)) else (v.in_axes,) * len(args)
        if len(axes) != len(args):
            raise self.error("AOT365", f"jax.vmap: in_axes has {len(axes)} entries for "
                             f"{len(args)} arguments", span)
        rows, size = [], None
        for a, axis in zip(args, axes):
            if axis is None and not isinstance(a, Tensor) and is_static(a):
                rows.append(a)  # as in JAX, an unmapped Python value reaches `fun` as it is
                continue
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
        result, nested = self._nested_body(v.fn, rows, span, frame, "jax.vmap",
                                           "for one row, vmapped")
        out_axis = v.out_axes
        if not isinstance(out_axis, int) or isinstance(out_axis, bool):
            raise self.error("AOT365", "jax.vmap: out_axes must be one int here", span)
        leaves = tensors(result)
        outs = []
        for t in leaves:
            if not -(t.ndim + 1) <= out_axis <= t.ndim:
                raise self.error("AOT365", f"jax.vmap: out_axes={out_axis} is out of range for "
                                 f"an output {t.describe()} of one row", span)
            at = out_axis % (t.ndim + 1)
            outs.append(type(t)(t.shape[:at] + (size,) + t.shape[at:], t.dtype, t.weak))
        stacked = rebuild(result, outs)
        in_axes = v.in_axes
        if any(not isinstance(a, Tensor) for a in args):  # the static ones are bound inside
            in_axes = tuple(ax for a, ax in zip(args, axes) if isinstance(a, Tensor))
            args = [a for a in args if isinstance(a, Tensor)]
        call = Code.of("jax.vmap(", FunctionRef(nested), f", in_axes={_axes_code(in_axes)}, "
                       f"out_axes={quoting.literal(out_axis)})(",
                       Code.join(", ", [value_code(a) for a in args]), ")")
        fn.ops.append(Op("ops/module_call.j2", (
            ("target", unpack_code(stacked, stacked, [])), ("call", call)), tuple(outs), (),
            span, "vmapped", (nested,), OpInfo("jax.vmap", trips=size)))
        return stacked

    def _nested_body(self: Resolver, func: Any, rows: list, span: Span, frame: Frame,
                     what: str, doc: str, default_name: str = "mapped"
                     ) -> tuple[Any, Function]:
        """`func` resolved for the arrays `rows`, as the nested function a transformation
        (`what`: "jax.vmap", "jax.checkpoint", "jax.lax.cond") is emitted over.  A row that
        is a tuple or list of fresh arrays (a loop's carry) is one parameter, unpacked on
        entry; other static rows are bound inside."""
        fn = frame.fn
        assert fn is not None
        outer_ops, outer_params = fn.ops, dict(fn.params)
        outer_rng, outer_state = fn.takes_rng, dict(fn.state_values)
        fn.ops = []
        errors = self.errors
        try:
            result = self._call(func, list(rows), {}, ir.Call(ir.Name("f", span), (), (), span),
                                frame)
            body = fn.ops
        finally:
            fn.ops = outer_ops
        if self.errors != errors:
            raise Abort()
        if fn.params != outer_params or fn.takes_rng != outer_rng or \
                fn.state_values != outer_state:
            fn.takes_rng, fn.state_values = outer_rng, outer_state
            raise self.error("AOT365", f"a function given to {what} may not use layers, "
                             "randomness or state (they belong to modules)", span,
                             hint=f"give {what} a plain function of arrays"
                             + ("; apply layers to the batch" if what == "jax.vmap" else ""))
        if contains_poison(result):  # a value that failed where it was made (reported there)
            raise Abort()
        leaves = tensors(result)
        if not leaves or any(not isinstance(x, Tensor) for x in _leaves_of(result)):
            raise self.error("AOT365", f"a function given to {what} must return arrays, got "
                             f"{describe_value(result)}", span)
        name = getattr(func, "name", None)
        if not (isinstance(name, str) and name.isidentifier()):
            name = None  # a lambda, a layer or a jnp function: named for its role
        inputs: list[tuple[str, Var]] = []
        prologue = []
        names = [p.name for p in func.params.params if p.kind == "positional"] \
            if isinstance(func, Closure) else []
        for i, row in enumerate(rows):
            param = names[i] if i < len(names) else f"x{i}"
            if isinstance(row, Tensor):  # (a static argument of jax.vmap is bound inside)
                inputs.append((param, row))
            elif isinstance(row, (tuple, list)) and tensors(row):
                var = TreeVar(param)
                inputs.append((param, var))
                prologue.append(Op("ops/module_call.j2", (
                    ("target", unpack_code(row, row, [])), ("call", Code((var,)))),
                    tuple(tensors(row)), (), func.span if isinstance(func, Closure) else span,
                    param))
        fn_name = self._function_name(name or default_name)
        nested = Function(
            name=fn_name, doc=f"`{name}` {doc}" if name else doc[:1].upper() + doc[1:] + (
                " (a lambda)" if isinstance(func, Closure) else ""), takes_params=False, state_collections=(), takes_rng=False, inputs=tuple(inputs),
            body=tuple(prologue + body),
            result=value_code(result), result_tensors=tuple(leaves),
            span=func.span if isinstance(func, Closure) else span, hints=dict(fn.hints))
        return result, nested


def _leaves_of(value: Any) -> list[Any]:
    if isinstance(value, (tuple, list)):
        return [x for v in value for x in _leaves_of(v)]
    return [value]


def _axes_code(axes: Any) -> str:
    return quoting.literal(tuple(axes) if isinstance(axes, (tuple, list)) else axes)


__all__ = ["Checkpointed", "CustomJvp", "CustomJvpMixin", "CustomVjp", "CustomVjpMixin",
           "PrimalCall", "TransformsMixin", "Vmapped"]


@dataclass(eq=False)
class CustomJvp:
    """`jax.custom_jvp(f)`, with the rule `defjvp` / `defjvps` registered on it."""

    fn: Closure
    span: Span
    #: `jvp(primals, tangents) -> (primal_out, tangent_out)` from `@f.defjvp`.
    jvp: Closure | None = None
    #: One rule per argument, `rule(tangent, ans, *primals)`, from `f.defjvps(...)`.
    jvps: tuple[Any, ...] | None = None
    #: Emitted (primal, rule) function names per argument types and static arguments.
    emitted: dict[tuple, PrimalCall] | None = None
    #: `nondiff_argnums`: positions of static arguments, which the rule takes first and
    #: which have no tangent; each set of their values is emitted on its own.
    nondiff: tuple[int, ...] = ()


class CustomJvpMixin:
    """`jax.custom_jvp` on functions of the model file."""

    def _custom_jvp(self: Resolver, args: list, kwargs: dict, span: Span) -> CustomJvp:
        if len(args) != 1 or set(kwargs) - {"nondiff_argnums"} or not isinstance(args[0],
                                                                              Closure):
            raise self.error("AOT366", "jax.custom_jvp takes one function of the model file "
                             "(and nondiff_argnums=)", span)
        return CustomJvp(args[0], span, emitted={},
                         nondiff=self._nondiff_argnums("custom_jvp", args[0], kwargs, span))

    def _nondiff_argnums(self: Resolver, kind: str, fn: Closure, kwargs: dict, span: Span
                         ) -> tuple[int, ...]:
        """A custom_jvp's or custom_vjp's `nondiff_argnums=`, checked, in order."""
        nondiff = kwargs.get("nondiff_argnums", ())
        nondiff = (nondiff,) if isinstance(nondiff, int) else nondiff
        positional = sum(p.kind == "positional" for p in fn.params.params)
        if not isinstance(nondiff, (tuple, list)) or any(
                isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < positional
                for i in nondiff) or len(set(nondiff)) != len(nondiff):
            raise self.error("AOT366", f"jax.{kind}: nondiff_argnums must be distinct "
                             f"positions of {fn.name}'s {positional} positional "
                             f"parameters, got {describe_value(nondiff)}", span)
        return tuple(sorted(nondiff))

    def _custom_statics(self: Resolver, kind: str, fn: Closure, nondiff: tuple[int, ...],
                        args: list, span: Span) -> dict[int, Any]:
        """The static arguments of a call of a custom_jvp or custom_vjp function, by
        position (its `nondiff_argnums`): build-time values, one emitted function each."""
        statics = {i: a for i, a in enumerate(args) if i in nondiff}
        for i, a in statics.items():
            if not is_static(a):
                raise self.error("AOT366", f"argument {i} of {kind} function {fn.name} "
                                 f"is in nondiff_argnums and must be static here, got "
                                 f"{describe_value(a)}", span,
                                 hint="pass arrays as differentiable arguments (their "
                                      "derivative may be zeros)")
        if len(args) <= max(nondiff, default=-1):
            raise self.error("AOT366", f"{kind} function {fn.name} is called with "
                             f"{len(args)} arguments; its nondiff_argnums are {nondiff}",
                             span)
        return statics

    def _custom_jvp_method(self: Resolver, cj: CustomJvp, name: str, args: list, kwargs: dict,
                           span: Span) -> Any:
        if name == "defjvp" and len(args) == 1 and not kwargs and isinstance(args[0], Closure):
            cj.jvp = args[0]
            return args[0]
        if name == "defjvps" and cj.nondiff:  # as jax refuses it
            raise self.error("AOT366", f"{cj.fn.name} has nondiff_argnums: its rule is given "
                             "with defjvp, not defjvps", span,
                             hint=f"@{cj.fn.name}.defjvp def rule(*nondiff_args, primals, "
                                  "tangents): ...")
        if name == "defjvps" and not kwargs and args:
            cj.jvps = tuple(args)
            return None
        raise self.error("AOT366", f"a custom_jvp function has defjvp(rule) and "
                         f"defjvps(*rules), not {name}", span)

    def _call_custom_jvp(self: Resolver, cj: CustomJvp, args: list, kwargs: dict, span: Span,
                         frame: Frame) -> Any:
        """Emit the primal and its rule as module-level functions, then call the primal."""
        statics = self._custom_statics("custom_jvp", cj.fn, cj.nondiff, args, span)
        arrays = [a for i, a in enumerate(args) if i not in statics]
        self._check_custom_call("custom_jvp", arrays, kwargs, span, frame)
        if cj.jvp is None and cj.jvps is None:
            raise self.error("AOT366", f"custom_jvp function {cj.fn.name} has no rule: add "
                             f"@{cj.fn.name}.defjvp or {cj.fn.name}.defjvps(...)", span)
        types = (tuple((a.shape, a.dtype) for a in arrays),
                 tuple((i, static_key(v)) for i, v in statics.items()))
        emitted = cj.emitted if cj.emitted is not None else {}
        if types not in emitted:
            self._emit_custom_jvp(cj, arrays, span, emitted, types, statics)
        return self._call_primal(emitted[types], arrays, span, frame)

    def _check_custom_call(self: Resolver, kind: str, args: list, kwargs: dict, span: Span,
                           frame: Frame) -> None:
        if frame.fn is None or kwargs or not all(isinstance(a, Tensor) for a in args):
            raise self.error("AOT366", f"a {kind} function is called with array arguments "
                             "inside a module", span)

    def _call_primal(self: Resolver, primal: "PrimalCall", args: list, span: Span, frame: Frame) -> Any:
        fn = frame.fn
        assert fn is not None
        result = _fresh_copy(primal.result)
        call = call_code(primal.function, [value_code(a) for a in args])
        fn.ops.append(Op("ops/module_call.j2", (
            ("target", unpack_code(result, result, [])), ("call", call)),
            tuple(tensors(result)), (), span, primal.name,
            info=OpInfo("jax.custom_jvp", callee=primal.function)))
        return result

    def _emit_custom_jvp(self: Resolver, cj: CustomJvp, args: list, span: Span, emitted: dict,
                         types: tuple, statics: dict[int, Any]) -> None:
        """`args`: the array arguments; `statics` the static ones by position (the
        `nondiff_argnums`), constants of the emitted functions, which the rule is called
        with first, as JAX calls it."""
        from ..scopes import FunctionState

        rows = [type(a)(a.shape, a.dtype, a.weak) for a in args]
        name = self._function_name(cj.fn.name)
        primal, primal_result = self._plain_function(cj.fn, rows, name, span, FunctionState(),
                                                     statics)
        primal = _with(primal, decorators=("jax.custom_jvp",),
                       doc=f"{cj.fn.name}, with its own derivative (custom_jvp)")
        self.functions.append(primal)
        rule_name = self._function_name(f"{cj.fn.name}_jvp")
        state = FunctionState()
        primals = tuple(type(a)(a.shape, a.dtype, a.weak) for a in args)
        tangents = tuple(type(a)(a.shape, a.dtype, a.weak) for a in args)
        frame = Frame(Env(cj.fn.env), state, None, None)
        for (arg, _), p, t in zip(primal.inputs, primals, tangents):
            state.hint(p, arg)
            state.hint(t, f"{arg}_dot")
        called = PrimalCall(name, primal, primal_result)
        emitted[types] = called  # the rule calls the function itself: the primal
        if cj.jvp is not None:
            out = self._call(cj.jvp, [*statics.values(), primals, tangents], {},
                             ir.Call(ir.Name(cj.fn.name, span), (), (), span), frame)
        else:
            ans = self._call_primal(called, list(primals), span, frame)
            total = None
            for rule, t in zip(cj.jvps or (), tangents):
                if rule is None:
                    continue
                term = self._call(rule, [t, ans, *primals], {}, ir.Call(
                    ir.Name("rule", span), (), (), span), frame)
                total = term if total is None else self._binop("+", total, term, span, frame)
            out = (ans, total)
        if not (isinstance(out, tuple) and len(out) == 2 and isinstance(out[1], Tensor)):
            raise self.error("AOT366", "a jvp rule returns (primal_out, tangent_out)", span)
        inputs = (("primals", TreeVar("primals")), ("tangents", TreeVar("tangents")))
        prologue = [Op("ops/module_call.j2", (("target", unpack_code(group, group, [])),
                                               ("call", Code((var,)))), group, (), span, n)
                    for n, var, group in (("primals", inputs[0][1], primals),
                                          ("tangents", inputs[1][1], tangents))]
        rule = Function(
            name=rule_name, doc=f"The derivative rule of {name}", takes_params=False,
            state_collections=(), takes_rng=False, inputs=inputs,
            body=tuple(prologue + state.ops), result=value_code(out),
            result_tensors=tuple(tensors(out)), span=(cj.jvp or cj.fn).span,
            hints=dict(state.hints), decorators=(f"{name}.defjvp",))
        self._check_closed(rule, cj.jvp or cj.fn, span)
        self.functions.append(rule)

    def _plain_function(self: Resolver, closure: Closure, rows: list, name: str, span: Span,
                        state: Any, statics: dict[int, Any] | None = None
                        ) -> tuple[Function, Any]:
        """A function of arrays resolved for `rows`, emitted at module level; `statics`
        (position -> value) are static arguments between them (a custom_vjp's
        `nondiff_argnums`), which the emitted function has as constants."""
        errors = self.errors
        statics = statics or {}
        full = _with_statics(rows, statics)
        result = self._call_closure(closure, full, {}, span, Frame(closure.env, state, None,
                                                                   None))
        if self.errors != errors:
            raise Abort()
        if state.params or state.takes_rng or state.state:
            raise self.error("AOT366", f"{closure.name} may not use layers, randomness or state "
                             "(a custom_jvp function computes with arrays only)", span)
        names = [p.name for i, p in enumerate(p for p in closure.params.params
                                               if p.kind == "positional") if i not in statics]
        function = Function(
            name=name, doc=closure.name, takes_params=False, state_collections=(),
            takes_rng=False, inputs=tuple(zip(names, rows)), body=tuple(state.ops),
            result=value_code(result), result_tensors=tuple(tensors(result)),
            span=closure.span, hints=dict(state.hints))
        self._check_closed(function, closure, span)
        return function, result

    def _check_closed(self: Resolver, function: Function, closure: Closure, span: Span) -> None:
        """A function with its own derivative is emitted at module level: it may read arrays
        only through its arguments, not those of the function that defines it."""
        produced = {id(t) for _, t in function.inputs}
        for op in function.body:
            for v in op.inputs():
                if isinstance(v, Tensor) and id(v) not in produced:
                    raise self.error(
                        "AOT366", f"{closure.name} reads an array {v.describe()} of the "
                        "function that defines it; a function with its own derivative "
                        "(custom_jvp, custom_vjp) sees arrays only through its arguments",
                        span, notes=(Note("defined here", closure.span),),
                        hint="pass the array as an argument (and give its derivative)")
            produced.update(id(v) for v in op.outputs)


@dataclass(eq=False)
class CustomVjp:
    """`jax.custom_vjp(f)`, with its rules from `f.defvjp(fwd, bwd)`."""

    fn: Closure
    span: Span
    fwd: Closure | None = None
    bwd: Closure | None = None
    #: `nondiff_argnums`: positions of static arguments, which the backward rule takes
    #: first and which get no cotangent; each set of their values is emitted on its own.
    nondiff: tuple[int, ...] = ()
    #: Emitted primal per argument types (its rules are emitted with it).
    emitted: dict[tuple, "PrimalCall"] = field(default_factory=dict)


class CustomVjpMixin:
    """`jax.custom_vjp` on functions of the model file: the primal, its forward rule and
    its backward rule emitted as module-level functions, registered as JAX does."""

    def _custom_vjp(self: Resolver, args: list, kwargs: dict, span: Span) -> CustomVjp:
        if len(args) != 1 or set(kwargs) - {"nondiff_argnums"} or not isinstance(args[0],
                                                                              Closure):
            raise self.error("AOT366", "jax.custom_vjp takes one function of the model file "
                             "(and nondiff_argnums=)", span)
        return CustomVjp(args[0], span,
                         nondiff=self._nondiff_argnums("custom_vjp", args[0], kwargs, span))

    def _custom_vjp_method(self: Resolver, cv: CustomVjp, name: str, args: list, kwargs: dict,
                           span: Span) -> Any:
        if name == "defvjp" and len(args) == 2 and not kwargs and all(
                isinstance(a, Closure) for a in args):
            cv.fwd, cv.bwd = args
            return None
        raise self.error("AOT366", f"a custom_vjp function has defvjp(fwd, bwd) with two "
                         f"functions of the model file, not {name}(...) so", span)

    def _call_custom_vjp(self: Resolver, cv: CustomVjp, args: list, kwargs: dict, span: Span,
                         frame: Frame) -> Any:
        statics = self._custom_statics("custom_vjp", cv.fn, cv.nondiff, args, span)
        arrays = [a for i, a in enumerate(args) if i not in statics]
        self._check_custom_call("custom_vjp", arrays, kwargs, span, frame)
        if cv.fwd is None or cv.bwd is None:
            raise self.error("AOT366", f"custom_vjp function {cv.fn.name} has no rules: add "
                             f"{cv.fn.name}.defvjp(fwd, bwd)", span)
        types = (tuple((a.shape, a.dtype) for a in arrays),
                 tuple((i, static_key(v)) for i, v in statics.items()))
        if types not in cv.emitted:
            self._emit_custom_vjp(cv, arrays, span, types, statics)
        return self._call_primal(cv.emitted[types], arrays, span, frame)

    def _emit_custom_vjp(self: Resolver, cv: CustomVjp, args: list, span: Span,
                         types: tuple, statics: dict[int, Any]) -> None:
        """`args`: the array arguments; `statics` the static ones by position (the
        `nondiff_argnums`), constants of the three emitted functions, which the backward
        rule is called with first, as JAX calls it."""
        from ..scopes import FunctionState

        assert cv.fwd is not None and cv.bwd is not None
        rows = [type(a)(a.shape, a.dtype, a.weak) for a in args]
        name = self._function_name(cv.fn.name)
        primal, primal_result = self._plain_function(cv.fn, rows, name, span, FunctionState(),
                                                     statics)
        primal = _with(primal, decorators=("jax.custom_vjp",),
                       doc=f"{cv.fn.name}, with its own gradient (custom_vjp)")
        fwd_name = self._function_name(f"{cv.fn.name}_fwd")
        bwd_name = self._function_name(f"{cv.fn.name}_bwd")
        cv.emitted[types] = PrimalCall(name, primal, primal_result)  # the rules may call it
        fwd, fwd_result = self._plain_function(
            cv.fwd, [type(a)(a.shape, a.dtype, a.weak) for a in args], fwd_name, span,
            FunctionState(), statics)
        out_types = [(t.shape, t.dtype) for t in tensors(primal_result)]
        if not (isinstance(fwd_result, tuple) and len(fwd_result) == 2
                and [(t.shape, t.dtype) for t in tensors(fwd_result[0])] == out_types):
            raise self.error("AOT366", f"the forward rule of {cv.fn.name} returns (output, "
                             f"residuals), its output as {cv.fn.name} returns it", cv.fwd.span)
        state = FunctionState()
        res, g = _fresh_copy(fwd_result[1]), _fresh_copy(primal_result)
        frame = Frame(Env(cv.bwd.env), state, None, None)
        names = [p.name for p in cv.bwd.params.params if p.kind == "positional"]
        if len(names) != len(statics) + 2:
            raise self.error("AOT366", "a custom_vjp backward rule takes (residuals, "
                             "cotangent)" if not statics else "a custom_vjp backward rule "
                             f"takes its {len(statics)} nondiff argument(s), then (residuals, "
                             "cotangent)", cv.bwd.span)
        names = names[len(statics):]
        cotangents = self._call(cv.bwd, [*statics.values(), res, g], {},
                                ir.Call(ir.Name(cv.fn.name, span), (), (), span), frame)
        if not (isinstance(cotangents, tuple) and len(cotangents) == len(args) and all(
                isinstance(c, Tensor) and c.shape == a.shape
                for c, a in zip(cotangents, args))):
            raise self.error("AOT366", f"the backward rule of {cv.fn.name} returns a tuple of "
                             f"{len(args)} arrays, one like each argument", cv.bwd.span)
        inputs = tuple((n, TreeVar(n)) for n in names)
        prologue = [Op("ops/module_call.j2", (("target", unpack_code(group, group, [])),
                                               ("call", Code((var,)))),
                       tuple(tensors(group)), (), cv.bwd.span, n)
                    for (n, var), group in zip(inputs, (res, g))]
        backward = Function(
            name=bwd_name, doc=f"The backward rule of {name}", takes_params=False,
            state_collections=(), takes_rng=False, inputs=inputs,
            body=tuple(prologue + state.ops), result=value_code(cotangents),
            result_tensors=tuple(tensors(cotangents)), span=cv.bwd.span,
            hints=dict(state.hints), decorators=(f"_runtime.backward_of({name}, {fwd_name})",))
        self._check_closed(backward, cv.bwd, span)
        self.functions += [primal, _with(fwd, pinned=True, doc=f"The forward rule of {name}"),
                           backward]


@dataclass(frozen=True, eq=False)
class PrimalCall:
    """Inside a jvp rule, the custom_jvp function itself: a call of the emitted primal."""

    name: str
    function: Function
    result: Any


def _with_statics(rows: list, statics: dict[int, Any]) -> list:
    """The arguments of a call: `rows` in order, with `statics` at their positions."""
    rest = iter(rows)
    return [statics[i] if i in statics else next(rest)
            for i in range(len(rows) + len(statics))]


def _fresh_copy(value: Any) -> Any:
    return rebuild(value, [type(t)(t.shape, t.dtype, t.weak) for t in tensors(value)])


def _with(function: Function, **changes: Any) -> Function:
    import dataclasses

    return dataclasses.replace(function, **changes)
