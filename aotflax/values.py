"""Static values of the resolve-time interpreter.

At build time a model's expressions evaluate to either a `Tensor` (an array
known by shape and dtype, see `program.py`) or a static value: Python
literals and containers, and the objects below (dtypes, initializers, module
references, functions).  Static values can be turned back into Python code
(`to_code`) when the emitted program needs them, and compared by `static_key`
when specializing a user module on its hyperparameters.
"""

from __future__ import annotations

import math
import operator as _operator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

from . import ir, quoting
from .diagnostics import Span
from .program import Tensor

if TYPE_CHECKING:
    from .ops.registry import Entry


class StaticError(Exception):
    """A value cannot be used statically; the caller locates it."""


@dataclass(frozen=True, slots=True)
class DType:
    """`jnp.float32` and friends as hyperparameter values."""

    name: str
    #: numpy's scalar type (`np.float32`, `x.dtype.type`): calling it makes a numpy scalar.
    #: Equal to the jnp dtype of the same name (`x.dtype == np.float32` holds).
    host: bool = field(default=False, compare=False)

    def code(self) -> str:
        return f"jnp.{quoting.identifier(self.name, 'dtype name')}"


@dataclass(frozen=True, slots=True)
class Initializer:
    """An initializer `(key, shape, dtype) -> array`, as code for `init`."""

    #: Code in the generated file, e.g. "jax.nn.initializers.lecun_normal()".
    code: str
    #: Human description for messages.
    description: str
    #: `constant` of an array value: the value's shape (it must broadcast to the
    #: parameter's shape, checked where the parameter is declared).
    value_shape: tuple[int, ...] | None = None


@dataclass(frozen=True, slots=True)
class InitializerFactory:
    """`nn.initializers.normal` before it is called with its arguments."""

    name: str
    #: Code of the factory, e.g. "jax.nn.initializers.normal".
    code: str
    #: Whether the DSL may use it without calling (zeros, ones are initializers already).
    is_initializer: bool


@dataclass(frozen=True, slots=True)
class OpRef:
    """A callable entry of the operation table (jnp.mean, nn.relu, nn.Dense, ...)."""

    entry: "Entry"
    #: How the user wrote it (for messages), e.g. "jnp.mean".
    written: str


@dataclass(frozen=True, slots=True)
class Namespace:
    """A module-like object whose attributes are looked up in a table (jnp, nn, aot)."""

    name: str
    #: attribute -> value (or a callable computing it lazily).
    members: Any


@dataclass(frozen=True, slots=True)
class UserModule:
    """A `class M(nn.Module)` of the model file."""

    name: str
    cls: ir.ClassDef
    #: The model file's global environment (for defaults and helper lookups).
    globals: "Env"
    #: For a subclass of a built-in layer (`class StdConv(nn.Conv)`), the layer's
    #: table entry: the layer's rule runs, the class's `param` sees each parameter.
    base: Any = None
    #: Class attributes (`FEATURES = 64` in the class body): read as `self.FEATURES`
    #: or `M.FEATURES`.
    attributes: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)
    #: Methods decorated `@staticmethod`: called without `self`.
    static_methods: frozenset[str] = frozenset()
    #: Methods decorated `@classmethod`: called with the class (`M.make(4)`, often
    #: `return cls.partial(...)`).
    class_methods: frozenset[str] = frozenset()
    #: Methods with another decorator (`@jax.jit`, a classmethod stacked on another
    #: decorator), each with the decorator's span: an error where code a target reaches
    #: uses one, and harmless otherwise (old flax.nn modules kept jitted training helpers).
    refused_methods: tuple[tuple[str, Any], ...] = ()
    #: The user module this one subclasses (`class SELUNormReBias(BiasSELUNorm)`): its
    #: methods are inherited, `super().apply(...)` runs its `apply` in the same scope.
    parent: "UserModule | None" = None

    def static_method(self, name: str) -> "Closure | None":
        """`M.helper` / `self.helper` for a `@staticmethod`: a function of the file."""
        owner = self.owner(name)
        if owner is None or name not in owner.static_methods:
            return None
        method = owner.own_method(name)
        assert method is not None
        return Closure(name, method.params, method.body, Env(owner.globals), method.span,
                       method)

    def class_method(self, name: str, cls: Any) -> "Closure | None":
        """`M.make` / `self.make` for a `@classmethod`: its function with `cls` bound to
        the class it is read from (`cls`: a `ModuleRef`, partially applied or not)."""
        owner = self.owner(name)
        if owner is None or name not in owner.class_methods:
            return None
        method = owner.own_method(name)
        assert method is not None
        params = method.params.params
        if not params or params[0].kind != "positional":
            return None  # `def make(*args)`: refused where used (no `cls` to bind)
        env = Env(owner.globals)
        env.set(params[0].name, cls)
        return Closure(name, ir.Parameters(params[1:], method.params.span), method.body, env,
                       method.span, method)

    def own_method(self, name: str) -> ir.FunctionDef | None:
        """The method `name` of this class statement itself (not inherited)."""
        for m in self.cls.methods:
            if m.name == name:
                return m
        return None

    def owner(self, name: str) -> "UserModule | None":
        """The class, this one or one it derives from, whose statement defines `name`."""
        module: UserModule | None = self
        while module is not None:
            if module.own_method(name) is not None:
                return module
            module = module.parent
        return None

    def method(self, name: str) -> ir.FunctionDef | None:
        """The method `name`, this class's own or inherited (as Python looks it up)."""
        owner = self.owner(name)
        return None if owner is None else owner.own_method(name)

    def globals_of(self, name: str) -> "Env":
        """The globals the method `name` runs with: those of the file defining it."""
        owner = self.owner(name)
        return (owner or self).globals


@dataclass(frozen=True, slots=True)
class ModuleRef:
    """A module class (user or built-in layer) with hyperparameters bound by `partial`."""

    #: `UserModule` or a layer `Entry`.
    module: Any
    #: Bound keyword arguments, in binding order.
    bound: tuple[tuple[str, Any], ...] = ()
    #: Where `partial` was called (for notes).
    span: Span | None = None
    #: The module-level name the model gave this configuration (`ResNet18 = ResNet.partial(
    #: ...)`), kept by further partials: emit names variants after it.
    label: str | None = field(default=None, compare=False)

    @property
    def class_name(self) -> str:
        return self.module.name

    def with_bound(self, extra: dict[str, Any], span: Span) -> "ModuleRef":
        merged = dict(self.bound)
        merged.update(extra)
        return ModuleRef(self.module, tuple(merged.items()), span, self.label)

    def split_name(self) -> tuple["ModuleRef", Any]:
        """This reference without the `name=` a `partial` bound, and that name (None when it
        bound none).  In old flax.nn the partial's name is the module's default name: a
        call's own `name=` wins over it."""
        bound = dict(self.bound)
        if "name" not in bound:
            return self, None
        name = bound.pop("name")
        return ModuleRef(self.module, tuple(bound.items()), self.span, self.label), name


@dataclass(eq=False)
class SharedModule:
    """`M.shared(...)`: one scope, one parameter set, every call.

    Passed into another module, it keeps its parameters where it was created: inside
    the receiving module it is a copy whose `instance` scope is rooted at the argument
    that carries its parameter subtree.
    """

    ref: ModuleRef
    #: Scope it belongs to (a `Scope` of resolve).
    scope: Any
    name: str
    span: Span
    #: The scope of the instance itself, when received as an argument (else it is
    #: `scope`'s child `name`).
    instance: Any = None
    #: Parameter declarations recorded on first call (for consistency checks).
    declared: dict[tuple[str, ...], tuple[tuple[int, ...], str]] | None = None
    #: Number of calls so far.
    calls: int = 0


@dataclass(frozen=True, slots=True)
class BoundMethod:
    """A method looked up on a value, e.g. `M.partial`, `self.param`, `lst.append`."""

    receiver: Any
    name: str
    span: Span


@dataclass(eq=False)
class Closure:
    """A user function (module-level, nested def or lambda) with its environment."""

    name: str
    params: ir.Parameters
    #: Body statements; for a lambda, a single Return.
    body: tuple[ir.Stmt, ...]
    env: "Env"
    span: Span
    #: The definition, when it is a `def` (emitted verbatim as an initializer).
    definition: ir.FunctionDef | None = None
    #: Static defaults, evaluated where the function was defined.
    defaults: dict[str, Any] = field(default_factory=dict)
    #: True for functions at module level.
    toplevel: bool = False
    #: What `f.__name__ = ...` set (Python's function objects take any string).
    dunder_name: str | None = None

    @property
    def python_name(self) -> str:
        """`f.__name__`: the `def`'s name, "<lambda>", or what the model file set."""
        return self.dunder_name if self.dunder_name is not None else self.name


@dataclass(eq=False)
class StaticIterator:
    """`iter(seq)`: an iterator over static items (which may hold arrays), advanced by
    `next` and by loops over it, as Python's (2020 code numbered layers with
    `name='conv%d' % next(conv_index)`)."""

    items: list[Any]
    position: int = 0

    def take(self) -> Any:
        """The next item (IndexError when exhausted)."""
        item = self.items[self.position]
        self.position += 1
        return item

    def rest(self) -> list[Any]:
        """The items not taken yet, all taken now (a loop over the iterator)."""
        out, self.position = self.items[self.position:], len(self.items)
        return out


@dataclass(frozen=True, slots=True)
class StaticBuiltin:
    """A Python builtin or `math` function evaluated at build time."""

    name: str
    fn: Callable[..., Any]


@dataclass(frozen=True, slots=True)
class Spec:
    """`aot.f32[32, 784]`: an input of a target."""

    shape: tuple[Any, ...]
    dtype: str
    span: Span


@dataclass(frozen=True, slots=True)
class SpecDType:
    """`aot.f32` before it is indexed with a shape."""

    dtype: str


@dataclass(eq=False)
class SelfValue:
    """`self` inside a module method: a handle on the current module scope.

    `attrs` holds what `self.name = value` set during this call (old flax.nn builds a
    new module object per call, so such attributes live for one call, never as
    parameters).  Identity is the value's identity (it is hashed for specialization).
    """

    scope: Any
    attrs: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Opaque:
    """A name outside the static language (`absl.flags`, `flax.optim`, `tfds`).

    It may be bound and passed along at the top level (an import no target uses is
    harmless); any other use by code a target reaches is a located error.
    """

    #: The dotted name as the model file writes it, e.g. "flags.FLAGS".
    written: str
    #: Why aotflax cannot interpret it, e.g. "'absl' is not a module aotflax interprets".
    why: str
    #: The import that bound its root name.
    span: Span | None = None

    def attribute(self, attr: str) -> "Opaque":
        return Opaque(f"{self.written}.{attr}", self.why, self.span)


@dataclass(eq=False)
class ModuleValue:
    """Another model file of the build (or a package folder), bound by an import."""

    #: Dotted module name, e.g. "models.utils".
    name: str
    #: The file's module-level names (None for a package folder without `__init__.py`).
    globals: "Env | None"
    #: `attr -> value or None`: submodules of a package (set by resolve).
    submodule: Any = None


@dataclass(frozen=True, slots=True)
class TypeHint:
    """A `typing` name (`Any`, `Callable`, `Optional[int]`): meaningful in annotations only."""

    name: str


@dataclass(frozen=True, slots=True)
class AbstractType:
    """A `collections.abc` class (`Iterable`, `Sequence`, ...): a type `isinstance` takes."""

    name: str


@dataclass(eq=False)
class SuperLayer:
    """`super()` inside the `param` override of a subclassed built-in layer."""

    #: `declare(name, shape, init, span) -> Tensor`: the layer's own parameter.
    declare: Callable[..., Any]


@dataclass(eq=False)
class SuperObject:
    """`super()` / `super(Cls, self)` in a method of a plain class: its attributes are the
    methods of the classes after `start`, bound to `receiver`."""

    #: The object (`self`).
    receiver: Any
    #: The class whose bases are searched (the method's own class for `super()`).
    start: Any


@dataclass(eq=False)
class SuperFunction:
    """The name `super` inside a method of a plain class (`method` of class `owner`,
    called on `receiver`): calling it gives a `SuperObject`."""

    receiver: Any
    owner: Any


@dataclass(frozen=True, slots=True)
class SuperModule:
    """`super()` (or `super(Cls, self)`) in a method of a user module: methods looked up
    on it are those of the classes after `after`, run with the same `self`."""

    receiver: SelfValue
    after: UserModule


@dataclass(frozen=True, slots=True)
class StaticFunction:
    """A function of a library the static language implements itself
    (`functools.partial`, `dataclasses.replace`, `ml_collections.ConfigDict`, ...)."""

    #: The dotted name, e.g. "functools.partial".
    name: str


@dataclass(frozen=True, slots=True)
class IndexMaker:
    """`jax.ops.index`, `np.s_`, `np.index_exp`: subscripted, each gives its index
    (`jax.ops.index[:, 0]` is `(slice(None), 0)`), as 2020 code wrote indices for
    `jax.ops.index_update`."""

    #: How the model names it ("jax.ops.index").
    name: str


class EnumClass:
    """A `class Color(enum.Enum)` of the model file (`resolve/enums.py`): its members in
    definition order.  `IntEnum` members also equal the ints they hold."""

    __slots__ = ("name", "members", "int_enum", "span")

    def __init__(self, name: str, int_enum: bool, span: Span):
        self.name = name
        self.int_enum = int_enum
        self.span = span
        #: Member name -> member, in definition order (aliases, sharing a value, included).
        self.members: dict[str, EnumMember] = {}

    def canonical(self) -> list["EnumMember"]:
        """The members without aliases, as iterating the class gives them."""
        return [m for n, m in self.members.items() if m.name == n]

    def __iter__(self) -> Any:
        return iter(self.canonical())

    def __len__(self) -> int:
        return len(self.canonical())

    def __getitem__(self, name: Any) -> "EnumMember":
        if not isinstance(name, str) or name not in self.members:
            raise KeyError(name)
        return self.members[name]

    def __repr__(self) -> str:
        return f"<enum {self.name}>"


class EnumMember:
    """One member of an `EnumClass`: a singleton, equal only to itself (an `IntEnum`'s
    also to its int), hashed by class and name."""

    __slots__ = ("cls", "name", "value")

    def __init__(self, cls: EnumClass, name: str, value: Any):
        self.cls = cls
        self.name = name
        self.value = value

    def __eq__(self, other: object) -> bool:
        if isinstance(other, EnumMember):
            return self is other
        return self.cls.int_enum and not isinstance(other, bool) and isinstance(
            other, int) and self.value == other

    def __hash__(self) -> int:
        return hash(self.value) if self.cls.int_enum else hash((id(self.cls), self.name))

    def __repr__(self) -> str:
        return f"{self.cls.name}.{self.name}"

    # an IntEnum's member is an int (its value) for arithmetic, comparisons and int()
    def __int__(self) -> int:
        if not self.cls.int_enum:
            raise TypeError(f"{self!r} is not an int")
        return int(self.value)

    __index__ = __int__


def _int_enum_operator(op: Callable[[Any, Any], Any], reflected: bool = False) -> Any:
    def method(self: EnumMember, other: Any) -> Any:
        if not self.cls.int_enum:
            return NotImplemented
        if isinstance(other, EnumMember):
            if not other.cls.int_enum:
                return NotImplemented
            other = other.value
        elif isinstance(other, bool) or not isinstance(other, (int, float)):
            return NotImplemented
        return op(other, self.value) if reflected else op(self.value, other)

    return method


for _name in ("add", "sub", "mul", "floordiv", "truediv", "mod", "pow", "lt", "le", "gt", "ge"):
    setattr(EnumMember, f"__{_name}__", _int_enum_operator(getattr(_operator, _name)))
    if _name in ("add", "sub", "mul", "floordiv", "truediv", "mod", "pow"):
        setattr(EnumMember, f"__r{_name}__",
                _int_enum_operator(getattr(_operator, _name), reflected=True))


@dataclass(frozen=True, eq=False)
class Partial:
    """`functools.partial(func, *args, **kwargs)`: calling it calls `func` with them first."""

    func: Any
    args: tuple[Any, ...]
    kwargs: tuple[tuple[str, Any], ...]


class ConfigValue:
    """An `ml_collections.ConfigDict` (or `FrozenConfigDict`): named static fields.

    Attribute and item access, `**config`, nested configs (a dict assigned to a field
    becomes a config, as ml_collections does), `lock()` (no new fields), frozen copies.
    A static value: specialization compares contents; it is never emitted as code.
    """

    __slots__ = ("fields", "locked", "frozen")

    def __init__(self, fields: dict[str, Any] | None = None, frozen: bool = False):
        self.fields: dict[str, Any] = {}
        self.locked = False
        self.frozen = False
        for k, v in (fields or {}).items():
            self.set(k, v)
        self.locked = self.frozen = frozen

    def set(self, key: str, value: Any) -> None:
        """Assign a field; raises `StaticError` if the config forbids it."""
        if not isinstance(key, str):
            raise StaticError(f"config field names are strings, got {describe_value(key)}")
        if self.frozen:
            raise StaticError("a FrozenConfigDict cannot be changed")
        if self.locked and key not in self.fields:
            raise StaticError(f"the config is locked: it has no field '{key}' to set")
        if isinstance(value, dict):
            value = ConfigValue(value)
        self.fields[key] = value

    def freeze(self) -> "ConfigValue":
        out = ConfigValue()
        out.fields = {k: v.freeze() if isinstance(v, ConfigValue) else v
                      for k, v in self.fields.items()}
        out.locked = out.frozen = True
        return out

    def copy(self) -> "ConfigValue":
        out = ConfigValue()
        out.fields = {k: v.copy() if isinstance(v, ConfigValue) and not v.frozen else v
                      for k, v in self.fields.items()}
        out.locked, out.frozen = self.locked, self.frozen
        return out

    def to_dict(self) -> dict[str, Any]:
        return {k: v.to_dict() if isinstance(v, ConfigValue) else v
                for k, v in self.fields.items()}

    # mapping protocol, for `**config`, `dict(config)`, `len`, `in` and iteration
    def keys(self) -> list[str]:
        return list(self.fields)

    def __getitem__(self, key: str) -> Any:
        return self.fields[key]

    def __setitem__(self, key: str, value: Any) -> None:
        try:
            self.set(key, value)
        except StaticError as e:
            raise KeyError(str(e)) from None

    def __contains__(self, key: object) -> bool:
        return key in self.fields

    def __iter__(self):
        return iter(list(self.fields))

    def __len__(self) -> int:
        return len(self.fields)


@dataclass(eq=False)
class RecordClass:
    """A `@dataclass`, `typing.NamedTuple` class, `collections.namedtuple` or plain class of
    the model file."""

    name: str
    #: "dataclass", "namedtuple" (instances are tuples) or "plain" (a class statement of
    #: none of those: an instance holds what its `__init__` and methods set on it).
    kind: str
    fields: tuple[str, ...]
    #: Field defaults (a `dataclasses.field(default_factory=...)` keeps its factory).
    defaults: dict[str, Any]
    frozen: bool = False
    #: Methods of a class statement (`def head_dim(self)`), with `@property` ones marked.
    methods: dict[str, Any] = field(default_factory=dict)
    properties: frozenset[str] = frozenset()
    env: "Env | None" = None
    span: Span | None = None
    #: Class attributes that are not fields (`X = 3` without an annotation).
    attrs: dict[str, Any] = field(default_factory=dict)
    #: The record classes it derives from (for `isinstance`).
    bases: tuple["RecordClass", ...] = ()
    #: Methods its own class statement defines (the others are inherited: `owner`).
    own: frozenset[str] = frozenset()
    #: Methods decorated `@staticmethod` (called without `self`).
    statics: frozenset[str] = frozenset()
    #: Methods with a decorator the language does not take, each with the decorator's
    #: span: refused where code a target reaches uses them.
    refused: tuple[tuple[str, Any], ...] = ()

    def derives_from(self, other: "RecordClass") -> bool:
        return other is self or any(b.derives_from(other) for b in self.bases)

    def owner(self, method: str) -> "RecordClass":
        """The class whose statement defines `method` (its bases in order, depth first:
        Python's order for classes without shared bases)."""
        if method in self.own or not self.bases:
            return self
        for base in self.bases:
            if method in base.methods:
                return base.owner(method)
        return self


@dataclass(eq=False)
class Record:
    """An instance of a dataclass (or attrs class) of the model file: its field values."""

    cls: RecordClass
    values: dict[str, Any]

    def __eq__(self, other: object) -> bool:
        """As dataclasses and attrs classes compare: the same class and equal fields (an
        object of a plain class is equal only to itself, as in Python)."""
        if not isinstance(other, Record):
            return NotImplemented
        if self.cls.kind == "plain":
            return other is self
        return other.cls is self.cls and other.values == self.values

    # (the interpreter never keys its own tables by a record's value: identity hashing, as
    # before equality was defined, keeps those lookups what they were)
    __hash__ = object.__hash__


class RecordTuple(tuple):
    """An instance of a namedtuple of the model file: a tuple with field names."""

    cls: RecordClass

    @staticmethod
    def make(cls: RecordClass, values: list[Any]) -> "RecordTuple":
        out = RecordTuple(values)
        out.cls = cls
        return out


#: `jax.lax.ConvDimensionNumbers`: a namedtuple of jax, of three permutations (lists or tuples
#: of ints: batch or output feature, feature or input feature, spatial axes) that lax's
#: convolutions take for `dimension_numbers` as they take three layout strings.
CONV_DIMENSION_NUMBERS = RecordClass("ConvDimensionNumbers", "namedtuple",
                                     ("lhs_spec", "rhs_spec", "out_spec"), {}, True)


#: What `jnp.finfo(dtype)` and `jnp.iinfo(dtype)` give: numpy's numbers about a dtype, as
#: namedtuples of static values (`jnp.finfo(dtype).min`, as attention masks write).
FINFO = RecordClass("finfo", "namedtuple", ("bits", "eps", "max", "min", "tiny",
                                            "smallest_normal", "resolution", "precision",
                                            "dtype"), {}, True)
IINFO = RecordClass("iinfo", "namedtuple", ("bits", "min", "max", "dtype"), {}, True)

#: numpy has no bfloat16: its finfo (as ml_dtypes gives it), in Python floats.
BFLOAT16_FINFO = (16, 0.0078125, 3.3895313892515355e38, -3.3895313892515355e38,
                  1.1754943508222875e-38, 1.1754943508222875e-38, 0.01, 2)


def conv_dimension_numbers(specs: Any) -> "RecordTuple":
    """A `ConvDimensionNumbers` of three specs."""
    return RecordTuple.make(CONV_DIMENSION_NUMBERS, list(specs))


@dataclass(frozen=True, slots=True)
class DTypeKind:
    """`jnp.floating`, `jnp.integer`, ...: numpy's abstract dtype classes, for
    `jnp.issubdtype(dtype, jnp.floating)`."""

    name: str


#: The abstract dtype classes, each with the dtypes under it.
DTYPE_KINDS = {
    "generic": None, "number": ("int", "uint", "float", "bfloat16", "complex"),
    "inexact": ("float", "bfloat16", "complex"), "floating": ("float", "bfloat16"),
    "complexfloating": ("complex",), "integer": ("int", "uint"), "signedinteger": ("int",),
    "unsignedinteger": ("uint",),
}


def is_subdtype(dtype: str, kind: "DType | DTypeKind") -> bool:
    """`jnp.issubdtype(dtype, kind)` for a dtype name and a dtype or abstract class."""
    if isinstance(kind, DType):
        return dtype == kind.name
    prefixes = DTYPE_KINDS[kind.name]
    if prefixes is None:
        return True
    return any(dtype.startswith(p) and (p != "int" or not dtype.startswith("uint"))
               for p in prefixes)


@dataclass(frozen=True, slots=True)
class FieldDefault:
    """`dataclasses.field(default=..., default_factory=...)` in a dataclass body, or
    attrs' `attr.ib(default=..., factory=...)`."""

    default: Any
    factory: Any
    #: Made by `attr.ib()`: in an `@attr.s` class only these assignments are fields.
    attrib: bool = False


#: `dataclasses.field()` without a default.
NO_DEFAULT = object()


@dataclass(frozen=True, slots=True)
class Poison:
    """The value of an expression that already failed; silences cascades."""


POISON = Poison()


class Env:
    """Variable bindings: a dict with an optional parent (closures, globals)."""

    __slots__ = ("vars", "parent")

    def __init__(self, parent: "Env | None" = None):
        self.vars: dict[str, Any] = {}
        self.parent = parent

    def lookup(self, name: str) -> tuple[bool, Any]:
        env: Env | None = self
        while env is not None:
            if name in env.vars:
                return True, env.vars[name]
            env = env.parent
            if env is not None and type(env) is not Env:  # module globals, computed lazily
                return env.lookup(name)
        return False, None

    def set(self, name: str, value: Any) -> None:
        self.vars[name] = value


# ------------------------------------------------------------------ helpers


#: Items the deep walks below visited, not yet charged: the resolver takes them
#: (`walked()`) into its step budget, since walking a huge static value is work too.
_walked = [0]


def walked() -> int:
    """Container items visited by `is_static`, `contains_poison`, `static_key` and
    `to_code` since the last call."""
    n, _walked[0] = _walked[0], 0
    return n


#: Exact types of leaves the deep walks below meet most (no subclass: `RngKey` is a
#: `Tensor`, `bool` an `int`): each is answered by one look-up.
_SCALARS = {int: "int", bool: "bool", float: "float", str: "str", complex: "complex",
            type(None): "NoneType"}


def is_static(value: Any) -> bool:
    """True when `value` contains no tensor."""
    if type(value) in _SCALARS:
        return True
    if isinstance(value, Tensor):
        return False
    if isinstance(value, (tuple, list)):
        _walked[0] += len(value)
        for v in value:  # loops, not all(): the deep walks run for every call
            if not is_static(v):
                return False
        return True
    if isinstance(value, dict):
        _walked[0] += len(value)
        for v in value.values():
            if not is_static(v):
                return False
        return True
    if isinstance(value, ConfigValue):
        return all(is_static(v) for v in value.fields.values())
    if isinstance(value, Record):
        return all(is_static(v) for v in value.values.values())
    if isinstance(value, Partial):
        return is_static(value.args) and is_static([v for _, v in value.kwargs])
    return True


#: Leaves that are never poison: the scalars and `Tensor` itself (no subclass).
_CLEAN = frozenset({*_SCALARS, Tensor})


def contains_poison(value: Any) -> bool:
    if type(value) in _CLEAN:
        return False
    if isinstance(value, Poison):
        return True
    if isinstance(value, dict):
        _walked[0] += len(value)
        value = value.values()
    elif isinstance(value, (tuple, list)):
        _walked[0] += len(value)
    else:
        return False
    for v in value:  # the common leaves answered here, without a call
        if type(v) not in _CLEAN and contains_poison(v):
            return True
    return False


def static_key(value: Any) -> Any:
    """A hashable key that identifies a static value (for specialization)."""
    scalar = _SCALARS.get(type(value))
    if scalar is not None:  # what the chain below gives them, in one step
        return ("nan",) if scalar == "float" and math.isnan(value) else (scalar, value)
    if isinstance(value, Tensor):
        return ("tensor", value.shape, value.dtype, value.weak)
    if isinstance(value, RecordTuple):
        return ("record", id(value.cls), tuple(static_key(v) for v in value))
    if isinstance(value, Record):  # (the names too: a plain object's attributes vary)
        return ("record", id(value.cls), tuple((k, static_key(v))
                                               for k, v in value.values.items()))
    if isinstance(value, ConfigValue):
        return ("config", value.frozen, tuple((k, static_key(v))
                                              for k, v in value.fields.items()))
    if isinstance(value, Partial):
        return ("partial", static_key(value.func), static_key(value.args),
                static_key(dict(value.kwargs)))
    if isinstance(value, (list, tuple)):  # a shape read from an array is a plain tuple here
        _walked[0] += len(value)
        return ("list" if isinstance(value, list) else "tuple",
                tuple([static_key(v) for v in value]))
    if isinstance(value, dict):
        _walked[0] += len(value)
        return ("dict", tuple([(static_key(k), static_key(v)) for k, v in value.items()]))
    if isinstance(value, float) and math.isnan(value):
        return ("nan",)
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, int):
        return ("int", int(value))
    if isinstance(value, (float, complex, str, type(None))):
        return (type(value).__name__, value)
    if isinstance(value, ModuleRef):
        return ("module", value.module.name, id(value.module), static_key(dict(value.bound)))
    if isinstance(value, SharedModule):
        # a module receiving it takes its parameters as an argument: one specialization
        # serves every shared module of the same class and hyperparameters
        return ("shared", static_key(value.ref))
    if isinstance(value, (Closure, BoundMethod, SelfValue)):
        return ("object", id(value))
    try:
        hash(value)
    except TypeError:  # a value that holds interpreter state: identity is what matters
        return ("object", id(value))
    return ("value", value)


def numpy_scalar_name(value: Any) -> str | None:
    """`"float32"` for a numpy scalar (`np.float32(0.5)`, a result of numpy at build time)."""
    if type(value).__module__ == "numpy" and hasattr(value, "dtype"):
        return str(value.dtype)
    return None


def to_code(value: Any) -> str:
    """Python source for a static value used in emitted code (data through `quoting`)."""
    np_name = numpy_scalar_name(value)
    if np_name is not None and np_name in ("float16", "float32", "float64", "complex64",
                                           "complex128"):
        # a numpy scalar keeps its (strong) type in generated code, as it has under Flax
        number = complex(value) if np_name.startswith("complex") else float(value)
        return f"np.{np_name}({to_code(number)})"
    if isinstance(value, (bool, int, float, complex, str)) or value is None or \
            value is Ellipsis:
        return quoting.literal(value)
    if isinstance(value, (tuple, list, dict)):
        _walked[0] += len(value)
    if isinstance(value, RecordTuple) and value.cls is CONV_DIMENSION_NUMBERS:
        # lax reads ints as permutations only in its own namedtuple, never in a plain tuple
        return "jax.lax.ConvDimensionNumbers(" + ", ".join(
            f"{f}={to_code(v)}" for f, v in zip(value.cls.fields, value)) + ")"
    if isinstance(value, tuple):
        items = [to_code(v) for v in value]
        return "(" + ", ".join(items) + ("," if len(items) == 1 else "") + ")"
    if isinstance(value, list):
        return "[" + ", ".join(to_code(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{to_code(k)}: {to_code(v)}" for k, v in value.items()) + "}"
    if isinstance(value, slice):  # as a value (an argument): subscripts write their own
        bounds = [value.start, value.stop] + ([] if value.step is None else [value.step])
        return "slice(" + ", ".join(to_code(v) for v in bounds) + ")"
    if isinstance(value, DType):
        return value.code()
    if isinstance(value, Initializer):
        return value.code
    if isinstance(value, OpRef) and value.entry.code is not None:
        return value.entry.code
    if isinstance(value, OptaxValue):
        return value.code
    raise StaticError(f"{describe_value(value)} cannot appear in generated code")


def shown(value: Any, limit: int = 60) -> str:
    """`repr(value)` for a message: short, and never failing (a 20,000-digit int has no
    decimal repr in Python 3.11+, a self-containing list recurses)."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 128:
        return f"<an int of {value.bit_length():,} bits>"
    if isinstance(value, str) and len(value) > limit:
        return f"{value[:limit]!r}... ({len(value):,} characters)"
    if isinstance(value, (list, tuple, dict)) and len(value) > limit:
        return f"<a {type(value).__name__} of {len(value):,} items>"
    try:
        text = repr(value)
    except (ValueError, RecursionError):
        return f"<a {type(value).__name__}>"
    return text if len(text) <= 4 * limit else text[:4 * limit] + "..."


def describe_value(value: Any) -> str:
    """Short description of a value for messages."""
    if isinstance(value, Tensor):
        return f"array {value.describe()}"
    if isinstance(value, bool):
        return f"bool {value!r}"
    if numpy_scalar_name(value) is not None:
        return f"numpy {numpy_scalar_name(value)} {value.item()!r}"
    if isinstance(value, int):  # a size read from an array is a plain int here
        return f"int {shown(int(value))}"
    if isinstance(value, (float, str, complex)):
        return f"{type(value).__name__} {shown(value)}"
    if value is None:
        return "None"
    if isinstance(value, tuple):
        return "tuple " + ("(" + ", ".join(describe_value(v) for v in value[:4]) +
                           (", ..." if len(value) > 4 else "") + ")")
    if isinstance(value, list):
        return f"list of {len(value)}"
    if isinstance(value, dict):
        return f"dict of {len(value)}"
    if isinstance(value, DType):
        return f"dtype {value.name}"
    if isinstance(value, DTypeKind):
        return f"dtype class {value.name}"
    if isinstance(value, ModuleRef):
        return f"module {value.class_name}"
    if isinstance(value, SharedModule):
        return f"shared module {value.ref.class_name} '{value.name}'"
    if isinstance(value, OpRef):
        return f"function {value.written}"
    if isinstance(value, StaticIterator):
        return f"iterator at item {value.position} of {len(value.items)}"
    if isinstance(value, Closure):
        return f"function {value.name}"
    if isinstance(value, Initializer):
        return f"initializer {value.description}"
    if isinstance(value, Namespace):
        return f"module {value.name}"
    if isinstance(value, ModuleValue):
        return f"model file {value.name}"
    if isinstance(value, Opaque):
        return f"'{value.written}'"
    if isinstance(value, TypeHint):
        return f"type hint {value.name}"
    if isinstance(value, AbstractType):
        return f"collections.abc.{value.name}"
    if isinstance(value, (ConfigValue, Record, RecordTuple)):
        return _describe_record(value)
    if isinstance(value, RecordClass):
        return f"class {value.name}"
    if isinstance(value, Partial):
        return f"functools.partial({describe_value(value.func)})"
    if isinstance(value, StaticFunction):
        return f"function {value.name}"
    if isinstance(value, IndexMaker):
        return f"{value.name} (an index is written {value.name}[...])"
    if isinstance(value, FieldDefault):
        return "dataclasses.field(...)"
    if isinstance(value, EnumMember):
        return f"enum member {value!r}"
    if isinstance(value, EnumClass):
        return f"enum {value.name}"
    return _describe_other(value)


def _describe_other(value: Any) -> str:
    """Descriptions of the interpreter's other values, in the model's own words."""
    if isinstance(value, SelfValue):
        return "self (the module)"
    if isinstance(value, BoundMethod):
        return f"method {value.name}"
    if isinstance(value, StaticBuiltin):
        return f"builtin {value.name}"
    if isinstance(value, InitializerFactory):
        return f"initializer factory nn.initializers.{value.name} (not called)"
    if isinstance(value, Spec):
        return f"input spec aot.{value.dtype}[{', '.join(map(str, value.shape))}]"
    if isinstance(value, SpecDType):
        return f"input dtype {value.dtype} (index it with a shape: [8, 784])"
    if isinstance(value, Poison):
        return "a value that failed earlier"
    if isinstance(value, OptaxFn):
        return f"optax.{value.name} (not called)"
    if isinstance(value, OptaxValue):
        return "an optax transformation"
    if isinstance(value, Traversal):
        return "a ModelParamTraversal"
    if isinstance(value, MultiOptimizer):
        return "a MultiOptimizer"
    if isinstance(value, MeshSpec):
        return "aot.mesh(" + ", ".join(f"{n}={k}" for n, k in value.axes) + ")"
    if isinstance(value, AttentionCache):
        return "attention cache" + (f" {value.shape}" if value.shape is not None else "")
    if isinstance(value, SuperLayer):
        return "super() (the layer)"
    if isinstance(value, slice):
        return "a slice"
    if value is Ellipsis:
        return "..."
    described = getattr(value, "description", None)  # values of the operation table (x.at)
    if isinstance(described, str):
        return described
    name = type(value).__name__
    known = {"Sequential": "nn.Sequential(...)", "StateVariable": "a state variable",
             "Scope": "a module scope", "RngKey": "a random key",
             "CacheEntry": "a cache entry (from cache.retrieve())"}
    return known.get(name, "a build-time value")


def _describe_record(value: Any, limit: int = 120) -> str:
    """`ConfigDict(hidden=16, act='relu')`, `Cfg(depth=2)`: short, for messages and docs."""
    name = getattr(getattr(value, "cls", None), "name", "ConfigDict")
    if isinstance(value, ConfigValue):
        items = list(value.fields.items())
    elif isinstance(value, Record):
        items = list(value.values.items()) if isinstance(value.values, dict) else []
    else:
        items = list(zip(getattr(value.cls, "fields", ()), value))
    parts = []
    for k, v in items:
        if isinstance(v, (ConfigValue, Record, RecordTuple)):
            text = _describe_record(v, limit)
        else:
            try:
                text = to_code(v)
            except StaticError:
                text = describe_value(v)
        parts.append(f"{k}={text}")
    out = f"{name}({', '.join(parts)})"
    return out if len(out) <= limit else out[:limit - 4] + "...)"


@dataclass(frozen=True, slots=True)
class OptaxFn:
    """An optax function (`optax.adam`) before it is called."""

    name: str


@dataclass(frozen=True, slots=True)
class OptaxValue:
    """An optax transformation or schedule, as code for the generated module."""

    #: e.g. "optax.adam(learning_rate=0.001)".
    code: str


@dataclass(frozen=True, slots=True)
class Traversal:
    """`aot.ModelParamTraversal(filter_fn)`: selects parameters by path at build time."""

    #: `filter_fn(path: str, param) -> bool`; path is "/Dense_0/kernel".
    filter: Any
    span: Span


@dataclass(frozen=True, slots=True)
class MultiOptimizer:
    """`aot.MultiOptimizer((traversal, optimizer), ...)`: optax.multi_transform by path."""

    groups: tuple[tuple[Traversal, OptaxValue], ...]
    span: Span


@dataclass(frozen=True, slots=True)
class AttentionCache:
    """`nn.attention.Cache()`, old flax.nn's decode cache, as a hyperparameter.

    `initialize_cache((batch..., length))` fixes the shape of the batch and attention
    dimensions.  A target whose module gets one decodes: attention layers called with
    `cache=` and modules that `cache.retrieve()` / `cache.store()` keep their entries in
    the explicit `cache` state collection (Linen's layout), not in a Python object.
    """

    #: Batch and attention dimensions, e.g. (2, 16); None before `initialize_cache`.
    shape: tuple[int, ...] | None = None


@dataclass(frozen=True, slots=True)
class MeshSpec:
    """`aot.mesh(data=2, model=4)`: named device-mesh axes and their sizes."""

    axes: tuple[tuple[str, int], ...]

    @property
    def size(self) -> int:
        n = 1
        for _, k in self.axes:
            n *= k
        return n
