"""The operation table: one `Entry` per built-in layer, function and operator.

Each entry holds its call signature, its rule (which checks arguments, computes
output shapes and dtypes, declares parameters or state, and picks template
arguments) and its template under `templates/`.  `resolve` calls rules,
`emit` renders templates, and the docs and the coverage test list the table:
there is no other place that knows what an operation is.

A rule receives a call context (`FnCall` for functions, `LayerCall` for layers
with parameters) and reports user errors with `call.fail(...)`.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

from ..diagnostics import Note, Span
from ..program import Code, OpInfo, Tensor, Var
from ..values import (
    POISON,
    DType,
    Initializer,
    ModuleRef,
    StaticError,
    describe_value,
    to_code,
)

REQUIRED = object()


class CallError(Exception):
    """A user error inside a rule; resolve turns it into a located diagnostic."""

    def __init__(self, code: str, message: str, hint: str | None = None,
                 notes: tuple[Note, ...] = (), span: Span | None = None):
        super().__init__(message)
        self.code, self.message, self.hint, self.notes, self.span = code, message, hint, notes, span


@dataclass(frozen=True, slots=True)
class ParamSpec:
    name: str
    default: Any = REQUIRED
    #: "positional", "kwonly" or "vararg".
    kind: str = "positional"


@dataclass(frozen=True, slots=True)
class Signature:
    params: tuple[ParamSpec, ...]
    #: Derived from `params` once (every call of the entry binds against them).
    _names: tuple[str, ...] = field(init=False, repr=False, compare=False)
    _positional: tuple[ParamSpec, ...] = field(init=False, repr=False, compare=False)
    _vararg: ParamSpec | None = field(init=False, repr=False, compare=False)
    _known: frozenset[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_names", tuple(p.name for p in self.params))
        object.__setattr__(self, "_positional",
                           tuple(p for p in self.params if p.kind == "positional"))
        object.__setattr__(self, "_vararg",
                           next((p for p in self.params if p.kind == "vararg"), None))
        object.__setattr__(self, "_known", frozenset(self._names))

    @staticmethod
    def parse(text: str, defaults: dict[str, Any] | None = None) -> "Signature":
        """'x, axis=None, *, keepdims=False' with defaults looked up in `defaults`.

        Defaults are written as Python literals or as names in `defaults`.
        """
        import ast

        out: list[ParamSpec] = []
        kwonly = False
        for raw in [p.strip() for p in text.split(",") if p.strip()]:
            if raw == "/":  # positional-only marker: bound positionally or by name alike
                continue
            if raw == "*":
                kwonly = True
                continue
            if raw.startswith("*"):
                out.append(ParamSpec(raw[1:], (), "vararg"))
                kwonly = True
                continue
            name, _, default_text = raw.partition("=")
            name = name.strip()
            if not _:
                default: Any = REQUIRED
            elif defaults and default_text.strip() in defaults:
                default = defaults[default_text.strip()]
            else:
                default = ast.literal_eval(default_text.strip())
            out.append(ParamSpec(name, default, "kwonly" if kwonly else "positional"))
        return Signature(tuple(out))

    def names(self) -> tuple[str, ...]:
        return self._names

    def bind(self, what: str, args: list[Any], kwargs: dict[str, Any]) -> dict[str, Any]:
        """Bind like Python; raise `CallError` with the signature in the message."""
        bound: dict[str, Any] = {}
        positional = self._positional
        vararg = self._vararg
        if len(args) > len(positional) and vararg is None:
            raise CallError(
                "AOT301",
                f"{what} takes at most {len(positional)} positional arguments, got {len(args)}",
                hint=f"signature: {what}({self.describe()})",
            )
        for p, a in zip(positional, args):
            bound[p.name] = a
        if vararg is not None:
            bound[vararg.name] = tuple(args[len(positional):])
        known = self._known
        for k, v in kwargs.items():
            if k not in known or (vararg is not None and k == vararg.name):
                raise CallError(
                    "AOT302",
                    f"{what} got an unexpected keyword argument '{k}'",
                    hint=f"signature: {what}({self.describe()})",
                )
            if k in bound:
                raise CallError("AOT303", f"{what} got multiple values for argument '{k}'")
            bound[k] = v
        for p in self.params:
            if p.name in bound:
                continue
            if p.default is REQUIRED:
                raise CallError(
                    "AOT304",
                    f"{what} is missing required argument '{p.name}'",
                    hint=f"signature: {what}({self.describe()})",
                )
            bound[p.name] = p.default
        return bound

    def describe(self) -> str:
        parts = []
        star = False
        for p in self.params:
            if p.kind == "vararg":
                parts.append("*" + p.name)
                star = True
                continue
            if p.kind == "kwonly" and not star:
                parts.append("*")
                star = True
            parts.append(p.name if p.default is REQUIRED else f"{p.name}={shorten(p.default)}")
        return ", ".join(parts)


def shorten(value: Any) -> str:
    if isinstance(value, (DType, Initializer)):
        return to_code(value)
    if isinstance(value, ModuleRef):  # a module passed as a hyperparameter has no code
        return describe_value(value)
    try:
        return to_code(value)
    except StaticError:
        return describe_value(value)


class Context(Protocol):
    """What rules need from resolve (implemented by `resolve.FunctionBuilder`)."""

    def new_tensor(self, shape: tuple[int, ...], dtype: str, weak: bool = False) -> Tensor: ...

    def emit(self, template: str, args: dict[str, Code], outputs: tuple[Var, ...],
             span: Span, stem: str, temps: tuple[str, ...] = (),
             info: OpInfo | None = None, *, temp_types: tuple = ()) -> None: ...


@dataclass(frozen=True, eq=False)
class Entry:
    """One operation of the table."""

    #: Name as the DSL writes it after its namespace ("mean", "Dense", "relu").
    name: str
    #: Namespaces it is reachable from, e.g. ("jnp",), ("nn", "jax.nn").
    namespaces: tuple[str, ...]
    #: "function" (no parameters), "layer" (declares parameters/state), "method" (on arrays).
    kind: str
    signature: Signature
    #: The rule: `rule(call) -> value` (see `FnCall` / `LayerCall`).
    rule: Callable[..., Any]
    #: Template under templates/ used by the rule's default emission.
    template: str
    #: Code naming this callable in generated code (e.g. "jax.nn.relu"), when it can be
    #: passed around as a value (activation=nn.relu); None otherwise.
    code: str | None = None
    #: Linen class name used for automatic naming (layers only).
    linen_name: str | None = None
    #: One-line description for docs.
    doc: str = ""
    #: Whether the op needs randomness (dropout).
    stochastic: bool = False
    #: Static-evaluable: when every argument is static, evaluate in Python instead.
    static_fn: Callable[..., Any] | None = None
    #: Extra information for the rule.
    extra: dict[str, Any] = field(default_factory=dict)

    @functools.cached_property
    def qualname(self) -> str:
        """The name under its first namespace ("nn.Dense", "jnp.mean", "operator.add")."""
        return f"{self.namespaces[0]}.{self.name}"


def qualname(entry: Entry) -> str:
    """The entry's name under its first namespace ("nn.Dense", "jnp.mean", "operator.add")."""
    return entry.qualname


class Registry:
    """Entries by qualified name ("jnp.mean", "nn.Dense")."""

    def __init__(self) -> None:
        self.entries: dict[str, Entry] = {}

    def add(self, entry: Entry) -> Entry:
        for ns in entry.namespaces:
            key = f"{ns}.{entry.name}"
            if key in self.entries:
                raise ValueError(f"duplicate operation {key}")
            self.entries[key] = entry
        return entry

    def lookup(self, namespace: str, name: str) -> Entry | None:
        return self.entries.get(f"{namespace}.{name}")

    def entry(self, namespace: str, name: str) -> Entry:
        """A registered entry the table itself refers to (KeyError: a table bug)."""
        return self.entries[f"{namespace}.{name}"]

    def members(self, namespace: str) -> dict[str, Entry]:
        prefix = namespace + "."
        return {k[len(prefix):]: e for k, e in self.entries.items()
                if k.startswith(prefix) and "." not in k[len(prefix):]}

    def unique(self) -> list[Entry]:
        seen: dict[int, Entry] = {}
        for e in self.entries.values():
            seen.setdefault(id(e), e)
        return list(seen.values())


REGISTRY = Registry()

__all__ = ["REGISTRY", "REQUIRED", "CallError", "Entry", "Signature", "ParamSpec", "POISON"]
