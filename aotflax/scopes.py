"""Module scopes: Linen naming, parameter/state declarations and RNG paths.

A user module becomes one emitted function per specialization.  While its body
is resolved, a `FunctionState` collects what the function needs (its ops, its
parameters relative to its own subtree, the state collections it reads and
returns, whether it takes an rng), and `Scope`s hand out Linen's names:
per-class automatic numbering (`Dense_0`, `Dense_1`), explicit names that do
not advance the counter, and an error for a reused name.
"""

from __future__ import annotations

import functools
import re
import zlib
from dataclasses import dataclass, field
from typing import Any, Protocol

from . import quoting
from .diagnostics import Note, Span
from .ops.calls import LayerScope
from .ops.registry import CallError
from .program import Code, Op, OpInfo, ParamDecl, Tensor, Var
from .symbolic import SENTINELS_A, SENTINELS_B
from .values import Closure, Initializer, InitializerFactory, Partial, describe_value


class Initializers(Protocol):
    """Resolves a model file's own initializer for one shape (implemented by resolve)."""

    def user_initializer(self, init: Closure | Partial, shape: tuple[int, ...], dtype: str,
                         span: Span) -> str: ...


class FunctionState:
    """Everything an emitted function accumulates while its body is resolved."""

    def __init__(self, initializers: Initializers | None = None) -> None:
        #: Interprets user initializers into emitted functions (None: none allowed here).
        self.initializers = initializers
        self.ops: list[Op] = []
        #: Preferred variable names (id(var) -> name) from DSL assignments.
        self.hints: dict[int, str] = {}
        #: Parameters by path relative to this function's `params`.
        self.params: dict[tuple[str, ...], ParamDecl] = {}
        #: Parameters the module instance declared before this method was called, by
        #: relative path (a shared module's `apply` declared them; another of its methods
        #: reads them with `self.get_param`): taken into `params` when read.
        self.known: dict[tuple[str, ...], ParamDecl] = {}
        #: State variables: (collection, relative path) -> declaration.
        self.state: dict[tuple[str, tuple[str, ...]], ParamDecl] = {}
        #: Current state values (collection, relative path) -> Code or Var (leaf or subtree).
        self.state_values: dict[tuple[str, tuple[str, ...]], Code | Var] = {}
        #: Collections read (become arguments).
        self.collections: list[str] = []
        self.takes_rng = False
        #: Shared modules received as arguments, each with its own parameter subtree.
        self.shared_args: list[SharedArg] = []
        #: It initializes parameters from data (itself or a module it calls): it gets an
        #: init variant (see `program.Function.init_name`).
        self.data_init = False
        #: Step indices of the `lax.scan` bodies being resolved (innermost last), and those
        #: a random key was folded with (the scan then feeds its steps their index).
        self.scan_steps: list[Tensor] = []
        self.used_steps: set[int] = set()
        #: The `with nn.stochastic(rng):` blocks being run (innermost last): inside one, a
        #: key is old flax.nn's `fold_in(rng, n)` for the block's n-th draw.
        self.stochastic: list[StochasticBlock] = []
        #: numpy's global random state as `np.random.seed(s)` in this function left it (a
        #: `numpy.random.RandomState`, advanced at build time by each draw), or None.
        self.np_random: Any = None

    # registry.Context
    def new_tensor(self, shape: tuple[int, ...], dtype: str, weak: bool = False) -> Tensor:
        return Tensor(checked_shape(shape), dtype, weak)

    def emit(self, template: str, args: dict[str, Code], outputs: tuple[Var, ...], span: Span,
             stem: str, temps: tuple[str, ...] = (), info: OpInfo | None = None, *,
             init_only: bool = False, init_args: dict[str, Code] | None = None,
             temp_types: tuple = ()) -> None:
        # (positional: the cheapest way to fill the op's eleven fields, made for every op)
        self.ops.append(Op(template, tuple(args.items()), tuple(outputs), tuple(temps), span,
                           stem, (), info, init_only,
                           tuple(init_args.items()) if init_args else None, tuple(temp_types)))

    def hint(self, var: Any, name: str) -> None:
        if isinstance(var, Var):
            self.hints.setdefault(id(var), name)

    def use_collection(self, collection: str) -> None:
        if collection not in self.collections:
            self.collections.append(collection)


@functools.lru_cache(maxsize=8192)
def subscript_path(root: str, path: tuple[str, ...]) -> str:
    """`root["a"]["b"]`: names in the path are data, quoted as string literals.

    Cached: a module's paths are quoted again for every parameter, state read and call.
    """
    return quoting.subscript(root, path)


def name_hash(name: str) -> int:
    """A stable 31-bit number for a scope name (folded into rng keys)."""
    return zlib.crc32(name.encode()) & 0x7FFFFFFF


@dataclass(eq=False)
class SharedArg:
    """A shared module handed to a user module: an argument holding its parameter subtree.

    Old flax.nn kept a shared module's parameters where `.shared(...)` was called, however
    deep the module that calls it.  The emitted function of the receiving module takes
    that subtree as the argument `name`; the parameters its calls declare are collected
    here (relative to the subtree) and merged by the caller into the creator's tree.
    """

    #: Argument name in the emitted function.
    name: str
    #: Where the shared module sits in the bound arguments: (parameter, index path).
    where: tuple[Any, ...]
    #: Parameters declared through it, relative to its own subtree.
    params: dict[tuple[str, ...], ParamDecl] = field(default_factory=dict)


@dataclass
class Scope(LayerScope):
    """A module instance: its path inside the current function and its children's names."""

    fn: FunctionState
    #: Path relative to the function's root (empty for the module itself).
    prefix: tuple[str, ...]
    #: Class name shown in messages.
    owner: str
    counters: dict[str, int] = field(default_factory=dict)
    used: dict[str, Span] = field(default_factory=dict)
    #: The shared module received as an argument this scope belongs to (None: the
    #: function's own `params`).
    shared_arg: SharedArg | None = None

    @property
    def root(self) -> str:
        """The variable holding the parameter tree `prefix` is relative to."""
        return "params" if self.shared_arg is None else self.shared_arg.name

    @property
    def params(self) -> dict[tuple[str, ...], ParamDecl]:
        """Where parameters declared in this scope are recorded."""
        return self.fn.params if self.shared_arg is None else self.shared_arg.params

    # -------------------------------------------------------------- naming

    def child_name(self, class_name: str, explicit: Any, span: Span, *,
                   shared: bool = False) -> str:
        """Linen's naming: explicit names as given, else `Class_N` counted per class.

        As in Linen, an explicit name does not advance the counter, and an automatic
        name is never skipped: `name="Dense_0"` followed by an unnamed Dense is an error
        (Linen's NameInUseError), not a silent `Dense_1`.
        """
        if explicit is not None:
            if not isinstance(explicit, str):
                raise CallError("AOT310", f"name= must be a string, got {explicit!r}")
            check_name(explicit, "module name")
            name = explicit
        else:
            n = self.counters.get(class_name, 0)
            name = f"{class_name}_{n}"
            self.counters[class_name] = n + 1
            if name in self.used:
                raise CallError(
                    "AOT311",
                    f"this {class_name} is named '{name}' automatically (Linen's per-class "
                    f"numbering), but a submodule of {self.owner} already has that name",
                    hint="give the other layer a name that is not of the form "
                         f"'{class_name}_<n>', or give this one an explicit name= too",
                    notes=(Note("first used here", self.used[name]),),
                )
        if name in self.used:
            raise CallError(
                "AOT311",
                f"a submodule named '{name}' already exists in {self.owner}; to call it again "
                f"with the same parameters, create it once with .shared(name={name!r})",
                hint="to call one layer several times with one set of parameters, create it "
                     f"once with {class_name}.shared(..., name={name!r}) and call that; to get "
                     "a second layer, give it another name",
                notes=(Note("first used here", self.used[name]),),
            )
        self.used[name] = span
        return name

    def child(self, name: str, owner: str) -> "Scope":
        return Scope(self.fn, self.prefix + (name,), owner, shared_arg=self.shared_arg)

    # -------------------------------------------------------------- LayerScope

    def param(self, name: str, shape: tuple[int, ...], dtype: str, init: Any,
              span: Span) -> Code:
        path = self.prefix + (name,)
        shape = checked_shape(shape, "parameter", name)
        if 0 in shape:  # initializers divide by fan-in; Linen's init fails the same way
            raise CallError("AOT210", f"parameter '{'/'.join(path)}' would have the zero-size "
                            f"shape {tuple(shape)}", hint="look for an input or feature "
                            "count of size 0")
        code = _init_code(self.fn, init, shape, dtype, span)
        existing = self.params.get(path)
        if existing is not None:
            if (existing.shape, existing.dtype) != (shape, dtype):
                raise CallError(
                    "AOT312",
                    f"parameter '{'/'.join(path)}' declared again with shape {shape} "
                    f"{dtype}, first {existing.shape} {existing.dtype}",
                    notes=(Note("first declared here", existing.span),),
                    hint="a shared layer must see inputs of the same shape on every call",
                )
        else:
            self.params[path] = ParamDecl(path, shape, dtype, code, span)
        return Code((subscript_path(self.root, path),))

    def state(self, collection: str, name: str, shape: tuple[int, ...], dtype: str, init: Any,
              span: Span) -> Code:
        key = (collection, self.prefix + (name,))
        shape = checked_shape(shape, "state variable", name)
        if self.shared_arg is not None:
            raise CallError(
                "AOT370", f"{self.owner} keeps state ('{collection}/{name}'), and a shared "
                f"module with state can only be called in the module that created it (here "
                f"it was passed in as '{self.shared_arg.name}')",
                hint="call it in the module that created it and pass its outputs on")
        if key not in self.fn.state:
            self.fn.state[key] = ParamDecl(key[1], shape, dtype,
                                           _init_code(self.fn, init, shape, dtype, span), span)
        self.fn.use_collection(collection)
        current = self.fn.state_values.get(key)
        if current is None:
            # a layer called before on this path set its whole subtree (`set_state_tree`)
            for i in range(len(key[1]) - 1, -1, -1):
                tree = self.fn.state_values.get((collection, key[1][:i]))
                if isinstance(tree, Var):
                    return Code((tree, "".join(f"[{quoting.string(p)}]" for p in key[1][i:])))
            return Code((subscript_path(collection, key[1]),))
        return current if isinstance(current, Code) else Code((current,))

    def set_state(self, collection: str, name: str, value: Tensor, span: Span) -> None:
        key = (collection, self.prefix + (name,))
        decl = self.fn.state[key]
        if (value.shape, value.dtype) != (decl.shape, decl.dtype):
            raise CallError(
                "AOT313",
                f"state '{collection}/{'/'.join(key[1])}' is {_desc(decl.shape, decl.dtype)} "
                f"but is assigned {value.describe()}",
                notes=(Note("declared here", decl.span),),
                # a state variable keeps its declared type: `init` runs its initializer,
                # never the forward pass that assigns it (old flax.nn's init did)
                hint=f"declare it with the type it holds: self.state({quoting.string(name)}, "
                     f"{quoting.literal(tuple(value.shape))}"
                     + ("" if value.dtype == "float32" else f", dtype=jnp.{value.dtype}")
                     + ")",
            )
        self.fn.state_values[key] = value

    def set_state_tree(self, collection: str, value: Var, span: Span) -> None:
        """The new state of this layer in `collection`, one value holding its subtree
        (a layer helper's returned dict); later reads of its leaves index it."""
        stale = [k for k in self.fn.state_values
                 if k[0] == collection and k[1][:len(self.prefix)] == self.prefix]
        for k in stale:
            del self.fn.state_values[k]
        self.fn.state_values[(collection, self.prefix)] = value

    def rng(self, span: Span) -> Code:
        """The key of this call site: `rng` folded with the path, and inside a `lax.scan`
        step with the step's index too (a fresh key per step).  Inside `with
        nn.stochastic(key):` it is the block's next key instead (the target's rng unused)."""
        if self.fn.stochastic:
            return _per_step(self.fn, self.fn.stochastic[-1].next_key())
        self.fn.takes_rng = True
        code = Code(("rng",))
        if self.prefix or self.shared_arg is not None:
            path = "/".join(self.prefix)
            if self.shared_arg is not None:  # its own key, whatever the path inside it
                path = f"{self.shared_arg.name}:{path}"
            code = Code((f"jax.random.fold_in(rng, {name_hash(path)})",))
        return _per_step(self.fn, code)


@dataclass
class GivenScope(Scope):
    """A layer applied with parameters the caller passes (`nn.Dense.call(params, x, 5)`).

    Nothing is declared: each parameter the layer asks for is looked up in `given`
    (a nested dict of the caller's arrays, relative to this scope) and checked
    against the shape and dtype the layer declares.
    """

    given: Any = None
    #: How the caller wrote the call, for messages ("nn.Dense.call").
    written: str = ""

    def child(self, name: str, owner: str) -> "Scope":
        sub = self.given.get(name) if isinstance(self.given, dict) else None
        if not isinstance(sub, dict):
            raise CallError("AOT373", f"the parameters given to {self.written} have no "
                            f"submodule '{'/'.join(self.prefix + (name,))}'",
                            hint=f"give {owner}'s parameters as a dict under '{name}'")
        return GivenScope(self.fn, self.prefix + (name,), owner, given=sub,
                          written=self.written)

    def param(self, name: str, shape: tuple[int, ...], dtype: str, init: Any,
              span: Span) -> Code:
        path = "/".join(self.prefix + (name,))
        value = self.given.get(name) if isinstance(self.given, dict) else None
        want = _desc(tuple(shape), dtype)
        if not isinstance(value, Tensor):
            got = "nothing" if value is None else describe_value(value)
            raise CallError("AOT373", f"the parameters given to {self.written} need '{path}' "
                            f"({want}), found {got}",
                            hint="pass a dict with the names and shapes the layer declares")
        if (value.shape, value.dtype) != (tuple(shape), dtype):
            raise CallError("AOT373", f"the parameter '{path}' given to {self.written} is "
                            f"{value.describe()}, but it declares {want}",
                            hint="cast with .astype(...) or pass param_dtype= to match")
        return Code((value,))

    def state(self, collection: str, name: str, shape: tuple[int, ...], dtype: str, init: Any,
              span: Span) -> Code:
        raise CallError("AOT373", f"{self.written}: a layer applied with given parameters "
                        f"cannot keep state ('{collection}/{name}')",
                        hint="call the layer itself to keep its state")

    def rng(self, span: Span) -> Code:
        self.fn.takes_rng = True
        path = "/".join(("call", self.written, *self.prefix))
        return _per_step(self.fn, Code((f"jax.random.fold_in(rng, {name_hash(path)})",)))


@dataclass
class HookedScope(Scope):
    """The scope of a built-in layer subclassed to override `param` (weight standardization).

    Each parameter the layer declares goes through `hook(scope, name, shape, dtype,
    init, span)`, which runs the subclass's `param` and returns the code of what the
    layer uses instead.  Submodules of the layer are plain scopes, as in old flax.nn
    (their parameters belong to other module classes).
    """

    hook: Any = None

    def param(self, name: str, shape: tuple[int, ...], dtype: str, init: Any,
              span: Span) -> Code:
        return self.hook(self, name, tuple(shape), dtype, init, span)

    def declare(self, name: str, shape: tuple[int, ...], dtype: str, init: Any,
                span: Span) -> Code:
        """The parameter itself (`super().param(...)` in the subclass)."""
        return Scope.param(self, name, shape, dtype, init, span)


@dataclass(eq=False)
class StateVariable:
    """`self.state(name, shape, init)`: a user state variable with `.value` reads and writes.

    Reads give the current value (the function's state argument until the first
    write, then the written tensor); writes become the variable's entry in
    `new_state`.
    """

    scope: Scope
    collection: str
    name: str
    shape: tuple[int, ...]
    dtype: str
    span: Span

    @property
    def key(self) -> tuple[str, tuple[str, ...]]:
        return (self.collection, self.scope.prefix + (self.name,))

    def read(self, span: Span) -> Tensor:
        fn = self.scope.fn
        current = fn.state_values.get(self.key)
        if isinstance(current, Tensor):
            return current
        out = Tensor(self.shape, self.dtype)
        fn.emit("ops/call.j2", {"call": Code((subscript_path(*self.key),))}, (out,), span,
                self.name)
        # later reads reuse this tensor; an unwritten variable returns it unchanged
        fn.state_values[self.key] = out
        return out

    def write(self, value: Tensor, span: Span) -> None:
        self.scope.set_state(self.collection, self.name, value, span)


@dataclass(eq=False)
class StochasticBlock:
    """`with nn.stochastic(key):`: old flax.nn's `_PRNGFrame`, whose n-th `make_rng()` is
    `jax.random.fold_in(key, n)` (a raw `PRNGKey` is wrapped: keys here are typed)."""

    key: Var
    raw: bool
    draws: int = 0

    def next_key(self) -> Code:
        self.draws += 1
        key = Code.of("jax.random.wrap_key_data(", self.key, ")") if self.raw else \
            Code((self.key,))
        return Code.of("jax.random.fold_in(", key, f", {self.draws})")


def _per_step(fn: FunctionState, code: Code) -> Code:
    """A key inside `lax.scan` steps, folded with each step's index (a fresh key per step)."""
    for index in fn.scan_steps:
        fn.used_steps.add(id(index))
        code = Code.of("jax.random.fold_in(", code, ", ", index, ")")
    return code


def _desc(shape: tuple[int, ...], dtype: str) -> str:
    from .program import describe

    return describe(shape, dtype)


def _init_code(fn: FunctionState, init: Any, shape: tuple[int, ...], dtype: str,
               span: Span) -> str:
    """Code of the callable `(key, shape, dtype)` that initializes one variable.

    A function of the model file is never copied: resolve interprets it for this shape
    and dtype like any model code, and the emitted function is what `init` calls.
    """
    if isinstance(init, Initializer):
        value = init.value_shape
        if value is not None and (len(value) > len(shape) or any(
                v not in (1, d) for v, d in zip(value[::-1], shape[::-1]))):
            raise CallError("AOT314", f"{init.description} fills a value of shape {value} "
                            f"into a parameter of shape {tuple(shape)}: the value must "
                            "broadcast to the parameter's shape")
        return init.code
    if (isinstance(init, Closure) or isinstance(init, Partial) and isinstance(
            init.func, Closure)) and fn.initializers is not None:
        return fn.initializers.user_initializer(init, shape, dtype, span)
    if isinstance(init, InitializerFactory):
        raise CallError("AOT314", f"got the initializer factory nn.initializers.{init.name} "
                        "without calling it", hint=f"write nn.initializers.{init.name}(...)")
    raise CallError(
        "AOT314",
        "an initializer must be one of nn.initializers or a function (key, shape, dtype) "
        f"of the model file, got {describe_value(init)}",
    )


#: Largest array XLA can describe: sizes are int64, so keep well inside it.
MAX_ELEMENTS = 2**62
#: The sizes symbolic dimensions resolve as (`symbolic.py`): they stand for a size only
#: known at run time, so they do not count towards the bound (a batch times two lengths
#: of sentinels would pass 2**62 at no real size).
_SENTINELS = frozenset(SENTINELS_A) | frozenset(SENTINELS_B)


def check_shape(shape: Any, what: str = "array") -> None:
    """Shapes built from model values must be non-negative ints that JAX can represent."""
    size = 1
    for d in shape:
        if (type(d) is not int and (isinstance(d, bool) or not isinstance(d, int))) or d < 0:
            raise CallError("AOT210", f"{what} shape {tuple(shape)!r} has an invalid dimension "
                            f"{d!r}: dimensions are non-negative ints")
        size *= 1 if d in _SENTINELS else d
        if d > MAX_ELEMENTS or size > MAX_ELEMENTS:
            raise CallError("AOT210", f"{what} shape {tuple(shape)!r} is too large: more than "
                            "2**62 elements")


def checked_shape(shape: Any, what: str = "array", name: str | None = None
                  ) -> tuple[int, ...]:
    """`check_shape`, and the shape as a tuple of plain ints: `shape` itself when it is
    one (the common case, checked in one pass), else a converted copy (sizes read from
    arrays are ints that carry code).  `name`: the variable's, for messages
    ("parameter 'kernel'")."""
    if type(shape) is tuple:
        size = 1
        for d in shape:
            if type(d) is not int or d < 0 or d > MAX_ELEMENTS:
                break
            if d not in _SENTINELS:
                size *= d
                if size > MAX_ELEMENTS:
                    break
        else:
            return shape
    check_shape(shape, what if name is None else f"{what} '{name}'")
    return tuple(int(d) for d in shape)


_NAME = re.compile(r"[\w.\-]+")


def check_name(name: Any, what: str) -> None:
    """Names become dict keys in generated code: keep them to a safe, readable alphabet."""
    if not isinstance(name, str):
        raise CallError("AOT310", f"a {what} must be a string, got {describe_value(name)}")
    if not _NAME.fullmatch(name) or len(name) > 200:
        raise CallError("AOT310", f"invalid {what} {name!r}: names are non-empty and contain "
                        "only letters, digits, '_', '-' and '.'")
