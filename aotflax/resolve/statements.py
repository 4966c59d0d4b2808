"""Statements and assignment: static control flow, unrolled and pruned."""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING, Any, Callable, Iterator

from .. import ir
from ..diagnostics import Span
from ..ops.host import HostArray
from ..ops.stochastic import RngKey, is_raw_key
from ..program import (
    Code,
    Tensor,
    TreeVar,
    Var,
)
from ..scopes import (
    StateVariable,
    StochasticBlock,
)
from ..sizes import Size, SizeRef, SizeTuple, bound_to, has_code
from ..values import (
    POISON,
    Closure,
    ConfigValue,
    ModuleRef,
    Poison,
    Record,
    RecordTuple,
    SelfValue,
    StaticIterator,
    describe_value,
    is_static,
    shown,
)
from .base import (
    MAX_STATIC_LEN,
    MAX_UNROLL,
    Abort,
    BreakSignal,
    ClassNamespace,
    ContinueSignal,
    Frame,
    ImportTimeArray,
    ImportTimeSignal,
    ReturnSignal,
)
from .helpers import (
    assigned_names,
    static_size,
    static_truth,
)
from .toplevel import ModuleGlobals

if TYPE_CHECKING:
    from .core import Resolver

#: `StatementsMixin._stmt_<Node>` by IR node type (`_exec`'s dispatch).
_STMT: dict[type, Callable[..., Any]] = {}


#: Methods that change a list, dict or set in place.
_MUTATING = frozenset({"append", "extend", "insert", "pop", "remove", "clear", "update",
                       "setdefault", "popitem", "add", "discard", "sort", "reverse"})


def _mutated_container(stmt: ir.Stmt | ir.ClassDef) -> str | None:
    """The local a statement `name.append(...)` (or another in-place method) changes."""
    if not isinstance(stmt, ir.ExprStmt) or not isinstance(stmt.value, ir.Call):
        return None
    fn = stmt.value.func
    if isinstance(fn, ir.Attribute) and fn.attr in _MUTATING and isinstance(fn.value, ir.Name) \
            and fn.value.id != "self":
        return fn.value.id
    return None


class StatementsMixin:
    """Statements and assignment: static control flow, unrolled and pruned."""

    # ---------------------------------------------------------------- statements

    def _exec_guarded(self: Resolver, stmt: ir.Stmt | ir.ClassDef, frame: Frame) -> None:
        """Run a statement; after an error its names are poisoned (no knock-on errors).

        A failed `if`/`for` keeps the names that were bound before it (they still have
        a value of the right kind, so later mistakes with them are still reported) and
        poisons those it would have introduced.
        """
        try:
            self._exec(stmt, frame)
        except Abort:
            if isinstance(stmt, ir.Return):  # the function's result failed: callers stay silent
                raise ReturnSignal(POISON) from None
            compound = isinstance(stmt, (ir.If, ir.For, ir.While, ir.With))
            for name in assigned_names(stmt):
                if compound and name in frame.env.vars and not (
                        isinstance(stmt, ir.For) and name in assigned_names(
                            ir.Assign((stmt.target,), stmt.iter, stmt.span))):
                    continue
                frame.env.set(name, POISON)
            mutated = _mutated_container(stmt)
            if mutated is not None and mutated in frame.env.vars:
                frame.env.set(mutated, POISON)  # `stack.append(<failed>)`: its items unknown
            self._poison_self_attributes(stmt, frame)

    def _poison_self_attributes(self: Resolver, stmt: ir.Stmt | ir.ClassDef, frame: Frame) -> None:
        """`self.x = <failed>`: later reads of `self.x` stay silent (no knock-on errors)."""
        targets = stmt.targets if isinstance(stmt, ir.Assign) else (
            (stmt.target,) if isinstance(stmt, (ir.AugAssign, ir.AnnAssign)) else ())
        for t in targets:
            if isinstance(t, ir.Attribute) and isinstance(t.value, ir.Name):
                found, receiver = frame.env.lookup(t.value.id)
                if found and isinstance(receiver, SelfValue):
                    receiver.attrs[t.attr] = POISON

    def _exec_block(self: Resolver, body: tuple[ir.Stmt, ...], frame: Frame) -> None:
        for stmt in body:
            self._exec_guarded(stmt, frame)

    def _exec(self: Resolver, stmt: ir.Stmt | ir.ClassDef, frame: Frame) -> None:
        self._step(stmt.span)
        method = _STMT.get(type(stmt))
        if method is None:  # the method of each IR node type, looked up once
            method = _STMT[type(stmt)] = getattr(type(self), "_stmt_" + type(stmt).__name__)
        method(self, stmt, frame)

    def _stmt_Assign(self: Resolver, stmt: ir.Assign, frame: Frame) -> None:
        target = stmt.targets[0]
        if frame.fn is None and len(stmt.targets) == 1 and \
                isinstance(frame.env, (ModuleGlobals, ClassNamespace)):
            if isinstance(target, ir.Name):
                value = self._top_level_value(target.id, stmt.value, frame)
            elif isinstance(target, (ir.TupleExpr, ir.ListExpr)) and target.elts and \
                    all(isinstance(t, ir.Name) for t in target.elts):
                value = self._top_level_value("", stmt.value, frame)
                if isinstance(value, ImportTimeArray):  # each name unpacks it where read
                    names = [t.id for t in target.elts if isinstance(t, ir.Name)]
                    for i, name in enumerate(names):
                        frame.env.set(name, ImportTimeArray(name, stmt.value, frame.env,
                                                            stmt.value.span, target, i))
                    return
            else:
                value = self.eval(stmt.value, frame)
        else:
            value = self.eval(stmt.value, frame)
        for target in stmt.targets:
            self._assign(target, value, frame)

    def _top_level_value(self: Resolver, name: str, expr: ir.Expr, frame: Frame) -> Any:
        """A top-level `name = expr`; an array operation in it makes `name` an
        `ImportTimeArray`, computed again where a function reads it."""
        outer, self.import_time = self.import_time, True
        try:
            return self.eval(expr, frame)
        except ImportTimeSignal:
            return ImportTimeArray(name, expr, frame.env, expr.span)
        finally:
            self.import_time = outer

    def _defaults(self: Resolver, params: ir.Parameters, frame: Frame) -> dict[str, Any]:
        """A `def`'s or lambda's defaults, evaluated where it is defined, as Python does; at
        the top level an array default is an `ImportTimeArray`, computed where it is read."""
        if frame.fn is not None:
            return {p.name: self.eval(p.default, frame) for p in params.params
                    if p.default is not None}
        return {p.name: self._top_level_value(p.name, p.default, frame) for p in params.params
                if p.default is not None}

    def _stmt_AnnAssign(self: Resolver, stmt: ir.AnnAssign, frame: Frame) -> None:
        if stmt.value is None:
            return
        if frame.fn is None and isinstance(stmt.target, ir.Name) and \
                isinstance(frame.env, (ModuleGlobals, ClassNamespace)):
            value = self._top_level_value(stmt.target.id, stmt.value, frame)
        else:
            value = self.eval(stmt.value, frame)
        self._assign(stmt.target, value, frame)

    def _stmt_AugAssign(self: Resolver, stmt: ir.AugAssign, frame: Frame) -> None:
        if self._host_augassign(stmt, frame):
            return
        current = self.eval(stmt.target, frame)
        value = self._binop(stmt.op, current, self.eval(stmt.value, frame), stmt.span, frame)
        self._assign(stmt.target, value, frame)

    def _stmt_ExprStmt(self: Resolver, stmt: ir.ExprStmt, frame: Frame) -> None:
        if isinstance(stmt.value, ir.Constant) and isinstance(stmt.value.value, str):
            return  # a docstring or comment string
        self.eval(stmt.value, frame)

    def _stmt_Return(self: Resolver, stmt: ir.Return, frame: Frame) -> None:
        raise ReturnSignal(self.eval(stmt.value, frame) if stmt.value is not None else None)

    def _stmt_If(self: Resolver, stmt: ir.If, frame: Frame) -> None:
        test = self._truth(stmt.test, frame)
        self._exec_block(stmt.body if test else stmt.orelse, frame)

    def _stmt_For(self: Resolver, stmt: ir.For, frame: Frame) -> None:
        iterable = self.eval(stmt.iter, frame)
        for i, item in enumerate(self._iterate(iterable, stmt.iter.span)):
            if i >= MAX_UNROLL:
                raise self.error("AOT330", f"loop unrolls more than {MAX_UNROLL} iterations",
                                 stmt.iter.span)
            self._assign(stmt.target, item, frame)
            if not self._iteration(stmt.body, frame):
                return
        self._exec_block(stmt.orelse, frame)

    def _iteration(self: Resolver, body: tuple[ir.Stmt, ...], frame: Frame) -> bool:
        """One pass of a loop's body: False when it breaks (`continue` ends the pass)."""
        try:
            self._exec_block(body, frame)
        except BreakSignal:
            return False
        except ContinueSignal:
            pass
        return True

    def _stmt_While(self: Resolver, stmt: ir.While, frame: Frame) -> None:
        """Python's `while` on static values, run at build time (2020 code searched for a
        group count dividing the channels this way); each test is a static truth, so a
        condition on an array is the located error it is in `if`."""
        for i in itertools.count():
            if not self._truth(stmt.test, frame, loop=True):
                break
            if i >= MAX_UNROLL:
                raise self.error("AOT330", f"loop runs more than {MAX_UNROLL} iterations",
                                 stmt.test.span)
            if not self._iteration(stmt.body, frame):
                return
        self._exec_block(stmt.orelse, frame)

    def _stmt_With(self: Resolver, stmt: ir.With, frame: Frame) -> None:
        """`with nn.stochastic(key):` (old flax.nn's stochastic context): the body's
        `nn.make_rng()` and `nn.dropout` draw `fold_in(key, 1)`, `fold_in(key, 2)`, ..."""
        block = self.eval(stmt.context, frame)
        if isinstance(block, Poison):
            raise Abort()
        if not isinstance(block, StochasticBlock):
            raise self.error("AOT102", "'with' is supported only as `with nn.stochastic(rng):`, "
                             f"got {describe_value(block)}", stmt.context.span)
        fn = frame.fn
        if fn is None:
            raise self.error("AOT324", "nn.stochastic blocks run inside a module's apply (or a "
                             "function it calls)", stmt.span)
        fn.stochastic.append(block)
        try:
            self._exec_block(stmt.body, frame)
        finally:
            fn.stochastic.pop()

    def _stmt_Break(self: Resolver, stmt: ir.Break, frame: Frame) -> None:
        raise BreakSignal()

    def _stmt_Continue(self: Resolver, stmt: ir.Continue, frame: Frame) -> None:
        raise ContinueSignal()

    def _stmt_Pass(self: Resolver, stmt: ir.Pass, frame: Frame) -> None:
        pass

    def _stmt_Raise(self: Resolver, stmt: ir.Raise, frame: Frame) -> None:
        message = "raised an error"
        if isinstance(stmt.exc, ir.Call) and stmt.exc.args:
            value = self.eval(stmt.exc.args[0], frame)
            if isinstance(value, Poison):
                raise Abort()  # the message's own error is reported
            message = value if isinstance(value, str) else shown(value)
        raise self.error("AOT300", f"model raised: {message}", stmt.span)

    def _stmt_Assert(self: Resolver, stmt: ir.Assert, frame: Frame) -> None:
        if not self._truth(stmt.test, frame):
            msg = self.eval(stmt.msg, frame) if stmt.msg is not None else "assertion failed"
            msg = msg if isinstance(msg, str) else shown(msg)
            raise self.error("AOT300", f"model assertion failed: {msg}", stmt.span)

    def _stmt_FunctionDef(self: Resolver, stmt: ir.FunctionDef, frame: Frame) -> None:
        """A `def`; its decorators are applied as Python applies them (bottom first), by
        calling them on the function where the static language can (`records.py`);
        `@nn.module` makes the function a module."""
        if self._function_module(stmt, frame):  # `@nn.module def MLP(x, ...)`
            return
        decorators = [self.eval(d, frame) for d in stmt.decorators]
        defaults = self._defaults(stmt.params, frame)
        fn = Closure(stmt.name, stmt.params, stmt.body, frame.env, stmt.span, stmt, defaults,
                     toplevel=frame.fn is None)
        frame.env.set(stmt.name, self._decorate(stmt, fn, decorators, frame))

    # ================================================================ assignment

    def _assign(self: Resolver, target: ir.Expr, value: Any, frame: Frame) -> None:
        if isinstance(target, ir.Name):
            if frame.fn is not None and has_code(value):
                value = self._bind_size(target.id, value, frame.fn, target.span)
            if frame.fn is None and isinstance(value, ModuleRef) and value.bound and \
                    value.label is None and target.id != value.class_name:
                # `ResNet18 = ResNet.partial(...)`: the model's name for this configuration
                value = ModuleRef(value.module, value.bound, value.span, target.id)
            frame.env.set(target.id, value)
            if frame.fn is not None:
                frame.fn.hint(value, target.id)
            return
        if isinstance(target, (ir.TupleExpr, ir.ListExpr)) and frame.fn is not None and \
                isinstance(value, SizeTuple) and len(value) == len(target.elts) and \
                all(isinstance(t, ir.Name) for t in target.elts):
            self._unpack_shape(target, value, frame)
            return
        if isinstance(target, (ir.TupleExpr, ir.ListExpr)):
            if any(isinstance(t, ir.Starred) for t in target.elts):
                self._assign_starred(target, value, frame)
                return
            items = self._unpack(value, len(target.elts), target, frame)
            for t, v in zip(target.elts, items):
                self._assign(t, v, frame)
            return
        if isinstance(target, ir.Starred):
            raise self.error("AOT331", "a starred assignment target must be in a list or "
                             "tuple", target.span)
        if isinstance(target, ir.Attribute):
            receiver = self.eval(target.value, frame)
            self._set_attribute(receiver, target.attr, value, target.span, frame)
            return
        if isinstance(target, ir.Subscript):
            container = self.eval(target.value, frame)
            index = self.eval(target.index, frame)
            if isinstance(container, (list, dict, ConfigValue)) and is_static(index):
                if isinstance(index, slice) and isinstance(value, (list, tuple)) and \
                        len(container) + len(value) > MAX_STATIC_LEN:
                    raise self.error("AOT330", f"this slice assignment would make a list of "
                                     f"{len(container) + len(value):,} items (at most "
                                     f"{MAX_STATIC_LEN:,})", target.span)
                try:
                    container[index] = value
                except (IndexError, KeyError, TypeError, ValueError) as e:
                    raise self.error("AOT332", f"cannot assign item: {e}", target.span) from None
                if isinstance(index, slice):  # a slice assignment can grow the list
                    self._static_result(container, target.span, static_size(value), False)
                return
            if isinstance(container, HostArray):
                self._host_store(container, index, value, target.span, frame)
                return
            if isinstance(container, Tensor):
                raise self.error("AOT332", "arrays are immutable; use x.at[index].set(value)",
                                 target.span)
            raise self.error("AOT332", f"cannot assign items of {describe_value(container)}",
                             target.span)
        raise self.error("AOT331", "cannot assign to this expression", target.span)

    def _set_attribute(self: Resolver, receiver: Any, attr: str, value: Any, span: Span,
                       frame: Frame) -> None:
        """`receiver.attr = value`, written out or as `setattr(receiver, "attr", value)`."""
        if isinstance(receiver, StateVariable) and attr == "value":
            self._state_write(receiver, value, span)
            return
        if isinstance(receiver, SelfValue):
            self._set_self_attribute(receiver, attr, value, span, frame)
            return
        if isinstance(receiver, (ConfigValue, Record, RecordTuple)):
            self._set_record_attribute(receiver, attr, value, span)
            return
        if isinstance(receiver, Closure) and attr == "__name__":
            if not isinstance(value, str):
                raise self.error("AOT331", f"a function's __name__ must be a string, got "
                                 f"{describe_value(value)}", span)
            receiver.dunder_name = value  # the function object itself, as in Python
            return
        raise self.error("AOT331", f"cannot set attribute '{attr}' of "
                         f"{describe_value(receiver)}", span)

    def _bind_size(self: Resolver, name: str, value: Any, fn: Any, span: Span) -> Any:
        """`batch = x.shape[0]`: a statement of its own, so the generated code reads the
        size where the model does and by the model's name (emitted only if it is used)."""
        if not isinstance(value, (Size, SizeTuple)):
            return value  # a tuple of sizes keeps each size's own code
        if len(value.code.parts) == 1 and isinstance(value.code.parts[0], Var):
            return value  # already a variable's value
        var = TreeVar("size")
        fn.emit("ops/call.j2", {"call": Code((SizeRef(value),))}, (var,), span, name)
        fn.hint(var, name)
        return bound_to(var, value)

    def _unpack_shape(self: Resolver, target: Any, value: Any, frame: Frame) -> None:
        """`b, h, w, c = x.shape`: one statement; each name reads its size."""
        outs = [TreeVar("size") for _ in target.elts]
        assert frame.fn is not None, "shapes unpack inside a function being resolved"
        frame.fn.emit("ops/call.j2", {"call": Code((SizeRef(value),))}, tuple(outs),
                      target.span, target.elts[0].id)
        for t, var, d in zip(target.elts, outs, value):
            frame.fn.hint(var, t.id)
            frame.env.set(t.id, bound_to(var, d))

    def _assign_starred(self: Resolver, target: ir.TupleExpr | ir.ListExpr, value: Any,
                        frame: Frame) -> None:
        """`first, *rest = value`, `*items, = x`: Python's extended unpacking; the starred
        name gets a list of what the others leave (an array unpacks along its first axis,
        as Python iterates a jax array: Flax's seq2seq example writes `*carried_state, =
        jnp.where(...)` of an LSTM's two carries)."""
        elts = target.elts
        # one starred name: Python's parser refuses two (AOT100)
        star = next(i for i, t in enumerate(elts) if isinstance(t, ir.Starred))
        if isinstance(value, Tensor):
            n = value.shape[0] if value.shape else 0
            if not value.shape or n < len(elts) - 1:
                self._unpack_array(value, len(elts) - 1, target, frame)  # says why
            items = self._unpack_array(value, n, target, frame)
        elif isinstance(value, Poison):
            items = [POISON] * (len(elts) - 1)
        else:
            try:
                items = list(value)
            except TypeError:
                raise self.error("AOT333", f"cannot unpack {describe_value(value)}",
                                 target.span) from None
        after = len(elts) - star - 1
        if len(items) < len(elts) - 1:
            raise self.error("AOT333", f"expected at least {len(elts) - 1} values to unpack, "
                             f"got {len(items)}", target.span)
        for t, v in zip(elts[:star], items[:star]):
            self._assign(t, v, frame)
        starred = elts[star]
        assert isinstance(starred, ir.Starred)
        self._assign(starred.value, list(items[star:len(items) - after]), frame)
        for t, v in zip(elts[star + 1:], items[len(items) - after:]):
            self._assign(t, v, frame)

    def _unpack(self: Resolver, value: Any, n: int, target: ir.Expr, frame: Frame) -> list[Any]:
        if isinstance(value, Poison):
            return [POISON] * n
        if isinstance(value, Tensor):
            return self._unpack_array(value, n, target, frame)
        try:
            items = list(value)
        except TypeError:
            raise self.error("AOT333", f"cannot unpack {describe_value(value)}",
                             target.span) from None
        if len(items) != n:
            raise self.error("AOT333", f"expected {n} values to unpack, got {len(items)}",
                             target.span)
        return items

    def _unpack_array(self: Resolver, value: Tensor, n: int, target: ir.Expr, frame: Frame) -> list[Any]:
        """`a, b = x` splits an array along its first axis, as Python iterates a jax array
        (`k1, k2 = jax.random.split(key)` gives two keys)."""
        if not value.shape or value.shape[0] != n:
            what = "a 0-d array" if not value.shape else \
                f"an array of {value.shape[0]} along its first axis"
            raise self.error("AOT333", f"cannot unpack {value.describe()} into {n} names: it is "
                             f"{what}", target.span)
        if isinstance(value, HostArray):
            ints = value.static_ints()
            if ints is not None:  # numpy on static ints: its items are static ints too
                return list(ints)
        if frame.fn is None:
            raise self.error("AOT324", "arrays can only be unpacked inside a module's apply",
                             target.span)
        if isinstance(value, HostArray):  # numpy rows (or numpy scalars) of numpy's dtype
            items: list[Tensor] = [HostArray(value.shape[1:], value.np_dtype, value.ndim == 1)
                                   for _ in range(n)]
        elif isinstance(value, RngKey) and value.ndim == 1 and is_raw_key(value):
            # raw key data (`K, B = jax.random.PRNGKey(0)`): its two uint32 words
            items = [Tensor((), value.dtype, False) for _ in range(n)]
        else:
            items = [type(value)(value.shape[1:], value.dtype, value.weak) for _ in range(n)]
        code = Code.of(value, "[0]") if n == 1 else Code((value,))
        frame.fn.emit("ops/call.j2", {"call": code}, tuple(items), target.span, "item")
        return items

    def _iterate(self: Resolver, value: Any, span: Span) -> Iterator[Any]:
        if isinstance(value, Poison):
            raise Abort()
        self._check_not_opaque((value,), span, "looped over")
        ints = value.static_ints() if isinstance(value, HostArray) else None
        if ints is not None:  # numpy on static ints: a loop over static ints
            return iter(ints)
        if isinstance(value, Tensor):
            raise self.error("AOT334", f"cannot loop over an array {value.describe()} at build "
                             "time", span, hint="loop over range(x.shape[0]), or use "
                             "jax.lax.scan for a loop inside the computation")
        if isinstance(value, dict):
            return iter(list(value))
        if isinstance(value, StaticIterator):  # a loop over an iterator consumes it
            return iter(value.rest())
        try:
            return iter(list(value))
        except TypeError:
            raise self.error("AOT334", f"cannot loop over {describe_value(value)}",
                             span) from None

    def _truth(self: Resolver, expr: ir.Expr, frame: Frame, loop: bool = False) -> bool:
        """The static truth of a condition; `loop`: a `while` loop's, whose hint differs."""
        value = self.eval(expr, frame)
        if isinstance(value, Poison):
            raise Abort()
        self._check_not_opaque((value,), expr.span, "tested")
        truth = static_truth(value)
        if truth is None:
            raise self.error(
                "AOT335", f"this condition depends on an array value ({describe_value(value)}); "
                "conditions must be static", expr.span,
                hint="loop a static number of times (for i in range(n), or jax.lax.scan) and "
                     "select results with jnp.where" if loop else
                     "use jnp.where(cond, a, b) to select values elementwise")
        return truth
