"""Static records: configs, dataclasses, namedtuples; `functools.partial`; decorators.

Hyperparameters of real model code often arrive in a config object: an
`ml_collections.ConfigDict` built by a `get_config()` function (in a sibling file),
a `@dataclasses.dataclass` of static fields, or a namedtuple.  They are static
values of the interpreter (values.py: `ConfigValue`, `Record`, `RecordTuple`):
compared by content when a module is specialized, shown in docstrings, never
emitted as code.  `ml_collections` itself is never imported: the static language
implements the part of it model code uses.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, Callable

from .. import dtypes as dt
from .. import ir, namespaces
from ..diagnostics import Diagnostic, Note, Reporter, Span
from ..ops import CallError, convolution
from ..ops.registry import Signature
from ..program import Tensor
from ..values import (
    BFLOAT16_FINFO,
    DTYPE_KINDS,
    FINFO,
    IINFO,
    NO_DEFAULT,
    BoundMethod,
    Closure,
    ConfigValue,
    DType,
    DTypeKind,
    Env,
    FieldDefault,
    ModuleValue,
    Partial,
    Poison,
    Record,
    RecordClass,
    RecordTuple,
    StaticError,
    StaticFunction,
    StaticIterator,
    SuperFunction,
    SuperObject,
    describe_value,
    is_static,
    is_subdtype,
)
from .base import Abort, Frame
from .imports import builtin_decorator

if TYPE_CHECKING:
    from .core import Resolver

#: Functions that make a `lax.ConvDimensionNumbers` (flax.nn's private helper too: model files
#: wrote their own convolutions with it).
CONV_NUMBERS = {"jax.lax.conv_dimension_numbers": convolution.lax_conv_numbers,
                "flax.nn.linear._conv_dimension_numbers": convolution.flax_conv_numbers}

#: Methods of `ConfigDict` the static language implements.
CONFIG_METHODS = frozenset({"get", "items", "keys", "values", "update", "lock", "unlock",
                            "is_locked", "to_dict", "copy_and_resolve_references", "copy"})


class RecordsMixin:
    """Configs, dataclasses, namedtuples, `functools.partial` and decorators."""

    # ---------------------------------------------------------------- library functions

    def _type_info(self: Resolver, floating: bool, args: list, kwargs: dict, span: Span
                   ) -> RecordTuple:
        """`jnp.finfo(dtype)` / `jnp.iinfo(dtype)` (of a dtype, its name, or an array):
        numpy's numbers for it, computed at build time (numpy scalars of the dtype)."""
        written = "jnp.finfo" if floating else "jnp.iinfo"
        if len(args) != 1 or kwargs:
            raise self.error("AOT301", f"{written}() takes one dtype", span)
        value = args[0]
        dtype = value.name if isinstance(value, DType) else value.dtype if isinstance(
            value, Tensor) else value if isinstance(value, str) else None
        wanted = dt.is_inexact if floating else dt.is_integer
        if dtype not in dt.ALL_DTYPES or not wanted(dtype) or dtype.startswith("complex"):
            kind = "a floating" if floating else "an integer"
            raise self.error("AOT203", f"{written} needs {kind} dtype, got "
                             f"{describe_value(value)}", span)
        import numpy as np

        if not floating:
            info = np.iinfo(np.dtype(dtype))
            return RecordTuple.make(IINFO, [info.bits, int(info.min), int(info.max),
                                            DType(dtype)])
        if dtype == "bfloat16":
            return RecordTuple.make(FINFO, [*BFLOAT16_FINFO, DType(dtype)])
        f = np.finfo(np.dtype(dtype))
        return RecordTuple.make(FINFO, [f.bits, f.eps, f.max, f.min, f.tiny, f.smallest_normal,
                                        f.resolution, f.precision, DType(dtype)])

    def _getattr(self: Resolver, has: bool, args: list, kwargs: dict, span: Span,
                 frame: Frame) -> Any:
        """`getattr(obj, name[, default])` and `hasattr(obj, name)` for a static,
        non-dunder name: the attribute as `obj.name` written out gives it.  A default (or
        hasattr) turns a missing attribute into the default (False); the lookup's error is
        then not reported."""
        written = "hasattr" if has else "getattr"
        if kwargs or not (2 <= len(args) <= (2 if has else 3)):
            raise self.error("AOT301", f"{written}() takes an object and an attribute name"
                             + ("" if has else ", and a default"), span)
        value, attr = args[0], self._attribute_name(written, args[1], span)
        if not has and len(args) == 2:
            return self._attribute_of(value, attr, span, frame)
        found, result = self._quietly(lambda: self._attribute_of(value, attr, span, frame))
        if has:
            return found
        return result if found else args[2]

    def _attribute_name(self: Resolver, written: str, attr: Any, span: Span) -> str:
        """The name `getattr` / `hasattr` / `setattr` was given: a static identifier that is
        no dunder (Python's internals stay out of reach, as they do written out)."""
        if not isinstance(attr, str) or not attr.isidentifier() or attr.startswith("__"):
            raise self.error("AOT105" if isinstance(attr, str) and attr.startswith("__")
                             else "AOT203", f"{written}() needs a static attribute name, not a "
                             f"dunder, got {describe_value(attr)}", span)
        return attr

    def _quietly(self: Resolver, attempt: Callable[[], Any]) -> tuple[bool, Any]:
        """`attempt()`, with the errors it would report dropped: (whether it succeeded, its
        result)."""
        reporter, errors, reported = self.reporter, self.errors, set(self._reported)
        self.reporter = Reporter()
        try:
            return True, attempt()
        except Abort:
            return False, None
        finally:
            self.reporter, self.errors, self._reported = reporter, errors, reported

    def _issubdtype(self: Resolver, args: list, kwargs: dict, span: Span) -> bool:
        """`jnp.issubdtype(x.dtype, jnp.floating)`: decided at build time."""
        if len(args) != 2 or kwargs:
            raise self.error("AOT301", "jnp.issubdtype() takes a dtype and a dtype or dtype "
                             "class", span)
        value, kind = args
        dtype = value.name if isinstance(value, (DType, DTypeKind)) else value.dtype \
            if isinstance(value, Tensor) else None
        if isinstance(kind, str) and kind in dt.ALL_DTYPES:
            kind = DType(kind)
        if dtype is None or not isinstance(kind, (DType, DTypeKind)):
            raise self.error("AOT203", f"jnp.issubdtype needs dtypes, got "
                             f"{describe_value(value)} and {describe_value(kind)}", span)
        if isinstance(value, DTypeKind):  # a class under a class: numpy's hierarchy
            return isinstance(kind, DTypeKind) and (kind.name == "generic" or set(
                DTYPE_KINDS[value.name] or ()) <= set(DTYPE_KINDS[kind.name] or ()))
        return is_subdtype(dtype, kind)

    def _operator(self: Resolver, name: str, args: list, kwargs: dict, expr: ir.Call,
                  frame: Frame) -> Any:
        """`operator.mul(a, b)` (`functools.reduce(operator.mul, shape)`): the expression it
        stands for, evaluated as if written out (static values, or arrays)."""
        unary = name in namespaces.OPERATOR_UNARY or name == "truth"
        if kwargs or len(args) != (1 if unary else 2):
            raise self.error("AOT304", f"operator.{name} takes {1 if unary else 2} positional "
                             f"argument{'' if unary else 's'}, got {len(args)}", expr.span)
        span = expr.span
        env = Env(frame.env)
        names = [ir.Name(f"<{i}>", span) for i in range(len(args))]
        for n, value in zip(names, args):
            env.set(n.id, value)
        node: ir.Expr
        if name in namespaces.OPERATOR_SEQUENCE:
            if not all(isinstance(a, (list, tuple, str)) for a in args):
                raise self.error("AOT344", f"operator.{name} joins sequences, got "
                                 f"{describe_value(args[0])} and {describe_value(args[1])}",
                                 span, hint="operator.add adds numbers and arrays")
            node = ir.BinOp(names[0], "+", names[1], span)
        elif name in namespaces.OPERATOR_INPLACE:
            node = ir.BinOp(names[0], namespaces.OPERATOR_INPLACE[name], names[1], span)
        elif name in namespaces.OPERATOR_BINARY:
            node = ir.BinOp(names[0], namespaces.OPERATOR_BINARY[name], names[1], span)
        elif name == "contains":  # contains(a, b) is `b in a`
            node = ir.Compare(names[1], ("in",), (names[0],), span)
        elif name in namespaces.OPERATOR_COMPARE:
            node = ir.Compare(names[0], (namespaces.OPERATOR_COMPARE[name],), (names[1],), span)
        elif name == "getitem":
            node = ir.Subscript(names[0], names[1], span)
        elif name == "truth":
            node = ir.UnaryOp("not", ir.UnaryOp("not", names[0], span), span)
        else:
            node = ir.UnaryOp(namespaces.OPERATOR_UNARY[name], names[0], span)
        return self.eval(node, dataclasses.replace(frame, env=env))

    def _call_static_function(self: Resolver, func: StaticFunction, args: list, kwargs: dict,
                              expr: ir.Call, frame: Frame) -> Any:
        name, span = func.name, expr.span
        if name == "functools.partial":
            if not args:
                raise self.error("AOT301", "functools.partial needs a function to call", span)
            inner = args[0]
            if isinstance(inner, Partial):  # partial of a partial flattens, as Python's does
                return Partial(inner.func, inner.args + tuple(args[1:]),
                               tuple({**dict(inner.kwargs), **kwargs}.items()))
            return Partial(inner, tuple(args[1:]), tuple(kwargs.items()))
        if name == "functools.reduce":
            return self._reduce(args, kwargs, expr, frame)
        if name.startswith("einops."):
            return self._einops(name[len("einops."):], args, kwargs, span, frame)
        if name.startswith("chex."):  # checked now; nothing is emitted
            self._chex(name[len("chex."):], args, kwargs, span)
            return None
        if name.startswith("logging."):  # ran while JAX traced, never in the program
            return None
        if name == "builtins.locals":
            if args or kwargs:
                raise self.error("AOT301", "locals() takes no arguments", span)
            return dict(frame.env.vars)  # the function's own names (its closure's are not)
        if name == "builtins.setattr":
            if kwargs or len(args) != 3:
                raise self.error("AOT301", "setattr() takes an object, a name and a value",
                                 span)
            self._set_attribute(args[0], self._attribute_name("setattr", args[1], span),
                                args[2], span, frame)
            return None
        if name in ("builtins.getattr", "builtins.hasattr"):
            return self._getattr(name == "builtins.hasattr", args, kwargs, span, frame)
        if name == "numpy.issubdtype":
            return self._issubdtype(args, kwargs, span)
        if name in ("numpy.finfo", "numpy.iinfo"):
            return self._type_info(name == "numpy.finfo", args, kwargs, span)
        if name.startswith("operator."):
            return self._operator(name.removeprefix("operator."), args, kwargs, expr, frame)
        if name == "jax.jit":
            return self._jit(args, kwargs, span)
        if name in ("gin.configurable", "gin.external_configurable"):
            return self._gin(name, args, kwargs, span)
        if name == "object.__init__":
            if args or kwargs:
                raise self.error("AOT301", "object.__init__() takes no arguments (no base "
                                 "class defines __init__)", span)
            return None
        if name == "abc.abstractmethod" and len(args) == 1 and not kwargs:
            return args[0]
        if name == "jax.lax.tie_in":
            # an identity since JAX's omnistaging (2020), removed since: its second argument
            try:
                return Signature.parse("x, y").bind(name, args, kwargs)["y"]
            except CallError as e:
                raise self.error(e.code, e.message, span, hint=e.hint) from None
        if name == "super":
            return self._super(args, kwargs, span, frame)
        if name.startswith("numpy.random."):
            return self._numpy_random(name[len("numpy.random."):], args, kwargs, span, frame)
        if name in ("builtins.iter", "builtins.next"):
            return self._iterator_builtin(name[len("builtins."):], args, kwargs, span)
        if name == "flax.nn.normalization._absolute_dims":
            return self._absolute_dims(args, kwargs, span)
        if name in CONV_NUMBERS:
            try:
                return CONV_NUMBERS[name](args, kwargs)
            except CallError as e:
                raise self.error(e.code, e.message, span, hint=e.hint) from None
        if name in ("ml_collections.ConfigDict", "ml_collections.FrozenConfigDict"):
            return self._config(args, kwargs, span, frozen=name.endswith("FrozenConfigDict"))
        if name == "dataclasses.dataclass":
            if args and len(args) == 1 and not kwargs:
                raise self.error("AOT325", "@dataclass applies to a class statement", span)
            return StaticFunction("dataclasses.dataclass(frozen)" if kwargs.get("frozen")
                                  else "dataclasses.dataclass()")
        if name == "dataclasses.field":
            return self._field(args, kwargs, span)
        if name == "flax.struct.field":  # whether jax traces it: nothing to a static value
            kwargs.pop("pytree_node", None)
            return self._field(args, kwargs, span)
        if name == "attr.s":
            return self._attrs_decorator(args, kwargs, span)
        if name == "attr.ib":
            return self._attrib(args, kwargs, span)
        if name in ("dataclasses.replace", "dataclasses.asdict", "dataclasses.astuple",
                    "dataclasses.is_dataclass"):
            return self._dataclass_function(name, args, kwargs, span, frame)
        if name in ("collections.namedtuple", "typing.NamedTuple"):
            return self._namedtuple(name, args, kwargs, span)
        raise self.error("AOT348", f"{name}(...) cannot be called here", span)

    def _iterator_builtin(self: Resolver, name: str, args: list, kwargs: dict,
                          span: Span) -> Any:
        """`iter(seq)` (of an iterator: itself) and `next(it[, default])`."""
        if kwargs or not (len(args) == 1 or name == "next" and len(args) == 2):
            takes = "an iterator and an optional default" if name == "next" else \
                "an iterable (the callable form is not supported)"
            raise self.error("AOT301", f"{name}() takes {takes}", span)
        if name == "iter":
            it = args[0]
            return it if isinstance(it, StaticIterator) else StaticIterator(
                list(self._iterate(it, span)))
        if not isinstance(args[0], StaticIterator):
            raise self.error("AOT349", f"next() takes an iterator, got "
                             f"{describe_value(args[0])}", span, hint="make one with iter(...)")
        try:
            return args[0].take()
        except IndexError:
            if len(args) == 2:
                return args[1]
            raise self.error("AOT349", "next() of an exhausted iterator (StopIteration)",
                             span) from None

    def _absolute_dims(self: Resolver, args: list, kwargs: dict, span: Span) -> tuple:
        """flax.nn's `normalization._absolute_dims(rank, dims)`: negative axes counted from
        the end, as `tuple(rank + d if d < 0 else d for d in dims)`."""
        name = "nn.normalization._absolute_dims"
        bound = self._bind_signature("rank, dims", name, args, kwargs, span)
        rank, dims = bound["rank"], bound["dims"]
        if not (isinstance(rank, int) and not isinstance(rank, bool) and isinstance(
                dims, (tuple, list)) and all(isinstance(d, int) and not isinstance(d, bool)
                                             for d in dims)):
            raise self.error("AOT203", f"{name} takes a rank and a tuple of axes (ints), got "
                             f"{describe_value(rank)} and {describe_value(dims)}", span)
        return tuple(rank + d if d < 0 else d for d in dims)

    def _jit(self: Resolver, args: list, kwargs: dict, span: Span) -> Any:
        """`jax.jit(f)` inside a model is `f`: the model is traced as a whole anyway."""
        unknown = set(kwargs) - {"static_argnums", "static_argnames", "donate_argnums",
                                 "donate_argnames", "inline", "keep_unused"}
        if unknown:
            raise self.error("AOT302", f"jax.jit got an unexpected keyword argument "
                             f"'{sorted(unknown)[0]}'", span)
        if not args:
            return Partial(StaticFunction("jax.jit"), (), tuple(kwargs.items()))
        if len(args) != 1:
            raise self.error("AOT301", "jax.jit takes one function", span)
        return args[0]

    def _gin(self: Resolver, name: str, args: list, kwargs: dict, span: Span) -> Any:
        """`@gin.configurable` (or `@gin.register`, with or without a name and options)
        gives the definition it decorates; `gin.external_configurable(f)` gives `f`.  Gin
        bindings live in config files the running program parses: the build reads none,
        and warns once per definition a target reaches."""
        unknown = set(kwargs) - _GIN_OPTIONS
        if unknown:
            raise self.error("AOT302", f"{name} got an unexpected keyword argument "
                             f"'{sorted(unknown)[0]}'", span)
        applied = name == "gin.external_configurable" or (
            len(args) == 1 and not kwargs and not isinstance(args[0], str))
        if not applied:  # `@gin.configurable("name", denylist=[...])`: the decorator
            if len(args) > 1 or (args and not isinstance(args[0], str)):
                raise self.error("AOT301", f"{name}(...) takes the name to register, as a "
                                 "string, and options", span)
            return StaticFunction("gin.configurable")
        if not args:
            raise self.error("AOT301", f"{name} needs the function or class to register", span)
        self._gin_warning(describe_value(args[0]), span)
        return args[0]

    def _gin_warning(self: Resolver, what: str, span: Span) -> None:
        self.warn(Diagnostic(
            "AOT951", f"{what} is registered with gin, but gin bindings are not applied: the "
            "build never reads gin config files, so it takes the arguments its caller passes "
            "and the defaults it declares", span, severity="warning",
            hint="pass the values your gin config binds as arguments, e.g. "
                 "aot.target(\"name\", Model.partial(features=64), ...)"))

    def _module_decorators(self: Resolver, cls: ir.ClassDef, frame: Frame
                           ) -> list[tuple[Closure, ir.Expr]]:
        """A module class may carry gin's registration (the class stays itself) and
        decorators that are functions of the model files (a registry,
        `@register_model(name="ddpm")`), returned to be applied to the class
        (`_apply_module_decorators`); any other class decorator is refused."""
        pending: list[tuple[Closure, ir.Expr]] = []
        for node in cls.decorators:
            if self._names_gin(node, frame) and _is_gin(self.eval(node, frame)):
                self._gin_warning(f"class {cls.name}", node.span)
                continue
            # only a function of the model files is evaluated (`@print` is not even looked
            # up as a builtin: it is refused as a decorator)
            if not isinstance(self._decorator_callee(node, frame), Closure):
                raise self.error("AOT102", "class decorators are not supported on modules, "
                                 "other than functions of the model files (a registry)",
                                 node.span)
            value = self.eval(node, frame)
            if not isinstance(value, Closure):
                raise self.error("AOT102", f"the class decorator gives "
                                 f"{describe_value(value)}, not a function to apply to the "
                                 "class", node.span)
            pending.append((value, node))
        return pending

    def _decorator_callee(self: Resolver, node: Any, frame: Frame) -> Any:
        """What a decorator expression calls (`register_model` in
        `@utils.register_model(name=...)`), looked up through names and model files only,
        reporting nothing; None when it is anything else."""
        callee = node.func if isinstance(node, ir.Call) else node
        attrs: list[str] = []
        while isinstance(callee, ir.Attribute):
            attrs.append(callee.attr)
            callee = callee.value
        if not isinstance(callee, ir.Name):
            return None
        found, value = frame.env.lookup(callee.id)
        if not found:
            return None
        for attr in reversed(attrs):
            if not isinstance(value, ModuleValue) or value.globals is None:
                return None
            found, value = value.globals.lookup(attr)
            if not found:
                return None
        return value

    def _apply_module_decorators(self: Resolver, cls: ir.ClassDef, ref: Any,
                                 pending: list[tuple[Closure, ir.Expr]], frame: Frame) -> Any:
        """The decorators, innermost first as Python applies them; each must give the class
        back (a registry records it): a model is the class statement's own module."""
        for decorator, node in reversed(pending):
            got = self._call(decorator, [ref], {}, ir.Call(node, (), (), node.span), frame)
            if got is not ref:
                raise self.error("AOT102", f"the decorator {decorator.name} returns "
                                 f"{describe_value(got)}, not the class {cls.name}; a class "
                                 "decorator of a module may record the class but must return "
                                 "it", node.span)
        return ref

    def _names_gin(self: Resolver, node: Any, frame: Frame) -> bool:
        """Whether a decorator is written from gin's names (`gin.configurable(...)`,
        `configurable` imported from gin): only those are evaluated on a module class."""
        while isinstance(node, (ir.Call, ir.Attribute)):
            node = node.func if isinstance(node, ir.Call) else node.value
        if not isinstance(node, ir.Name):
            return False
        found, value = frame.env.lookup(node.id)
        return found and (value is namespaces.namespace_for("gin", None) or _is_gin(value))

    def _reduce(self: Resolver, args: list, kwargs: dict, expr: ir.Call, frame: Frame) -> Any:
        if kwargs or not 2 <= len(args) <= 3:
            raise self.error("AOT301", "functools.reduce(function, iterable[, initial])",
                             expr.span)
        items = list(self._iterate(args[1], expr.span))
        if len(args) == 3:
            acc = args[2]
        elif items:
            acc = items.pop(0)
        else:
            raise self.error("AOT349", "functools.reduce() of an empty sequence with no "
                             "initial value", expr.span)
        for item in items:
            self._step(expr.span)
            acc = self._call(args[0], [acc, item], {}, expr, frame)
        return acc

    # ---------------------------------------------------------------- ConfigDict

    def _check_module_args(self: Resolver, args: list, kwargs: dict, span: Span) -> None:
        """A config, dataclass or partial holding arrays cannot cross into a module, nor
        an iterator (a module is specialized once for its arguments: what it took from an
        iterator would not be taken again)."""
        for v in [*args, *kwargs.values()]:
            if isinstance(v, StaticIterator):
                raise self.error("AOT326", "an iterator cannot be passed to a module", span,
                                 hint="pass the values it gives, e.g. as a tuple")
            if isinstance(v, (ConfigValue, Record, Partial)) and not is_static(v):
                raise self.error("AOT326", f"{describe_value(v)} holds arrays; a module takes "
                                 "arrays as its own arguments (or in tuples)", span,
                                 hint="pass the arrays separately, or as a tuple or namedtuple")

    def _config(self: Resolver, args: list, kwargs: dict, span: Span, frozen: bool) -> ConfigValue:
        if len(args) > 1:
            raise self.error("AOT301", "ConfigDict takes one initial dict", span)
        initial: Any = args[0] if args else kwargs.pop("initial_dictionary", None)
        kwargs.pop("type_safe", None)
        kwargs.pop("convert_dict", None)
        if kwargs:
            raise self.error("AOT302", f"ConfigDict got an unexpected keyword argument "
                             f"'{next(iter(kwargs))}'", span,
                             hint="pass the fields as a dict: ConfigDict({\"a\": 1})")
        if isinstance(initial, ConfigValue):
            initial = initial.fields
        if initial is not None and not isinstance(initial, dict):
            raise self.error("AOT347", f"ConfigDict takes a dict of fields, got "
                             f"{describe_value(initial)}", span)
        try:
            config = ConfigValue(dict(initial or {}))
            return config.freeze() if frozen else config
        except StaticError as e:
            raise self.error("AOT331", str(e), span) from None

    def _config_method(self: Resolver, cfg: ConfigValue, name: str, args: list, kwargs: dict,
                       span: Span) -> Any:
        try:
            if name == "get":
                if not 1 <= len(args) <= 2 or kwargs:
                    raise StaticError("config.get(name[, default])")
                return cfg.fields.get(args[0], args[1] if len(args) > 1 else None)
            if name in ("items", "keys", "values"):
                if args or kwargs:
                    raise StaticError(f"config.{name}() takes no arguments")
                if name == "items":
                    return [(k, v) for k, v in cfg.fields.items()]
                return list(cfg.fields) if name == "keys" else list(cfg.fields.values())
            if name == "update":
                if len(args) > 1:
                    raise StaticError("config.update takes one dict or config")
                other = args[0] if args else {}
                if isinstance(other, ConfigValue):
                    other = other.fields
                if not isinstance(other, dict):
                    raise StaticError(f"config.update needs a dict, got {describe_value(other)}")
                for k, v in {**other, **kwargs}.items():
                    current = cfg.fields.get(k)
                    if isinstance(current, ConfigValue) and isinstance(v, (dict, ConfigValue)):
                        self._config_method(current, "update", [v], {}, span)  # merged, nested
                    else:
                        cfg.set(k, v)
                return None
            if args or kwargs:
                raise StaticError(f"config.{name}() takes no arguments")
            if name in ("lock", "unlock"):
                if cfg.frozen:
                    raise StaticError("a FrozenConfigDict cannot be unlocked")
                _set_locked(cfg, name == "lock")
                return cfg
            if name == "is_locked":
                return cfg.locked
            if name == "to_dict":
                return cfg.to_dict()
            return cfg.copy()  # copy, copy_and_resolve_references
        except StaticError as e:
            raise self.error("AOT349", str(e), span) from None

    # ---------------------------------------------------------------- dataclasses

    def _field(self: Resolver, args: list, kwargs: dict, span: Span) -> FieldDefault:
        if args:
            raise self.error("AOT350", "dataclasses.field takes keyword arguments only", span)
        default = kwargs.pop("default", NO_DEFAULT)
        factory = kwargs.pop("default_factory", None)
        for k in ("init", "repr", "hash", "compare", "metadata", "kw_only"):
            kwargs.pop(k, None)
        if kwargs:
            raise self.error("AOT302", f"dataclasses.field got an unexpected keyword argument "
                             f"'{next(iter(kwargs))}'", span)
        return FieldDefault(default, factory)

    def _attrs_decorator(self: Resolver, args: list, kwargs: dict, span: Span) -> StaticFunction:
        """`@attr.s(frozen=True, auto_attribs=True)`: the decorator with its options."""
        if args:
            raise self.error("AOT325", "@attr.s applies to a class statement", span)
        unsupported = sorted(set(kwargs) & {"these", "init", "kw_only", "field_transformer"})
        if unsupported:
            raise self.error("AOT302", f"attr.s: {unsupported[0]}= is not supported", span)
        unknown = sorted(set(kwargs) - _ATTRS_OPTIONS)
        if unknown:
            raise self.error("AOT302", f"attr.s got an unexpected keyword argument "
                             f"'{unknown[0]}'", span)
        flags = [k for k in ("frozen", "auto_attribs") if kwargs.get(k)]
        return StaticFunction(f"attr.s({','.join(flags)})")

    def _attrib(self: Resolver, args: list, kwargs: dict, span: Span) -> FieldDefault:
        """`attr.ib(default=..., factory=...)`: a field of an `@attr.s` class."""
        b = self._bind_signature("default=None, validator=None, repr=True, cmp=None, hash=None, "
                                "init=True, metadata=None, type=None, converter=None, "
                                "factory=None, kw_only=False, eq=None, order=None, "
                                "on_setattr=None", "attr.ib", args, kwargs, span)
        for name in ("validator", "converter", "on_setattr"):
            if b[name] is not None:
                raise self.error("AOT302", f"attr.ib: {name}= is not supported (it runs code "
                                 "when an instance is made)", span)
        if b["init"] is not True or b["kw_only"]:
            raise self.error("AOT302", "attr.ib: init= and kw_only= are not supported", span)
        default = kwargs.get("default", NO_DEFAULT) if not args else args[0]
        if b["factory"] is not None and default is not NO_DEFAULT:
            raise self.error("AOT303", "attr.ib takes default= or factory=, not both", span)
        return FieldDefault(default, b["factory"], attrib=True)

    def _class_bases(self: Resolver, cls: ir.ClassDef, frame: Frame) -> list[Any]:
        """The bases of a class statement; `object` is left out, as Python 3 treats
        `class C(object):` as `class C:` (2020 code still wrote it)."""
        return [self.eval(b, frame) for b in cls.bases
                if not (isinstance(b, ir.Name) and b.id == "object"
                        and not frame.env.lookup("object")[0])]

    def _record_class(self: Resolver, cls: ir.ClassDef, frame: Frame) -> RecordClass | None:
        """A dataclass, `@attr.s` or NamedTuple class statement, or None for any other class."""
        bases = self._class_bases(cls, frame)
        if any(b is namespaces.MODULE_BASE for b in bases):
            return None  # a module: decorators are reported by the module path
        options = []
        for node in cls.decorators:
            option = self.eval(node, frame)
            if _is_gin(option):  # registered for gin bindings: the class stays itself
                self._gin_warning(f"class {cls.name}", node.span)
            else:
                options.append(option)
        dataclass = [o for o in options if isinstance(o, StaticFunction)
                     and o.name.startswith(("dataclasses.dataclass", "attr.s"))]
        # attrs without auto_attribs: the `x = attr.ib()` assignments are the fields
        by_attrib = any(o.name.startswith("attr.s") and "auto_attribs" not in o.name
                        for o in dataclass)
        named = [b for b in bases if b == StaticFunction("typing.NamedTuple")]
        parent = [b for b in bases if isinstance(b, RecordClass) and b.kind != "plain"]
        if not (dataclass or named or parent):
            return None
        if len(dataclass) != len(options) or len(dataclass) > 1:
            raise self.error("AOT325", "a dataclass takes no other decorator",
                             cls.decorators[0].span)
        if cls.others:
            first = cls.others[0]
            raise self.error("AOT102", "a dataclass or NamedTuple body may contain fields, "
                             "methods and a docstring only", first.where)
        kind = "namedtuple" if named or (parent and parent[0].kind == "namedtuple") \
            else "dataclass"
        fields: list[str] = list(parent[0].fields) if parent else []
        defaults: dict[str, Any] = dict(parent[0].defaults) if parent else {}
        attrs: dict[str, Any] = {}
        for stmt in cls.fields:
            target: ir.Expr | None = None
            value: Any = NO_DEFAULT
            if isinstance(stmt, ir.AnnAssign):
                target = stmt.target
                if stmt.value is not None:
                    value = self.eval(stmt.value, frame)
            elif isinstance(stmt, ir.Assign):
                target = stmt.targets[0] if len(stmt.targets) == 1 else None
                value = self.eval(stmt.value, frame)
            is_field = isinstance(target, ir.Name) and (
                isinstance(value, FieldDefault) and value.attrib if by_attrib
                else isinstance(stmt, ir.AnnAssign))
            if is_field and isinstance(target, ir.Name):
                name = target.id
                if name not in fields:
                    fields.append(name)
                if not (value is NO_DEFAULT or isinstance(value, FieldDefault)
                        and value.default is NO_DEFAULT and value.factory is None):
                    defaults[name] = value
                if any(f in defaults for f in fields[:fields.index(name)]) and \
                        name not in defaults:
                    raise self.error("AOT304", f"field '{name}' of {cls.name} has no default "
                                     "but follows a field with a default", stmt.span)
            elif isinstance(stmt, ir.Assign):
                for t in stmt.targets:
                    if isinstance(t, ir.Name):
                        attrs[t.id] = value
            elif isinstance(target, ir.Name) and value is not NO_DEFAULT:
                attrs[target.id] = value  # annotated, in an attrs class without auto_attribs
        methods: dict[str, Any] = dict(parent[0].methods) if parent else {}
        properties = set(parent[0].properties) if parent else set()
        for m in cls.methods:
            kinds = [d for d in m.decorators]
            if any(not (isinstance(d, ir.Name) and d.id == "property") for d in kinds):
                raise self.error("AOT325", f"method {m.name} of {cls.name}: only @property is "
                                 "supported on methods of a dataclass or NamedTuple",
                                 kinds[0].span)
            methods[m.name] = m
            if kinds:
                properties.add(m.name)
        frozen = kind == "namedtuple" or any("frozen" in o.name for o in dataclass)
        return RecordClass(cls.name, kind, tuple(fields), defaults, frozen, methods,
                           frozenset(properties), frame.env, cls.span, attrs, tuple(parent),
                           own=frozenset(m.name for m in cls.methods))

    def _plain_class(self: Resolver, cls: ir.ClassDef, bases: list, frame: Frame
                     ) -> RecordClass | None:
        """A class statement of none of the kinds above, over plain classes of the model
        files (or `abc.ABC`, or none): its objects hold what `__init__` and the methods set
        on `self`.  None when a base is anything else."""
        parents = [b for b in bases if b is not namespaces.ABC]
        if not all(isinstance(b, RecordClass) and b.kind == "plain" for b in parents):
            return None
        if cls.metaclass is not None and self.eval(cls.metaclass, frame) is not \
                namespaces.ABC_META:
            raise self.error("AOT102", "the only metaclass a class may name is abc.ABCMeta",
                             cls.metaclass.span)
        for node in cls.decorators:
            if not (self._names_gin(node, frame) and _is_gin(self.eval(node, frame))):
                raise self.error("AOT102", "class decorators other than gin's are not "
                                 "supported on plain classes", node.span,
                                 hint="for a dataclass, write @dataclasses.dataclass alone")
            self._gin_warning(f"class {cls.name}", node.span)
        if cls.others:  # the first in source order
            first = min(cls.others, key=lambda st: (st.span.line, st.span.col))
            raise self.error(first.code, first.message, first.where, hint=first.hint)
        methods: dict[str, Any] = {}
        attrs: dict[str, Any] = {}
        properties: set[str] = set()
        statics: set[str] = set()
        refused: dict[str, Span] = {}
        for parent in reversed(parents):  # the first base wins, as in Python
            methods.update(parent.methods)
            attrs.update(parent.attrs)
            properties = (properties - set(parent.methods)) | set(parent.properties)
            statics = (statics - set(parent.methods)) | set(parent.statics)
            refused.update(parent.refused)
        attrs.update(self._class_body(cls, frame))
        for m in cls.methods:
            methods[m.name] = m
            properties.discard(m.name)
            statics.discard(m.name)
            refused.pop(m.name, None)
            for node in m.decorators:
                builtin = builtin_decorator(node, frame)
                if builtin == "property":
                    properties.add(m.name)
                elif builtin == "staticmethod":
                    statics.add(m.name)
                elif builtin is not None or self.eval(node, frame) != StaticFunction(
                        "abc.abstractmethod"):
                    refused.setdefault(m.name, node.span)
        return RecordClass(cls.name, "plain", (), {}, False, methods, frozenset(properties),
                           frame.env, cls.name_span, attrs, tuple(parents),
                           own=frozenset(m.name for m in cls.methods),
                           statics=frozenset(statics), refused=tuple(refused.items()))

    def _new_object(self: Resolver, cls: RecordClass, args: list, kwargs: dict, span: Span,
                    frame: Frame) -> Record:
        """`C(...)` of a plain class: a new object, `__init__` run on it."""
        obj = Record(cls, {})
        if "__init__" not in cls.methods:
            if args or kwargs:
                if "apply" in cls.methods:
                    raise self._not_a_module(cls, span)
                raise self.error("AOT301", f"{cls.name}() takes no arguments (it has no "
                                 "__init__)", span)
            return obj
        if self._record_call(obj, "__init__", args, kwargs, span, frame) is not None:
            raise self.error("AOT349", f"{cls.name}.__init__ must return None", span)
        return obj

    def _not_a_module(self: Resolver, cls: RecordClass, span: Span) -> Exception:
        return self.error("AOT320", f"class {cls.name} is a plain Python class, not a module",
                          cls.span, notes=(Note("used as a module here", span),),
                          hint=f"derive it from nn.Module: class {cls.name}(nn.Module):")

    def _construct(self: Resolver, cls: RecordClass, args: list, kwargs: dict, expr: ir.Call,
                   frame: Frame) -> Any:
        span = expr.span
        if cls.kind == "plain":
            return self._new_object(cls, args, kwargs, span, frame)
        if len(args) > len(cls.fields):
            raise self.error("AOT301", f"{cls.name} takes {len(cls.fields)} fields, got "
                             f"{len(args)} positional arguments", span,
                             hint=f"its fields: {', '.join(cls.fields)}")
        values: dict[str, Any] = dict(zip(cls.fields, args))
        for k, v in kwargs.items():
            if k not in cls.fields:
                raise self.error("AOT302", f"{cls.name} got an unexpected keyword argument "
                                 f"'{k}'", span, hint=f"its fields: {', '.join(cls.fields)}")
            if k in values:
                raise self.error("AOT303", f"{cls.name} got multiple values for '{k}'", span)
            values[k] = v
        for f in cls.fields:
            if f in values:
                continue
            if f not in cls.defaults:
                raise self.error("AOT304", f"{cls.name} is missing required field '{f}'", span)
            default = cls.defaults[f]
            if isinstance(default, FieldDefault):
                default = default.default if default.factory is None else self._call(
                    default.factory, [], {}, expr, frame)
            values[f] = default
        ordered = [values[f] for f in cls.fields]
        if cls.kind == "namedtuple":
            return RecordTuple.make(cls, ordered)
        record = Record(cls, dict(zip(cls.fields, ordered)))
        if "__post_init__" in cls.methods:
            self._record_call(record, "__post_init__", [], {}, span, frame)
        return record

    def _dataclass_function(self: Resolver, name: str, args: list, kwargs: dict, span: Span,
                            frame: Frame) -> Any:
        if name == "dataclasses.is_dataclass":
            return len(args) == 1 and isinstance(args[0], (Record, RecordClass)) and (
                args[0] if isinstance(args[0], RecordClass) else args[0].cls).kind == "dataclass"
        if len(args) != 1 or not isinstance(args[0], Record) or args[0].cls.kind == "plain":
            raise self.error("AOT349", f"{name} needs a dataclass instance, got "
                             f"{describe_value(args[0]) if args else 'nothing'}", span)
        record: Record = args[0]
        if name == "dataclasses.replace":
            unknown = [k for k in kwargs if k not in record.cls.fields]
            if unknown:
                raise self.error("AOT302", f"{record.cls.name} has no field '{unknown[0]}'",
                                 span, hint=f"its fields: {', '.join(record.cls.fields)}")
            out = Record(record.cls, {**record.values, **kwargs})
            if "__post_init__" in record.cls.methods:
                self._record_call(out, "__post_init__", [], {}, span, frame)
            return out
        if kwargs:
            raise self.error("AOT302", f"{name} takes no keyword arguments", span)
        if name == "dataclasses.asdict":
            return _asdict(record)
        return tuple(record.values.values())

    def _namedtuple(self: Resolver, name: str, args: list, kwargs: dict, span: Span) -> RecordClass:
        """`namedtuple("Cfg", "a b", defaults=(2,))`, `NamedTuple("Cfg", [("a", int)])`."""
        defaults = kwargs.pop("defaults", None) if name == "collections.namedtuple" else None
        kwargs.pop("rename", None)
        kwargs.pop("module", None)
        if len(args) != 2 or not isinstance(args[0], str) or kwargs:
            raise self.error("AOT301", f"{name}(name, fields) with a name and its fields", span)
        fields_arg = args[1]
        if isinstance(fields_arg, str):
            fields = fields_arg.replace(",", " ").split()
        elif isinstance(fields_arg, (list, tuple)):
            fields = [f[0] if isinstance(f, (tuple, list)) and f else f for f in fields_arg]
        else:
            fields = []
        if not fields_arg or not all(isinstance(f, str) and f.isidentifier() and
                                     not f.startswith("_") for f in fields):
            raise self.error("AOT349", f"{name}: field names must be identifiers, got "
                             f"{describe_value(fields_arg)}", span)
        if len(set(fields)) != len(fields):
            raise self.error("AOT349", f"{name}: duplicate field names", span)
        given = tuple(defaults or ())
        if len(given) > len(fields):
            raise self.error("AOT349", f"{name}: more defaults than fields", span)
        return RecordClass(args[0], "namedtuple", tuple(fields),
                           dict(zip(fields[len(fields) - len(given):], given)), True, span=span)

    # ---------------------------------------------------------------- attributes and methods

    def _record_attribute(self: Resolver, value: Any, attr: str, span: Span, frame: Frame) -> Any:
        if isinstance(value, ConfigValue):
            if attr in value.fields:
                return value.fields[attr]
            if attr in CONFIG_METHODS:
                return _bound(value, attr, span)
            raise self.error("AOT346", f"the config has no field '{attr}'", span,
                             hint=f"its fields: {', '.join(value.fields) or 'none'}")
        if isinstance(value, SuperObject):
            return self._super_attribute(value, attr, span)
        if isinstance(value, RecordClass):
            if attr in value.statics:
                return self._method_closure(value, attr, None, span)
            if attr in value.attrs:
                return self._class_value(value.attrs[attr], span, frame)
            if attr in value.defaults and not isinstance(value.defaults[attr], FieldDefault):
                return value.defaults[attr]
            raise self.error("AOT346", f"class {value.name} has no attribute '{attr}'", span)
        cls: RecordClass = value.cls
        if isinstance(value, Record) and attr in value.values:
            return value.values[attr]
        if isinstance(value, RecordTuple):
            if attr in cls.fields:
                return value[cls.fields.index(attr)]
            if attr == "_fields":
                return cls.fields
            if attr in ("_replace", "_asdict"):
                return _bound(value, attr, span)
        if attr in cls.properties:
            return self._record_call(value, attr, [], {}, span, frame)
        if attr in cls.statics:
            return self._method_closure(cls, attr, None, span)
        if attr in cls.methods:
            self._check_not_refused(cls, attr, span)
            return _bound(value, attr, span)
        if attr in cls.attrs:
            return self._class_value(cls.attrs[attr], span, frame)
        raise self.error("AOT346", f"{cls.name} has no field '{attr}'", span,
                         hint=f"its fields: {', '.join(cls.fields)}")

    def _set_record_attribute(self: Resolver, receiver: Any, attr: str, value: Any, span: Span) -> None:
        if isinstance(value, Poison):
            raise Abort()
        if isinstance(receiver, ConfigValue):
            try:
                receiver.set(attr, value)
            except StaticError as e:
                raise self.error("AOT331", str(e), span) from None
            return
        cls = receiver.cls
        if isinstance(receiver, RecordTuple) or cls.frozen:
            raise self.error("AOT331", f"cannot set field '{attr}' of the frozen {cls.name}",
                             span, hint="make a changed copy: dataclasses.replace(value, "
                             f"{attr}=...)" if isinstance(receiver, Record) else
                             f"make a changed copy: value._replace({attr}=...)")
        receiver.values[attr] = value

    def _record_method(self: Resolver, receiver: Any, name: str, args: list, kwargs: dict, span: Span,
                       frame: Frame) -> Any:
        if isinstance(receiver, ConfigValue):
            return self._config_method(receiver, name, args, kwargs, span)
        if isinstance(receiver, RecordTuple) and name == "_replace":
            cls = receiver.cls
            unknown = [k for k in kwargs if k not in cls.fields]
            if args or unknown:
                raise self.error("AOT302", f"{cls.name}._replace takes field names, got "
                                 f"'{unknown[0] if unknown else args[0]}'", span)
            return RecordTuple.make(cls, [kwargs.get(f, v) for f, v in zip(cls.fields,
                                                                           receiver)])
        if isinstance(receiver, RecordTuple) and name == "_asdict":
            return dict(zip(receiver.cls.fields, receiver))
        return self._record_call(receiver, name, args, kwargs, span, frame)

    def _record_call(self: Resolver, receiver: Any, name: str, args: list, kwargs: dict, span: Span,
                     frame: Frame) -> Any:
        """A method of a dataclass / NamedTuple / plain class statement, with `self` bound."""
        self._check_not_refused(receiver.cls, name, span)
        closure = self._method_closure(receiver.cls.owner(name), name, receiver, span)
        return self._call_closure(closure, args, kwargs, span, frame)

    def _method_closure(self: Resolver, owner: RecordClass, name: str, receiver: Any,
                        span: Span) -> Closure:
        """Method `name` of the class statement `owner`, in the environment of that class's
        file, with its first parameter bound to `receiver` (None: a static method)."""
        method: ir.FunctionDef = owner.methods[name]
        env = Env(owner.env)
        params = method.params.params
        if receiver is not None:
            if not params:
                raise self.error("AOT301", f"method {name} takes no self", method.name_span)
            env.set(params[0].name, receiver)
            params = params[1:]
            if owner.kind == "plain":
                env.set("super", SuperFunction(receiver, owner))
        return Closure(name, ir.Parameters(params, method.params.span), method.body, env,
                       method.span, method)

    def _check_not_refused(self: Resolver, cls: RecordClass, name: str, span: Span) -> None:
        for refused, where in cls.refused:
            if refused == name:
                raise self.error("AOT325", f"method {name} of {cls.name}: only @property, "
                                 "@staticmethod and @abc.abstractmethod are supported on the "
                                 "methods of a class", span,
                                 notes=(Note("decorated here", where),))

    def _call_super(self: Resolver, func: SuperFunction, args: list, kwargs: dict,
                    span: Span) -> SuperObject:
        """`super()`, or `super(Cls, self)` as Python 2 spelled it, in a method of a plain
        class (a module's is `modules._bind_super`)."""
        start = args[0] if args else func.owner
        if kwargs or args and (len(args) != 2 or not isinstance(start, RecordClass)
                               or args[1] is not func.receiver
                               or not func.receiver.cls.derives_from(start)):
            raise self.error("AOT301", "super() takes no arguments, or the class and self "
                             "(super(Cls, self))", span)
        return SuperObject(func.receiver, start)

    def _super_attribute(self: Resolver, sup: SuperObject, attr: str, span: Span) -> Any:
        """A method of the bases of `sup.start`, bound to the object; `__init__` of none of
        them is object's, which takes nothing."""
        for base in sup.start.bases:
            if attr in base.methods:
                if attr in base.statics:
                    return self._method_closure(base.owner(attr), attr, None, span)
                self._check_not_refused(base, attr, span)
                return self._method_closure(base.owner(attr), attr, sup.receiver, span)
        if attr == "__init__":
            return StaticFunction("object.__init__")
        raise self.error("AOT346", f"no base of {sup.start.name} defines '{attr}'", span)

    # ---------------------------------------------------------------- decorators

    def _decorate(self: Resolver, stmt: ir.FunctionDef, value: Any, decorators: list[Any],
                  frame: Frame) -> Any:
        """Apply decorators bottom-up by calling them on the function, as Python does."""
        for node, dec in reversed(list(zip(stmt.decorators, decorators))):
            if dec is namespaces.MODULE_METHOD:
                continue
            if not (isinstance(dec, (Closure, Partial, StaticFunction, BoundMethod))
                    or dec is namespaces.VMAP or dec is namespaces.CUSTOM_JVP
                    or dec is namespaces.CUSTOM_VJP
                    or dec is namespaces.CHECKPOINT or dec is namespaces.REMAT):
                raise self.error(
                    "AOT325", f"the decorator {describe_value(dec)} is not supported on "
                    "functions", node.span, hint="decorators the static language knows: "
                    "@nn.module_method, @nn.module, @jax.vmap, @jax.checkpoint, @jax.custom_jvp, "
                    "@jax.custom_vjp, "
                    "@f.defjvp, @jax.jit, "
                    "@functools.partial(...) of these, and functions of the model file")
            value = self._call(dec, [value], {}, ir.Call(node, (), (), node.span), frame)
        return value


#: Options of `attr.s` that change nothing a static record does (`frozen` and
#: `auto_attribs` are read).
_ATTRS_OPTIONS = frozenset({"frozen", "auto_attribs", "repr_ns", "repr", "cmp", "hash",
                            "slots", "weakref_slot", "str", "cache_hash", "auto_exc", "eq",
                            "order", "auto_detect", "collect_by_mro", "getstate_setstate",
                            "on_setattr", "match_args"})


#: Options of `gin.configurable` / `gin.register` / `gin.external_configurable` (the old
#: names of the lists too): which arguments gin may bind, which the build does not read.
_GIN_OPTIONS = frozenset({"name", "module", "allowlist", "denylist", "whitelist",
                          "blacklist"})


def _is_gin(value: Any) -> bool:
    return value == StaticFunction("gin.configurable")


def _bound(receiver: Any, name: str, span: Span) -> Any:
    return BoundMethod(receiver, name, span)


def _set_locked(cfg: ConfigValue, locked: bool) -> None:
    """`lock()` / `unlock()` apply to nested configs too, as in ml_collections."""
    cfg.locked = locked
    for v in cfg.fields.values():
        if isinstance(v, ConfigValue) and not v.frozen:
            _set_locked(v, locked)


def _asdict(value: Any) -> Any:
    if isinstance(value, Record):
        return {k: _asdict(v) for k, v in value.values.items()}
    if isinstance(value, RecordTuple):
        return {k: _asdict(v) for k, v in zip(value.cls.fields, value)}
    if isinstance(value, (list, tuple)):
        return type(value)(_asdict(v) for v in value)
    return value


__all__ = ["RecordsMixin", "CONFIG_METHODS"]
