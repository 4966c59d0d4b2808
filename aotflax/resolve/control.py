"""Control flow on array values: `jax.lax.cond`, `jax.lax.switch`, `jax.lax.while_loop`.

A static predicate or index (a hyperparameter, a shape) picks its branch at build time
and that branch is called, which is the value jax computes.  On an array predicate or
index, each branch (and a while loop's condition and body) is resolved once for fresh
arrays of its operands' types and emitted as a nested `def`, and the call is emitted as
written: `jax.lax.cond(pred, true_fun, false_fun, x)`.  As for `jax.vmap`, such a
function may use any array operation; layers, randomness and state belong to modules and
are rejected inside (old flax.nn could not create parameters under a traced branch
either).  Operands are arrays, numbers (made arrays, as jax makes them) or tuples and
lists of them; jax's rules are checked: the branches return the same types, the loop
body returns its carry's types, the loop condition a boolean scalar.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .. import ir
from ..diagnostics import Span
from ..ops import REGISTRY
from ..ops.calls import value_code
from ..program import Code, Function, FunctionRef, Op, OpInfo, Tensor, fresh_like
from ..values import (
    Closure,
    ModuleRef,
    OpRef,
    Partial,
    RecordTuple,
    contains_poison,
    describe_value,
)
from .base import Abort, Frame
from .helpers import rebuild, static_truth, tensor_leaves, tensors, unpack_code

if TYPE_CHECKING:
    from .core import Resolver

_FUNCTIONS = (Closure, OpRef, ModuleRef, Partial)


class ControlMixin:
    """`jax.lax.cond`, `jax.lax.switch`, `jax.lax.while_loop`."""

    def _lax_cond(self: Resolver, args: list, kwargs: dict, expr: ir.Call, frame: Frame) -> Any:
        """`jax.lax.cond(pred, true_fun, false_fun, *operands)` (or jax's first form,
        `cond(pred, true_operand, true_fun, false_operand, false_fun)`)."""
        span = expr.span
        if "operand" in kwargs and len(args) == 3:  # jax's old keyword: one operand
            args = [*args, kwargs.pop("operand")]
        if kwargs:
            raise self.error("AOT304", "jax.lax.cond takes its arguments by position here: "
                             "cond(pred, true_fun, false_fun, *operands)", span)
        first_form = len(args) == 5 and not isinstance(args[1], _FUNCTIONS)
        if first_form:
            pred = args[0]
            branches = ((args[2], [args[1]]), (args[4], [args[3]]))
        elif len(args) >= 3:
            pred, branches = args[0], ((args[1], args[3:]), (args[2], args[3:]))
        else:
            raise self.error("AOT304", "jax.lax.cond needs cond(pred, true_fun, false_fun, "
                             f"*operands), got {len(args)} arguments", span)
        truth = static_truth(pred)
        if truth is not None:
            branch, operands = branches[0] if truth else branches[1]
            return self._call(branch, list(operands), {}, expr, frame)
        self._scalar_selector(pred, "jax.lax.cond", "predicate", expr.args[0].span)
        if first_form:  # one operand per branch
            raise self.error("AOT361", "jax.lax.cond(pred, true_operand, true_fun, "
                             "false_operand, false_fun) on an array predicate is not "
                             "supported", span,
                             hint="pass the operands once: cond(pred, true_fun, false_fun, x)")
        return self._branching(
            "jax.lax.cond", pred, [b for b, _ in branches], list(branches[0][1]),
            ("true_fun", "false_fun"), span, frame)

    def _lax_switch(self: Resolver, args: list, kwargs: dict, expr: ir.Call,
                    frame: Frame) -> Any:
        """`jax.lax.switch(index, branches, *operands)`: `branches[index]`, the index clamped
        into range as jax clamps it."""
        span = expr.span
        if "operand" in kwargs and len(args) == 2:
            args = [*args, kwargs.pop("operand")]
        if kwargs or len(args) < 2:
            raise self.error("AOT304", "jax.lax.switch needs switch(index, branches, "
                             "*operands), its arguments by position", span)
        index, branches, operands = args[0], args[1], list(args[2:])
        if not isinstance(branches, (tuple, list)) or not branches or \
                not all(isinstance(b, _FUNCTIONS) for b in branches):
            raise self.error("AOT361", "jax.lax.switch: branches must be a non-empty tuple or "
                             f"list of functions, got {describe_value(branches)}",
                             expr.args[1].span)
        if isinstance(index, int):  # static (bool is an int too, as jax takes it)
            pick = min(max(int(index), 0), len(branches) - 1)
            return self._call(branches[pick], operands, {}, expr, frame)
        self._scalar_selector(index, "jax.lax.switch", "index", expr.args[0].span)
        if index.dtype == "bool" or index.dtype.startswith("float"):
            raise self.error("AOT361", "jax.lax.switch: the index must be an integer array, "
                             f"got {index.describe()}", expr.args[0].span)
        if len(branches) == 1:
            return self._call(branches[0], operands, {}, expr, frame)
        names = ("branch",) * len(branches)  # branch, branch_1, ... (their position)
        return self._branching("jax.lax.switch", index, list(branches), operands, names,
                               span, frame)

    def _while_loop(self: Resolver, args: list, kwargs: dict, expr: ir.Call,
                    frame: Frame) -> Any:
        """`jax.lax.while_loop(cond_fun, body_fun, init_val)`: a real while loop, its
        condition and body nested `def`s of the carry."""
        span = expr.span
        b = self._bind_signature("cond_fun, body_fun, init_val", "jax.lax.while_loop", args,
                                 kwargs, span)
        fn = self._need_function_frame(frame, span, "jax.lax.while_loop")
        init = self._operands([b["init_val"]], "jax.lax.while_loop", "init_val", span, frame)[0]
        carry_in = tensors(init)
        carry = rebuild(init, [fresh_like(t) for t in carry_in])
        test, cond_fn = self._nested_body(b["cond_fun"], [carry], span, frame,
                                          "jax.lax.while_loop", "the loop's condition",
                                          "cond_fun")
        if not (isinstance(test, Tensor) and test.shape == () and test.dtype == "bool"):
            raise self.error("AOT361", "jax.lax.while_loop: cond_fun must return a boolean "
                             f"scalar, got {_types(test)}", _where(b["cond_fun"], span))
        carry = rebuild(init, [fresh_like(t) for t in carry_in])
        new, body_fn = self._nested_body(b["body_fun"], [carry], span, frame,
                                         "jax.lax.while_loop", "the loop's body", "body_fun")
        self._same_types("jax.lax.while_loop: body_fun must return a carry of init_val's "
                         "types", init, new, _where(b["body_fun"], span))
        final = rebuild(init, [Tensor(t.shape, t.dtype, t.weak and o.weak)
                               for t, o in zip(carry_in, tensors(new))])
        call = Code.of("jax.lax.while_loop(", FunctionRef(cond_fn), ", ", FunctionRef(body_fn),
                       ", ", value_code(init), ")")
        fn.ops.append(Op("ops/module_call.j2", (
            ("target", unpack_code(final, final, [])), ("call", call),
            ("captures", _captures((cond_fn, body_fn)))), tuple(tensors(final)), (), span,
            "loop", (cond_fn, body_fn), OpInfo("jax.lax.while_loop")))
        return final

    def _dynamic_fori_loop(self: Resolver, lower: Any, upper: Any, body: Any, init: Any,
                           expr: ir.Call, frame: Frame) -> Any:
        """`jax.lax.fori_loop(lower, upper, body_fun, init_val)` with an array bound: emitted
        as written, over a nested `body_fun(i, val)` (jax runs it as a while loop)."""
        span = expr.span
        fn = self._need_function_frame(frame, span, "jax.lax.fori_loop")
        bounds = [v for v in (lower, upper) if isinstance(v, Tensor)]
        for v in bounds:
            if v.shape != () or not v.dtype.startswith(("int", "uint")):
                raise self.error("AOT361", "jax.lax.fori_loop: bounds must be integer scalars, "
                                 f"got {_types(v)}", span)
        if len({v.dtype for v in bounds}) > 1:
            raise self.error("AOT361", "jax.lax.fori_loop: the bounds must have one dtype, got "
                             f"{' and '.join(_types(v) for v in bounds)}", span)
        init = self._operands([init], "jax.lax.fori_loop", "init_val", span, frame)[0]
        carry_in = tensors(init)
        carry = rebuild(init, [fresh_like(t) for t in carry_in])
        index = Tensor((), bounds[0].dtype)
        new, body_fn = self._nested_body(body, [index, carry], span, frame,
                                         "jax.lax.fori_loop", "the loop's body", "body_fun")
        self._same_types("jax.lax.fori_loop: body_fun must return a carry of init_val's "
                         "types", init, new, _where(body, span))
        final = rebuild(init, [Tensor(t.shape, t.dtype, t.weak and o.weak)
                               for t, o in zip(carry_in, tensors(new))])
        call = Code.of("jax.lax.fori_loop(", value_code(lower), ", ", value_code(upper), ", ",
                       FunctionRef(body_fn), ", ", value_code(init), ")")
        fn.ops.append(Op("ops/module_call.j2", (
            ("target", unpack_code(final, final, [])), ("call", call),
            ("captures", _captures((body_fn,)))), tuple(tensors(final)), (), span, "loop",
            (body_fn,), OpInfo("jax.lax.fori_loop")))
        return final

    # ------------------------------------------------------------------ shared

    def _branching(self: Resolver, written: str, selector: Tensor, branches: list,
                   operands: list, names: tuple[str, ...], span: Span, frame: Frame) -> Any:
        """`written(selector, branches..., *operands)` emitted over one nested `def` per
        branch, each resolved for fresh arrays of the operands' types."""
        fn = self._need_function_frame(frame, span, written)
        operands = self._operands(operands, written, "operands", span, frame)
        results: list[Any] = []
        nested: list[Function] = []
        for branch, name in zip(branches, names):
            fresh = [rebuild(o, [fresh_like(t) for t in tensors(o)]) for o in operands]
            result, body = self._nested_body(branch, fresh, span, frame, written,
                                             f"a branch of {written}", name)
            if results:
                self._same_types(f"{written}: every branch must return the same types",
                                 results[0], result, _where(branch, span))
            results.append(result)
            nested.append(body)
        leaves = [tensors(r) for r in results]
        outs = [Tensor(t.shape, t.dtype, all(ls[i].weak for ls in leaves))
                for i, t in enumerate(leaves[0])]
        value = rebuild(results[0], outs)
        passed = [value_code(o) for o in operands if tensors(o)]
        refs = Code.join(", ", [Code((FunctionRef(f),)) for f in nested])
        if written == "jax.lax.switch":
            refs = Code.of("(", refs, ")")
        tail = Code.of(", ", Code.join(", ", passed), ")") if passed else Code((")",))
        call = Code.of(f"{written}(", value_code(selector), ", ", refs, tail)
        fn.ops.append(Op("ops/module_call.j2", (
            ("target", unpack_code(value, value, [])), ("call", call),
            ("captures", _captures(nested))), tuple(outs), (), span, "branch", tuple(nested),
            OpInfo(written, branches=True)))
        return value

    def _scalar_selector(self: Resolver, value: Any, written: str, what: str,
                         span: Span) -> None:
        if not isinstance(value, Tensor) or value.shape != () or \
                value.dtype.startswith("complex"):
            raise self.error("AOT361", f"{written}: the {what} must be a scalar (a boolean or "
                             f"an integer), got {_types(value)}", span)

    def _operands(self: Resolver, operands: list, written: str, what: str, span: Span,
                  frame: Frame) -> list:
        """`operands` with their numbers made arrays (`jnp.asarray`, as jax makes them);
        each an array or a tuple or list of arrays."""
        asarray = REGISTRY.lookup("jnp", "asarray")

        def go(v: Any) -> Any:
            if isinstance(v, (tuple, list)) and not isinstance(v, RecordTuple):
                items = [go(x) for x in v]
                return tuple(items) if isinstance(v, tuple) else items
            if isinstance(v, (bool, int, float)):
                return self._call_entry(asarray, "jnp.asarray", [v], {}, span, frame)
            if isinstance(v, Tensor):
                return v
            if contains_poison(v):
                raise Abort()
            raise self.error("AOT361", f"{written}: {what} must be arrays, numbers or tuples "
                             f"of them, got {describe_value(v)}", span,
                             hint="pass dicts and other values by closure: a branch may read "
                                  "the arrays around it")

        return [go(o) for o in operands]

    def _same_types(self: Resolver, message: str, want: Any, got: Any, span: Span) -> None:
        if not _same_structure(want, got) or [(t.shape, t.dtype) for t in tensors(want)] != \
                [(t.shape, t.dtype) for t in tensors(got)]:
            raise self.error("AOT364", f"{message}: got {_types(got)} for {_types(want)}",
                             span)


def _same_structure(a: Any, b: Any) -> bool:
    if isinstance(a, (tuple, list)) or isinstance(b, (tuple, list)):
        return type(a) is type(b) and len(a) == len(b) and all(
            _same_structure(x, y) for x, y in zip(a, b))
    return isinstance(a, Tensor) and isinstance(b, Tensor) or (
        not tensor_leaves(a) and not tensor_leaves(b) and a == b)


def _captures(functions: Sequence[Function]) -> Code:
    """The arrays nested functions read from around them (not rendered: the op's inputs,
    so that they stay live and the padding proof sees them)."""
    out: dict[int, Any] = {}
    for f in functions:
        own = {id(v) for _, v in f.inputs}
        for op in f.body:
            own.update(id(v) for v in op.outputs)
        for op in f.body:
            for v in op.inputs():
                if id(v) not in own:
                    out.setdefault(id(v), v)
        for t in f.result_tensors:
            if id(t) not in own:
                out.setdefault(id(t), t)
    return Code(tuple(out.values()))


def _types(value: Any) -> str:
    """`f32[2, 3]`, `(i32[], f32[2, 3])`: a tree of arrays as messages write it."""
    if isinstance(value, Tensor):
        return value.describe()
    if isinstance(value, (tuple, list)):
        inner = ", ".join(_types(v) for v in value)
        return f"({inner},)" if len(value) == 1 and isinstance(value, tuple) else \
            f"({inner})" if isinstance(value, tuple) else f"[{inner}]"
    return describe_value(value)


def _where(func: Any, span: Span) -> Span:
    """Where a function given to a control-flow call is defined (the call, for others)."""
    return func.span if isinstance(func, Closure) else span


__all__ = ["ControlMixin"]
