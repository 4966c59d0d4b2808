"""A model file's top level, resolved on demand.

Real model files are ordinary Python around the modules: flag definitions, a
training loop, `if __name__ == "__main__":`.  The build interprets only what the
declared targets reach.  Every module-level name is bound by some statements
(assignments, `def`, `class`, imports, and statements that mutate it, such as
`config.update(...)`); the first lookup of a name executes those statements, in
source order, and nothing else.  The roots are the statements that declare
targets.  What no target reaches is never interpreted, so it can be anything
Python accepts; the driver warns once per such statement.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, Iterator

from .. import ir, namespaces
from ..diagnostics import Note, Span
from ..values import Env, ModuleValue, Namespace, Opaque
from .base import Frame

if TYPE_CHECKING:
    from .core import Resolver

#: The libraries the static language interprets (with their submodules): each top-level
#: module, and how an error about imports names it ("" where another row says it).
INTERPRETED_LIBRARIES: tuple[tuple[str, str], ...] = (
    ("aotflax", "aotflax"), ("jax", "jax"), ("numpy", "numpy"), ("math", "math"),
    ("functools", "functools"), ("itertools", "itertools"), ("operator", "operator"),
    ("string", "string"), ("typing", "typing"), ("dataclasses", "dataclasses"),
    ("attr", "attr"), ("attrs", ""), ("collections", "collections"), ("abc", "abc"),
    ("enum", "enum"), ("chex", "chex's shape and type assertions"),
    ("einops", "einops (rearrange, reduce, repeat)"), ("ml_collections", "ml_collections"),
    ("optax", "optax"), ("logging", "logging (absl.logging)"), ("gin", "gin's decorators"),
    ("__future__", ""))
#: Modules of the static language (and their submodules).
KNOWN_MODULES = frozenset(name for name, _ in INTERPRETED_LIBRARIES)
#: What to say about a module outside the static language: what it interprets.
KNOWN_LIST = ", ".join(shown for _, shown in INTERPRETED_LIBRARIES if shown) + \
    " and the build's model files"


class ModuleGlobals(Env):
    """The module-level names of one model file, each computed on first lookup."""

    __slots__ = ("model", "resolver", "binders", "names_of", "done", "active")

    def __init__(self, model: ir.ModelFile, resolver: "Resolver"):
        super().__init__(None)
        self.model = model
        #: None once the resolver has returned (`resolve.core.resolve` cuts the link).
        self.resolver: "Resolver | None" = resolver
        #: Names each top-level statement binds (in Python's sense, plus mutations).
        self.names_of: list[tuple[str, ...]] = [bound_names(s) for s in model.body]
        #: Name -> indices of the statements that bind it, in source order.
        self.binders: dict[str, list[int]] = {}
        for i, names in enumerate(self.names_of):
            for n in names:
                self.binders.setdefault(n, []).append(i)
        self._drop_module_calls()
        self.done: set[int] = set()
        self.active: set[int] = set()

    def _drop_module_calls(self) -> None:
        """`aot.target(...)`, `flags.DEFINE_float(...)` call a module, they mutate nothing.

        A top-level call `x.f(...)` counts as part of `x`'s definition only when `x` is
        defined by something other than imports (a config built and then updated).
        """
        body = self.model.body
        mutations = [set(mutated_names(stmt)) for stmt in body]
        for i in range(len(body)):
            if not mutations[i]:
                continue
            keep = []
            for n in self.names_of[i]:
                if n not in mutations[i]:
                    keep.append(n)
                    continue
                defs = [j for j in self.binders[n] if n not in mutations[j]]
                if defs and not all(isinstance(body[j], ir.Import) for j in defs):
                    keep.append(n)
                else:
                    self.binders[n].remove(i)
            self.names_of[i] = tuple(keep)

    def lookup(self, name: str) -> tuple[bool, Any]:
        pending = self.binders.get(name)
        if pending:
            for i in list(pending):
                if i in self.active:  # being defined right now: later statements come after
                    break
                self.execute(i)
        if name in self.vars:
            return True, self.vars[name]
        return False, None

    def defining(self, name: str) -> bool:
        """Whether a statement that binds `name` is running (a name read by its own
        definition)."""
        return any(i in self.active for i, names in enumerate(self.names_of) if name in names)

    def execute(self, i: int) -> None:
        """Run top-level statement `i` once, after the earlier bindings of what it binds."""
        if i in self.done or i in self.active:
            return  # done, or in progress (a name read while its own definition runs)
        self.active.add(i)
        try:
            for name in self.names_of[i]:
                for j in list(self.binders.get(name, ())):
                    if j < i:
                        self.execute(j)
            resolver = self.resolver
            assert resolver is not None, "top-level statements run while resolving"
            # a statement run for a name another one reads is not that one's value
            outer, resolver.import_time = resolver.import_time, False
            try:
                resolver._exec_guarded(self.model.body[i], Frame(self, None, None))
            finally:
                resolver.import_time = outer
        finally:
            self.active.discard(i)
            self.done.add(i)
            for name in self.names_of[i]:
                pending = self.binders.get(name)
                if pending and i in pending:
                    pending.remove(i)

    def roots(self) -> list[int]:
        """Statements that declare targets (they run whether or not a name is looked up)."""
        return [i for i, stmt in enumerate(self.model.body) if self._declares_target(stmt)]

    def _declares_target(self, stmt: Any) -> bool:
        return any(self._peek(call.func) in (namespaces.TARGET, namespaces.TRAIN_TARGET)
                   for call in calls_in(stmt))

    def _peek(self, expr: Any) -> Any:
        """What `aot.target`-like names mean, looking only through imports (no errors)."""
        if isinstance(expr, ir.Name):
            binders = self.binders.get(expr.id, ())
            if expr.id in self.vars and not binders:
                return self.vars[expr.id]
            last = self.model.body[binders[-1]] if binders else None
            if isinstance(last, ir.Import) and not last.level:
                # only the static language's own modules: peeking runs nothing
                return namespaces.namespace_for(last.module, last.member)
            return None
        if isinstance(expr, ir.Attribute):
            base = self._peek(expr.value)
            if isinstance(base, Namespace) and isinstance(base.members, dict):
                return base.members.get(expr.attr)
        return None


def module_of(env: Env | None) -> ModuleGlobals | None:
    """The module globals an environment belongs to (its outermost parent)."""
    while env is not None and not isinstance(env, ModuleGlobals):
        env = env.parent
    return env


# ------------------------------------------------------------------ IR walking


def _children(node: Any) -> Iterator[Any]:
    if isinstance(node, (tuple, list)):
        yield from node
        return
    if dataclasses.is_dataclass(node) and not isinstance(node, type):
        for f in dataclasses.fields(node):
            if f.name == "span":
                continue
            yield getattr(node, f.name)


def calls_in(stmt: Any) -> Iterator[ir.Call]:
    """Calls a top-level statement makes when it runs (not inside the functions it defines)."""
    stack = [stmt]
    while stack:
        node = stack.pop()
        if isinstance(node, (ir.FunctionDef, ir.ClassDef, ir.Lambda, ir.Unsupported)):
            continue
        if isinstance(node, ir.Call):
            yield node
        if isinstance(node, (tuple, list)) or (dataclasses.is_dataclass(node)
                                               and not isinstance(node, type)):
            stack.extend(_children(node))


def _target_roots(t: Any) -> list[str]:
    """Module-level names an assignment target binds or mutates (`x`, `cfg` of `cfg.a`)."""
    if isinstance(t, ir.Name):
        return [t.id]
    if isinstance(t, (ir.TupleExpr, ir.ListExpr)):
        return [n for e in t.elts for n in _target_roots(e)]
    if isinstance(t, ir.Starred):
        return _target_roots(t.value)
    if isinstance(t, (ir.Attribute, ir.Subscript)):
        return _target_roots(t.value)
    return []


def _mutated(expr: Any) -> list[str]:
    """`cfg.update(...)`, `layers.append(...)`: the name a top-level call mutates."""
    if isinstance(expr, ir.Call) and isinstance(expr.func, ir.Attribute):
        root = expr.func.value
        while isinstance(root, (ir.Attribute, ir.Subscript)):
            root = root.value
        if isinstance(root, ir.Name):
            return [root.id]
    return []


def mutated_names(stmt: Any) -> list[str]:
    """Names a top-level statement may update in place rather than define: the receiver of
    a call statement (`cfg.update(...)`) or of a decorator (`@f.defjvp`)."""
    if isinstance(stmt, ir.ExprStmt):
        return _mutated(stmt.value)
    if isinstance(stmt, ir.FunctionDef):
        return [n for d in stmt.decorators for n in _mutated(ir.Call(d, (), (), d.span))
                if n != stmt.name]
    if isinstance(stmt, (ir.If, ir.For)):  # `for w in ...: aot.target(...)`
        return [n for s in (*stmt.body, *stmt.orelse) for n in mutated_names(s)]
    return []


def bound_names(stmt: Any) -> tuple[str, ...]:
    """Module-level names a top-level statement binds (or mutates in place)."""
    out: list[str] = []
    if isinstance(stmt, ir.Import):
        out.append(stmt.alias)
    elif isinstance(stmt, (ir.FunctionDef, ir.ClassDef)):
        out.append(stmt.name)
        if isinstance(stmt, ir.FunctionDef):  # `@f.defjvp def rule(...)` completes `f`
            out.extend(mutated_names(stmt))
    elif isinstance(stmt, ir.Assign):
        for t in stmt.targets:
            out.extend(_target_roots(t))
    elif isinstance(stmt, (ir.AugAssign, ir.AnnAssign)):
        out.extend(_target_roots(stmt.target))
    elif isinstance(stmt, ir.Delete):
        for t in stmt.targets:
            out.extend(_target_roots(t))
    elif isinstance(stmt, ir.ExprStmt):
        out.extend(_mutated(stmt.value))
    elif isinstance(stmt, ir.Unsupported):
        out.extend(stmt.binds)
    elif isinstance(stmt, ir.For):
        out.extend(_target_roots(stmt.target))
        for s in (*stmt.body, *stmt.orelse):
            out.extend(bound_names(s))
    elif isinstance(stmt, ir.If):
        for s in (*stmt.body, *stmt.orelse):
            out.extend(bound_names(s))
    # (in-place updates inside compound statements are in `mutated_names` too: the module
    # globals drop those that only call a module, such as `aot.target(...)` in a loop)
    return tuple(dict.fromkeys(out))


# ------------------------------------------------------------------ warnings


def skipped(model: ir.ModelFile, executed: set[int], known: Any) -> list[tuple[Span, str]]:
    """Top-level statements no target reached, as (span, description) for warnings.

    Docstrings, `from __future__` and imports of modules the static language knows are
    not worth a warning (`known(import) -> bool` decides for imports).
    """
    out = []
    typing = {s.alias for s in model.body if isinstance(s, ir.Import) and s.module == "typing"}
    for i, stmt in enumerate(model.body):
        if i in executed:
            continue
        if isinstance(stmt, ir.ExprStmt) and isinstance(stmt.value, ir.Constant):
            continue
        if isinstance(stmt, ir.Import) and known(stmt):
            continue
        if isinstance(stmt, ir.Assign) and _type_expression(stmt.value, typing):
            continue  # `Array = Any`, `Shape = Tuple[int, ...]`: read by annotations only
        out.append((stmt.span, describe_statement(stmt)))
    return out


def _type_expression(expr: Any, typing: set[str]) -> bool:
    """An expression made of `typing`'s names (`Any`, `Callable[..., Any]`, `t.Tuple[int]`)
    or array types (`jnp.ndarray`): a type alias, which only annotations read."""
    if isinstance(expr, ir.Name):
        return expr.id in typing
    if isinstance(expr, ir.Attribute):
        root = expr.value
        return (isinstance(root, ir.Name) and root.id in typing) or expr.attr in (
            "ndarray", "Array", "PRNGKey", "DTypeLike", "ArrayLike", "Shape")
    if isinstance(expr, ir.Subscript):
        return _type_expression(expr.value, typing)
    return False


def describe_statement(stmt: Any) -> str:
    if isinstance(stmt, ir.Import):
        what = f"{'.' * stmt.level}{stmt.dotted or stmt.module}"
        return f"import of '{what}'" if stmt.member is None else \
            f"import of '{stmt.member}' from '{what}'"
    if isinstance(stmt, ir.FunctionDef):
        return f"function {stmt.name}"
    if isinstance(stmt, ir.ClassDef):
        return f"class {stmt.name}"
    if isinstance(stmt, ir.Unsupported):
        return stmt.what if stmt.what != "statement" or not stmt.binds else \
            f"definition of {', '.join(stmt.binds)}"
    if isinstance(stmt, (ir.Assign, ir.AugAssign, ir.AnnAssign)):
        names = bound_names(stmt)
        return f"assignment to {', '.join(names)}" if names else "assignment"
    if isinstance(stmt, ir.ExprStmt) and isinstance(stmt.value, ir.Call):
        return "call"
    if isinstance(stmt, ir.If):
        return "'if' block"
    if isinstance(stmt, ir.For):
        return "'for' loop"
    return "statement"


def opaque_note(value: Opaque) -> tuple[Note, ...]:
    return (Note("imported here", value.span),) if value.span is not None else ()


__all__ = ["INTERPRETED_LIBRARIES", "KNOWN_LIST", "KNOWN_MODULES", "ModuleGlobals", "ModuleValue", "bound_names", "calls_in",
           "describe_statement", "module_of", "opaque_note", "skipped"]
