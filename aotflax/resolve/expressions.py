"""Expressions: static evaluation, or table operations on arrays."""

from __future__ import annotations

import operator
from typing import TYPE_CHECKING, Any, Callable

from .. import dtypes as dt
from .. import ir, namespaces, safety
from ..diagnostics import Span
from ..ops import REGISTRY, CallError
from ..ops.host import HOST_DTYPES, HostArray, is_numpy_scalar
from ..ops.operators import NO_INDEX, AtIndex
from ..program import (
    Code,
    Tensor,
)
from ..scopes import (
    StateVariable,
    check_shape,
)
from ..shapes import size
from ..sizes import read_of, shape_of
from ..values import (
    AttentionCache,
    BoundMethod,
    Closure,
    ConfigValue,
    DType,
    EnumClass,
    EnumMember,
    Env,
    IndexMaker,
    ModuleRef,
    ModuleValue,
    Namespace,
    Opaque,
    OpRef,
    Poison,
    Record,
    RecordClass,
    RecordTuple,
    SelfValue,
    SharedModule,
    Spec,
    SpecDType,
    StaticBuiltin,
    SuperLayer,
    SuperModule,
    SuperObject,
    Traversal,
    UserModule,
    contains_poison,
    describe_value,
    is_static,
    shown,
)
from .base import (
    MAX_STATIC_LEN,
    Abort,
    Frame,
    ImportTimeArray,
    ImportTimeSignal,
)
from .caches import CacheEntry
from .helpers import (
    BINOP_NAMES,
    STATIC_BINOPS,
    STATIC_COMPARE,
    WORK_PER_STEP,
    array_like,
    deep_size,
    is_too_big,
    static_size,
    static_truth,
    too_large,
)
from .host import involves_host
from .toplevel import module_of
from .transforms import CustomJvp, CustomVjp

if TYPE_CHECKING:
    from .core import Resolver

#: `ExpressionsMixin._eval_<Node>` by IR node type (`eval`'s dispatch).
_EVAL: dict[type, Callable[..., Any]] = {}

#: Static comparisons that read their operands whole (`is` does not).
_READING_COMPARE = frozenset({"==", "!=", "<", "<=", ">", ">=", "in", "not in"})


def _scalar_astype(value: Any, dtype: Any) -> Any:
    """`np.sqrt(d).astype(np.float32)`: a numpy scalar converted at build time."""
    name = dtype.name if isinstance(dtype, DType) else dtype
    if name not in HOST_DTYPES:
        raise TypeError(f"numpy cannot convert to {describe_value(dtype)} here")
    return value.astype(name)


#: Attributes of numpy scalars (`np.float32(2.0).dtype`, `np.sqrt(d).astype(np.float32)`).
_SCALAR_ATTRIBUTES: dict[str, Callable[[Any], Any]] = {
    "dtype": lambda v: DType(str(v.dtype)),
    "shape": lambda v: (), "ndim": lambda v: 0, "size": lambda v: 1,
    "item": lambda v: StaticBuiltin("item", lambda: v.item()),
    "astype": lambda v: StaticBuiltin("astype", lambda dtype: _scalar_astype(v, dtype)),
}


class ExpressionsMixin:
    """Expressions: static evaluation, or table operations on arrays."""

    # ---------------------------------------------------------------- size limits

    def _static_result(self: Resolver, value: Any, span: Span, read: int = 0, built: bool = True) -> Any:
        """The one check on what a static operation built: `value` within the size limits.

        Every static operator, builtin and method passes its result here; the work it
        did (`read` units, plus the size of the result when it `built` it) is charged to
        the step budget, so no model file can make the build run long or exhaust memory
        with big values.
        """
        self._charge(read + (static_size(value) if built else 0), span)
        problem = too_large(value)
        if problem:
            raise self.error("AOT330", f"this builds a static value too large for the build: "
                             f"{problem}", span, hint="static values are computed at build "
                             "time; keep them small (shapes, sizes, names, flags)")
        return value

    def _charge(self: Resolver, work: int, span: Span) -> None:
        """Spend build-time steps on `work` units (also when the operation then fails: an
        error inside a loop does not stop the loop)."""
        if work >= WORK_PER_STEP:
            self.steps += work // WORK_PER_STEP - 1
            self._step(span)

    def _deep_read(self: Resolver, values: Any, span: Span, what: str) -> int:
        """Units an operation that reads values whole (compares, formats, sorts) reads."""
        total = 0
        for v in values:
            if isinstance(v, (str, list, tuple, dict)):
                total += deep_size(v, MAX_STATIC_LEN - total)
                if total > MAX_STATIC_LEN:
                    self._charge(total, span)
                    raise self.error("AOT330", f"{what} would read more than "
                                     f"{MAX_STATIC_LEN:,} items and characters at build time",
                                     span, hint="static values are computed at build time; "
                                     "keep them small (shapes, sizes, names, flags)")
        return total

    # ---------------------------------------------------------------- expressions

    def eval(self: Resolver, expr: ir.Expr, frame: Frame) -> Any:
        method = _EVAL.get(type(expr))
        if method is None:  # the method of each IR node type, looked up once
            method = _EVAL[type(expr)] = getattr(type(self), "_eval_" + type(expr).__name__)
        return method(self, expr, frame)

    def _eval_Constant(self: Resolver, expr: ir.Constant, frame: Frame) -> Any:
        return expr.value

    def _eval_Name(self: Resolver, expr: ir.Name, frame: Frame) -> Any:
        found, value = frame.env.lookup(expr.id)
        if found:
            if isinstance(value, ImportTimeArray):
                return self._import_time_read(value, expr.span, frame)
            return value
        if expr.id in namespaces.BUILTINS:
            return namespaces.BUILTINS[expr.id]
        if expr.id == "hash":
            raise self.error("AOT105", "hash() is not available in model files: Python's hash "
                             "of a string or tuple differs between processes "
                             "(PYTHONHASHSEED), so no build could reproduce it", expr.span,
                             hint="use a fixed int (a hyperparameter) where a seed is needed")
        if expr.id == "super":  # bound in the methods of module subclasses only
            raise self.error("AOT105", "super() is available only in the methods of a module "
                             "that subclasses another module of the model files", expr.span,
                             hint="call the layer or module itself, e.g. nn.Dense(x, 8)")
        if expr.id in safety.FORBIDDEN_NAMES or safety.is_dunder(expr.id):
            raise self.error("AOT105", f"'{expr.id}' is not available in model files: model "
                             "files are data, never executed", expr.span)
        module = module_of(frame.env)
        if module is not None and module.defining(expr.id):
            raise self.error("AOT340", f"name '{expr.id}' is used by its own definition (a "
                             "circular definition at the top level)", expr.span)
        raise self.error("AOT340", f"name '{expr.id}' is not defined", expr.span)

    def _import_time_read(self: Resolver, value: ImportTimeArray, span: Span,
                          frame: Frame) -> Any:
        """A name a top-level array expression binds (`KEY = jax.random.PRNGKey(0)`): inside
        a function, the expression evaluated again in its file's names, its operations
        emitted here; read by another top-level statement, what it gives there."""
        if frame.fn is None and self.import_time:
            raise ImportTimeSignal()  # `SUB = jax.random.split(KEY)`: deferred in turn
        if value in self.import_time_reads:
            raise self.error("AOT340", f"'{value.name}' is computed from its own earlier "
                             "array value at the top level of the file", value.span,
                             hint=f"give the new value another name than '{value.name}'")
        self.import_time_reads.append(value)
        self.calls.append((f"{value.name}, read here", span))
        outer, self.array_read_at_top = self.array_read_at_top, \
            value.name if frame.fn is None else None
        try:
            at = Frame(value.env, frame.fn, None, None)
            result = self.eval(value.expr, at)
            if value.target is None:
                return result
            return self._unpack(result, len(value.target.elts), value.target, at)[value.item]
        finally:
            self.array_read_at_top = outer
            self.calls.pop()
            self.import_time_reads.pop()

    def _top_level_array_hint(self: Resolver) -> str | None:
        """Where an array operation failing outside functions could run instead, when a
        top-level statement reads a top-level array (`M.partial(scale=SCALE)`)."""
        name = self.array_read_at_top
        if name is None:
            return None
        return (f"'{name}' is an array, which aotflax computes inside each function that "
                f"reads it: read {name} in the module's apply (or a function it calls) "
                "rather than where the file's top level runs")

    def _class_value(self: Resolver, found: Any, span: Span, frame: Frame) -> Any:
        """A class attribute read (`self.SCALE`, `Block.SCALE`): an array the class body
        computes is computed here."""
        if isinstance(found, ImportTimeArray):
            return self._import_time_read(found, span, frame)
        return found

    def _eval_FString(self: Resolver, expr: ir.FString, frame: Frame) -> Any:
        out = []
        for part in expr.parts:
            if isinstance(part, str):
                out.append(part)
                continue
            value = self.eval(part.value, frame)
            if not is_static(value):
                raise self.error("AOT341", "f-strings may only format static values, got "
                                 f"{describe_value(value)}", part.span,
                                 hint="format its shape or dtype instead, e.g. {x.shape[-1]}")
            self._deep_read([value], part.span, "formatting this value")
            if part.conversion == "r":
                value = repr(value)
            problem = safety.spec_problem(part.format_spec or "")
            if problem:
                raise self.error("AOT341", f"f-string: {problem}", part.span)
            try:
                out.append(format(value, part.format_spec or ""))
            except (ValueError, TypeError) as e:
                raise self.error("AOT341", f"bad format: {e}", part.span) from None
            if sum(map(len, out)) > MAX_STATIC_LEN:
                return self._static_result("".join(out), expr.span)  # reports the size
        return self._static_result("".join(out), expr.span)

    def _eval_TupleExpr(self: Resolver, expr: ir.TupleExpr, frame: Frame) -> Any:
        return self._static_result(tuple(self._elements(expr.elts, frame)), expr.span)

    def _eval_ListExpr(self: Resolver, expr: ir.ListExpr, frame: Frame) -> Any:
        return self._static_result(list(self._elements(expr.elts, frame)), expr.span)

    def _elements(self: Resolver, elts: tuple[ir.Expr, ...], frame: Frame) -> list[Any]:
        out: list[Any] = []
        for e in elts:
            if isinstance(e, ir.Starred):
                out.extend(self._iterate(self.eval(e.value, frame), e.span))
            else:
                out.append(self.eval(e, frame))
        return out

    def _eval_DictExpr(self: Resolver, expr: ir.DictExpr, frame: Frame) -> Any:
        out: dict[Any, Any] = {}
        for k, v in zip(expr.keys, expr.values):
            if k is None:
                inner = self.eval(v, frame)
                if isinstance(inner, Poison):
                    raise Abort()
                if isinstance(inner, ConfigValue):
                    inner = dict(inner.fields)
                if not isinstance(inner, dict):
                    raise self.error("AOT347", f"** needs a dict, got {describe_value(inner)}",
                                     v.span)
                out.update(inner)
                self._static_result(out, expr.span, read=len(inner))
            else:
                key = self.eval(k, frame)
                if not is_static(key):
                    raise self.error("AOT342", f"dict keys must be static, got "
                                     f"{describe_value(key)}", k.span)
                try:
                    out[key] = self.eval(v, frame)
                except TypeError as e:  # an unhashable key, such as a list
                    raise self.error("AOT342", f"dict keys must be hashable: {e}",
                                     k.span) from None
        return self._static_result(out, expr.span)

    def _eval_Slice(self: Resolver, expr: ir.Slice, frame: Frame) -> Any:
        parts = [self.eval(p, frame) if p is not None else None
                 for p in (expr.lower, expr.upper, expr.step)]
        for p, node in zip(parts, (expr.lower, expr.upper, expr.step)):
            if p is not None and not (isinstance(p, int) and not isinstance(p, bool)):
                raise self.error("AOT343", f"slice bounds must be static ints, got "
                                 f"{describe_value(p)}", node.span if node else expr.span,
                                 hint="use jax.lax.dynamic_slice for array-valued offsets")
        return slice(*parts)

    def _eval_IfExp(self: Resolver, expr: ir.IfExp, frame: Frame) -> Any:
        return self.eval(expr.body if self._truth(expr.test, frame) else expr.orelse, frame)

    def _eval_BoolOp(self: Resolver, expr: ir.BoolOp, frame: Frame) -> Any:
        value: Any = None
        for i, v in enumerate(expr.values):
            value = self.eval(v, frame)
            if i == len(expr.values) - 1:
                return value  # the last operand is the result, whatever it is, as in Python
            truth = static_truth(value)
            if truth is None:
                raise self.error("AOT335", f"'{expr.op}' needs static operands; use "
                                 "jnp.logical_and / jnp.logical_or for arrays", v.span)
            if (expr.op == "and") != truth:
                return value
        return value

    def _eval_UnaryOp(self: Resolver, expr: ir.UnaryOp, frame: Frame) -> Any:
        return self._unaryop(expr.op, self.eval(expr.operand, frame), expr.span, frame)

    def _unaryop(self: Resolver, op: str, value: Any, span: Span, frame: Frame) -> Any:
        """`-x`, `+x`, `~x`, `not x` (also reached through `operator.neg` and friends)."""
        if isinstance(value, Poison):
            raise Abort()
        if op == "not":
            if isinstance(value, Tensor):
                raise self.error("AOT335", "'not' needs a static operand; use "
                                 "jnp.logical_not for arrays", span)
            return not value
        if isinstance(value, HostArray):
            return self._host_operator(op, [value], span, frame)
        if isinstance(value, Tensor):
            name = {"-": "neg", "+": "pos", "~": "invert"}[op]
            return self._call_entry(REGISTRY.lookup("operator", name), f"'{op}'", [value],
                                    {}, span, frame)
        unary: dict[str, Callable[[Any], Any]] = {
            "-": operator.neg, "+": operator.pos, "~": operator.invert}
        try:
            return self._static_result(unary[op](value), span)
        except TypeError:
            raise self.error("AOT344", f"bad operand for unary {op}: "
                             f"{describe_value(value)}", span) from None

    def _eval_BinOp(self: Resolver, expr: ir.BinOp, frame: Frame) -> Any:
        left = self.eval(expr.left, frame)
        right = self.eval(expr.right, frame)
        return self._binop(expr.op, left, right, expr.span, frame)

    def _binop(self: Resolver, op: str, left: Any, right: Any, span: Span, frame: Frame) -> Any:
        if isinstance(left, Poison) or isinstance(right, Poison):
            raise Abort()
        self._check_not_opaque((left, right), span)
        if involves_host(left, right):
            return self._host_operator(op, [left, right], span, frame)
        if isinstance(left, HostArray) or isinstance(right, HostArray):
            # a numpy array meets an array of the computation: jnp's operator, as under Flax
            left, right = self._to_device(left, frame, span), self._to_device(right, frame, span)
        if isinstance(left, Tensor) or isinstance(right, Tensor):
            name = BINOP_NAMES.get(op)
            if name is None or not (array_like(left) and array_like(right)):
                raise self.error("AOT344", f"unsupported operand types for {op}: "
                                 f"{describe_value(left)} and {describe_value(right)}", span)
            return self._call_entry(REGISTRY.lookup("operator", name), f"'{op}'", [left, right],
                                    {}, span, frame)
        too_big = is_too_big(op, left, right)
        if too_big:
            raise self.error("AOT344", f"the static value {too_big} is too large to compute at "
                             "build time", span)
        read = static_size(left) + static_size(right)
        if op == "%" and isinstance(left, str):  # formats its operands whole
            read += self._deep_read([right], span, "formatting these values")
        elif op in ("*", "//", "%") and isinstance(left, int) and isinstance(right, int):
            read = (static_size(left) + 1) * (static_size(right) + 1)  # long arithmetic
        try:
            return self._static_result(STATIC_BINOPS[op](left, right), span, read)
        except ZeroDivisionError:
            raise self.error("AOT344", "division by zero in a static expression", span) from None
        except (TypeError, ValueError, OverflowError) as e:
            raise self.error("AOT344", f"bad operands for {op}: {describe_value(left)} and "
                             f"{describe_value(right)} ({e})", span) from None

    def _eval_Compare(self: Resolver, expr: ir.Compare, frame: Frame) -> Any:
        left = self.eval(expr.left, frame)
        result: Any = True
        for op, comp in zip(expr.ops, expr.comparators):
            right = self.eval(comp, frame)
            if isinstance(left, Poison) or isinstance(right, Poison):
                raise Abort()
            if op in ("is", "is not") and (isinstance(left, Tensor) or isinstance(right, Tensor)):
                # identity is static: an array is never None, and is itself only
                ok = (left is right) == (op == "is")
            elif isinstance(left, Tensor) or isinstance(right, Tensor):
                if len(expr.ops) > 1 or op in ("in", "not in"):
                    raise self.error("AOT344", f"'{op}' is not supported on arrays", expr.span)
                return self._binop(op, left, right, expr.span, frame)
            else:
                if op in _READING_COMPARE:
                    self._static_result(None, expr.span, self._deep_read(
                        [left, right], expr.span, f"comparing with '{op}'"))
                try:
                    ok = STATIC_COMPARE[op](left, right)
                except TypeError as e:
                    raise self.error("AOT344", f"cannot compare: {e}", expr.span) from None
            if not ok:
                return False
            result = ok
            left = right
        return bool(result)

    def _eval_Subscript(self: Resolver, expr: ir.Subscript, frame: Frame) -> Any:
        value = self.eval(expr.value, frame)
        index = self.eval(expr.index, frame)
        if isinstance(value, Poison) or contains_poison(index):
            raise Abort()
        self._check_not_opaque((value, index), expr.span)
        if isinstance(value, SpecDType):
            return self._spec(value, index, expr)
        if isinstance(value, HostArray):
            return self._host_getitem(value, index, expr.span, frame)
        if isinstance(value, AtIndex) and value.index is NO_INDEX:
            return AtIndex(value.operand, index)  # x.at[index], before .set(...) and friends
        if isinstance(value, IndexMaker):
            return index  # jax.ops.index[:, 0], np.s_[1:]
        if isinstance(value, Tensor):
            return self._call_entry(REGISTRY.lookup("operator", "getitem"), "indexing",
                                    [value, index], {}, expr.span, frame)
        if not is_static(index):
            raise self.error("AOT345", f"indices of static values must be static, got "
                             f"{describe_value(index)} to index {describe_value(value)}",
                             expr.span)
        try:
            read = self._deep_read([index], expr.span, "this key") if isinstance(
                value, dict) else 0  # a key is hashed whole
            return self._static_result(value[index], expr.span, read) if isinstance(
                index, slice) or read else value[index]
        except (IndexError, KeyError, TypeError, ValueError) as e:
            raise self.error("AOT345", f"cannot index {describe_value(value)} with "
                             f"{shown(index)}: {e}", expr.span) from None

    def _spec(self: Resolver, value: SpecDType, index: Any, expr: ir.Subscript) -> Spec:
        dims = index if isinstance(index, tuple) else (index,)
        for d in dims:
            if isinstance(d, bool) or not isinstance(d, (int, str)) or (isinstance(d, int)
                                                                        and d < 0):
                raise self.error("AOT410", f"input dimensions must be non-negative ints or "
                                 f"symbolic names, got {shown(d)}", expr.index.span)
        try:
            check_shape([d for d in dims if isinstance(d, int)], "input")
        except CallError as e:
            raise self.error("AOT410", e.message, expr.index.span) from None
        return Spec(tuple(dims), value.dtype, expr.span)

    def _function_name_of(self: Resolver, value: Any, span: Span) -> str:
        """`f.__name__` of a function of the model file, of a library function or of a
        module class, as Python gives it."""
        if isinstance(value, Poison):
            raise Abort()
        if isinstance(value, Closure):
            return value.python_name
        if isinstance(value, OpRef):
            return value.written.rsplit(".", 1)[-1]
        if isinstance(value, StaticBuiltin):
            return value.name
        if isinstance(value, ModuleRef):
            return value.class_name
        raise self.error("AOT346", f"{describe_value(value)} has no attribute '__name__'", span)

    def _eval_Attribute(self: Resolver, expr: ir.Attribute, frame: Frame) -> Any:
        value = self.eval(expr.value, frame)
        return self._attribute_of(value, expr.attr, expr.span, frame)

    def _attribute_of(self: Resolver, value: Any, attr: str, span: Span, frame: Frame) -> Any:
        """`value.attr`, written out or named by `getattr(value, "attr")`."""
        if attr == "__name__":
            return self._function_name_of(value, span)
        if attr.startswith("__") and not (attr == "__init__" and isinstance(value, SuperObject)):
            raise self.error("AOT346", f"dunder attribute '{attr}' is not available in "
                             "model files", span)
        if isinstance(value, HostArray):
            return self._host_attribute(value, attr, span, frame)
        if isinstance(value, Tensor) and attr == "T":
            fn, _ = self._need_module_frame(frame, span, "x.T")
            out = Tensor(value.shape[::-1], value.dtype, value.weak)
            fn.emit("ops/call.j2", {"call": Code.of(value, ".T")}, (out,), span, "t")
            return out
        if isinstance(value, SelfValue):
            return self._self_attribute(value, attr, span, frame)
        if isinstance(value, (ConfigValue, Record, RecordTuple, RecordClass, SuperObject)):
            return self._record_attribute(value, attr, span, frame)
        if isinstance(value, (EnumClass, EnumMember)):
            return self._enum_attribute(value, attr, span)
        # `consts.KEY` (an array of another file's top level), `Block.SCALE` (of a class body)
        return self._class_value(self._attribute(value, attr, span), span, frame)

    def _attribute(self: Resolver, value: Any, attr: str, span: Span) -> Any:
        if isinstance(value, Poison):
            raise Abort()
        if isinstance(value, Opaque):
            return value.attribute(attr)
        if isinstance(value, ModuleValue):
            return self._module_attribute(value, attr, span)
        if isinstance(value, Namespace):
            if attr in value.members:
                return value.members[attr]
            raise self.error("AOT346", f"{value.name}.{attr} is not supported by aotflax",
                             span, hint="see `aotflax --list-ops` for the supported operations")
        if isinstance(value, Tensor):
            # sizes remember that they are read from `value` (see `sizes`)
            if attr == "shape":
                return shape_of(value, value.shape)
            if attr == "ndim":
                return read_of(value, value.ndim, "ndim")
            if attr == "dtype":
                return DType(value.dtype)
            if attr == "size":
                return read_of(value, size(value.shape), "size")
            if attr == "T":
                return BoundMethod(value, "T", span)
            if attr == "at":
                return AtIndex(value, NO_INDEX)
            if REGISTRY.lookup("array", attr) is not None:
                return BoundMethod(value, attr, span)
            raise self.error("AOT346", f"arrays have no supported attribute '{attr}'", span)
        if isinstance(value, ModuleRef) and isinstance(value.module, UserModule):
            if attr in value.module.attributes:
                return value.module.attributes[attr]  # `Block.FEATURES`: a class attribute
            static = value.module.static_method(attr)
            if static is not None:
                self._check_method_usable(value.module, attr, span)
                return static  # `Block.helper(x)`: a @staticmethod
            made = value.module.class_method(attr, value)
            if made is not None:
                return made  # `Block.make(4)`: a @classmethod, `cls` the class read
        if isinstance(value, (ModuleRef, SharedModule, SelfValue, SuperLayer, SuperModule,
                              Traversal, list, dict, str, CustomJvp, CustomVjp)):
            return BoundMethod(value, attr, span)
        if isinstance(value, DType) and attr in ("itemsize", "name"):
            return dt.itemsize(value.name) if attr == "itemsize" else value.name
        if isinstance(value, DType) and attr in ("type", "dtype"):
            # `x.dtype.type`: numpy's scalar type of the dtype; `jnp.float32.dtype`: the dtype
            return DType(value.name, host=attr == "type")
        if isinstance(value, StateVariable) and attr == "value":
            return value.read(span)
        if isinstance(value, (AttentionCache, CacheEntry)):
            return self._cache_attribute(value, attr, span)
        if isinstance(value, AtIndex):
            return self._at_method(value, attr, span)
        if is_numpy_scalar(value) and attr in _SCALAR_ATTRIBUTES:
            return _SCALAR_ATTRIBUTES[attr](value)
        raise self.error("AOT346", f"{describe_value(value)} has no attribute '{attr}'", span)

    def _at_method(self: Resolver, value: AtIndex, attr: str, span: Span) -> BoundMethod:
        """`x.at[i].set`: a method of the table's `at` namespace on an indexed `x.at`."""
        methods = ", ".join(sorted(REGISTRY.members("at")))
        if value.index is NO_INDEX:
            raise self.error("AOT346", f"x.at needs an index before .{attr}: write "
                             f"x.at[index].{attr}(...)", span)
        if REGISTRY.lookup("at", attr) is None:
            raise self.error("AOT346", f"x.at[...] has no supported method '{attr}'", span,
                             hint=f"supported: {methods}")
        return BoundMethod(value, attr, span)

    def _eval_ListComp(self: Resolver, expr: ir.ListComp, frame: Frame) -> Any:
        out: list[Any] = []
        self._comprehension(expr.generators, 0, Frame(Env(frame.env), frame.fn, frame.scope,
                                                       frame.module),
                            lambda f: out.append(self.eval(expr.elt, f)))
        return self._static_result(out if expr.kind == "list" else tuple(out), expr.span)

    def _eval_DictComp(self: Resolver, expr: ir.DictComp, frame: Frame) -> Any:
        out: dict[Any, Any] = {}

        def add(f: Frame) -> None:
            out[self.eval(expr.key, f)] = self.eval(expr.value, f)

        self._comprehension(expr.generators, 0, Frame(Env(frame.env), frame.fn, frame.scope,
                                                       frame.module), add)
        return self._static_result(out, expr.span)

    def _comprehension(self: Resolver, gens: tuple[ir.Comprehension, ...], i: int, frame: Frame,
                       body) -> None:
        if i == len(gens):
            body(frame)
            return
        gen = gens[i]
        for item in self._iterate(self.eval(gen.iter, frame), gen.iter.span):
            self._step(gen.span)
            self._assign(gen.target, item, frame)
            if all(self._truth(c, frame) for c in gen.ifs):
                self._comprehension(gens, i + 1, frame, body)

    def _eval_Lambda(self: Resolver, expr: ir.Lambda, frame: Frame) -> Any:
        defaults = self._defaults(expr.params, frame)
        body = (ir.Return(expr.body, expr.body.span),)
        return Closure("<lambda>", expr.params, body, frame.env, expr.span, None, defaults)

    def _eval_Starred(self: Resolver, expr: ir.Starred, frame: Frame) -> Any:
        raise self.error("AOT103", "starred expression not allowed here", expr.span)
