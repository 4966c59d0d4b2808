"""Model files are data: the checks that keep their code from ever running in the build.

Resolve interprets a model statically and reaches only the DSL's vocabulary, so
most of the file never runs anywhere.  One thing does: a user initializer
`def my_init(key, shape, dtype)` is copied verbatim into the generated module,
and `verify` imports that module and traces `init` at build time.  Its text is
therefore checked here before it is emitted: every name it reads must be one of
its own locals, a safe builtin, or `jax` / `jnp` / `np` (what the generated
module imports), and no attribute may reach file I/O, callbacks, configuration
or Python internals (dunder attributes are rejected by `parse` everywhere).

Also here: the formatting guards of the static evaluator (`str.format` fields
that walk attributes, format widths that would allocate gigabytes).
"""

from __future__ import annotations

import re
import string
from dataclasses import fields, is_dataclass
from typing import Any, Iterator

from . import ir
from .diagnostics import Diagnostic, Span

#: Builtins that would let a model file do something rather than describe something.
FORBIDDEN_NAMES = frozenset({
    "open", "eval", "exec", "compile", "__import__", "globals", "locals", "vars", "dir",
    "getattr", "setattr", "delattr", "hasattr", "input", "print", "breakpoint", "exit", "quit",
    "help", "memoryview", "bytearray", "type", "object", "super", "classmethod",
    "staticmethod", "property", "id", "__builtins__", "__loader__", "__spec__",
})

#: Builtins an emitted function may call (pure, the DSL's static builtins).
SAFE_BUILTINS = frozenset({
    "len", "range", "enumerate", "zip", "min", "max", "abs", "int", "float", "bool", "str",
    "tuple", "list", "dict", "sum", "sorted", "reversed", "any", "all", "round", "divmod",
    "isinstance", "repr", "slice", "map", "filter", "ValueError", "TypeError",
    "AssertionError", "NotImplementedError",
})

#: Globals of a generated module an emitted function may read, and the model-file
#: namespace each must be bound to (so `jnp` in the model means `jnp` in the output).
EMITTED_GLOBALS = {"jax": "jax", "jnp": "jnp", "np": "numpy"}

#: `jax.<name>` submodules an emitted function may use.
JAX_SUBMODULES = frozenset({"numpy", "random", "nn", "lax", "scipy", "dtypes"})

#: Attributes that reach files, callbacks, global configuration or foreign code.
DENIED_ATTRIBUTES = frozenset({
    "load", "loads", "save", "savez", "savez_compressed", "savetxt", "loadtxt", "genfromtxt",
    "fromfile", "tofile", "fromregex", "memmap", "DataSource", "lib", "ctypeslib", "ctypes",
    "testing", "distutils", "f2py", "pure_callback", "io_callback", "callback", "debug",
    "experimental", "config", "distributed", "profiler", "extend", "ffi", "format",
    "format_map", "set_printoptions", "seterr", "seterrcall", "setbufsize", "dump", "dumps",
    "show_config", "from_dlpack", "dlpack", "monitoring", "export", "interpreters", "stages",
    "clear_caches", "jit", "pmap", "effects_barrier", "device_put", "block_until_ready",
})

_MAX_WIDTH = 1000


def is_dunder(name: str) -> bool:
    """`__class__`, `__import__`...: Python internals, never part of the DSL."""
    return len(name) > 4 and name.startswith("__") and name.endswith("__")


def spec_problem(spec: str) -> str | None:
    """A format spec whose width or precision would build a huge string, else None."""
    for number in re.findall(r"\d+", spec):
        if len(number) > 4 or int(number) > _MAX_WIDTH:
            return f"format width {number} is too large (at most {_MAX_WIDTH})"
    return None


def format_problem(fmt: str) -> str | None:
    """Why `fmt.format(...)` is not allowed at build time, else None."""
    try:
        parsed = list(string.Formatter().parse(fmt))
    except ValueError:
        return None  # str.format reports malformed strings itself
    for _, field, spec, _ in parsed:
        if field and ("." in field or "[" in field):
            return (f"replacement field {{{field}}} reads an attribute or item; use "
                    "f-strings or plain {} fields")
        problem = spec_problem(spec or "") or (format_problem(spec) if spec else None)
        if problem:
            return problem
    return None


# ------------------------------------------------------------------ emitted functions


def check_emitted_function(fn: ir.FunctionDef, env: Any) -> list[Diagnostic]:
    """Diagnostics for a model function that will be copied into generated code.

    **Arguments:**
    - `fn`: the function's IR (the same text is emitted verbatim).
    - `env`: the model file's global environment (`values.Env`), to see what `jnp` means.
    """
    checker = _EmittedChecker(fn.name, env)
    checker.function(fn, frozenset())
    return checker.diagnostics


class _EmittedChecker:
    def __init__(self, name: str, env: Any):
        self.fn_name = name
        self.env = env
        self.diagnostics: list[Diagnostic] = []
        self._seen: set[tuple[str, int, int]] = set()

    def report(self, code: str, message: str, span: Span, hint: str | None = None) -> None:
        key = (message, span.line, span.col)
        if key not in self._seen:
            self._seen.add(key)
            self.diagnostics.append(Diagnostic(code, message, span, hint=hint))

    # -------------------------------------------------------------- scopes

    def function(self, fn: ir.FunctionDef, outer: frozenset[str]) -> None:
        for d in fn.decorators:
            self.expr(d, outer)
        self.parameters(fn.params, outer)
        returns = getattr(fn, "returns", None)
        if returns is not None:
            self.expr(returns, outer)
        local = {p.name for p in fn.params.params} | set(_bound_in(fn.body))
        self.block(fn.body, outer | local)

    def parameters(self, params: ir.Parameters, outer: frozenset[str]) -> None:
        for p in params.params:  # defaults and annotations run where the function is defined
            if p.default is not None:
                self.expr(p.default, outer)
            if p.annotation is not None:
                self.expr(p.annotation, outer)

    def block(self, body: tuple[ir.Stmt, ...], visible: frozenset[str]) -> None:
        for stmt in body:
            if isinstance(stmt, ir.FunctionDef):
                self.function(stmt, visible)
            else:
                for child in _children(stmt):
                    if isinstance(child, tuple):
                        self.block(child, visible)
                    else:
                        self.expr(child, visible)

    # -------------------------------------------------------------- expressions

    def expr(self, e: Any, visible: frozenset[str]) -> None:
        if isinstance(e, ir.Name):
            self.name(e, visible)
        elif isinstance(e, ir.Attribute):
            self.attribute(e, visible)
        elif isinstance(e, ir.Lambda):
            self.parameters(e.params, visible)
            self.expr(e.body, visible | {p.name for p in e.params.params})
        elif isinstance(e, (ir.ListComp, ir.DictComp)):
            inner = set(visible)
            for gen in e.generators:
                self.expr(gen.iter, frozenset(inner))
                inner |= set(_target_names(gen.target))
                for cond in gen.ifs:
                    self.expr(cond, frozenset(inner))
            for part in ((e.elt,) if isinstance(e, ir.ListComp) else (e.key, e.value)):
                self.expr(part, frozenset(inner))
        else:
            for child in _children(e):
                if isinstance(child, tuple):
                    for c in child:
                        self.expr(c, visible)
                else:
                    self.expr(child, visible)

    def name(self, e: ir.Name, visible: frozenset[str]) -> None:
        if e.id in visible or e.id in SAFE_BUILTINS:
            return
        if e.id in FORBIDDEN_NAMES or is_dunder(e.id):
            self.report("AOT105", f"'{e.id}' is not available in model files: model files are "
                        "data, never executed", e.span)
            return
        if e.id in EMITTED_GLOBALS and _namespace_name(self.env, e.id) in (
                EMITTED_GLOBALS[e.id], "jax.numpy" if e.id == "jnp" else None):
            return
        self.report(
            "AOT106", f"initializer {self.fn_name} is copied into the generated module, where "
            f"'{e.id}' does not exist", e.span,
            hint="an initializer may use its arguments, its own local variables, builtins and "
                 "jax / jnp / np (imported as `import jax`, `import jax.numpy as jnp`, "
                 "`import numpy as np`); pass other values as default arguments")

    def attribute(self, e: ir.Attribute, visible: frozenset[str]) -> None:
        if is_dunder(e.attr):
            self.report("AOT105", f"attribute '{e.attr}' is not available in model files",
                        e.span)
            return
        if e.attr in DENIED_ATTRIBUTES:
            self.report("AOT106", f"initializer {self.fn_name} may not use '.{e.attr}': "
                        "initializers compute arrays from (key, shape, dtype) only", e.span)
            return
        if isinstance(e.value, ir.Name) and e.value.id == "jax" and "jax" not in visible \
                and e.attr not in JAX_SUBMODULES:
            self.report("AOT106", f"initializer {self.fn_name} may not use jax.{e.attr}", e.span,
                        hint="use jax.random, jax.numpy, jax.nn, jax.lax or jax.scipy")
            return
        self.expr(e.value, visible)


def _namespace_name(env: Any, name: str) -> str | None:
    found, value = env.lookup(name) if env is not None else (False, None)
    return getattr(value, "name", None) if found else None


def _children(node: Any) -> Iterator[Any]:
    """Child expressions / statement blocks of an IR node (blocks as tuples of statements)."""
    for f in fields(node):
        if f.name == "span":
            continue
        value = getattr(node, f.name)
        if isinstance(value, tuple):
            items = tuple(v for v in value if v is not None)
            if items and all(_is_stmt(v) for v in items):
                yield items
            else:
                yield from (v for v in items if is_dataclass(v))
        elif is_dataclass(value) and not isinstance(value, Span):
            yield value


def _is_stmt(node: Any) -> bool:
    return isinstance(node, (ir.Assign, ir.AugAssign, ir.AnnAssign, ir.ExprStmt, ir.Return,
                             ir.If, ir.For, ir.Raise, ir.Assert, ir.Pass, ir.Break,
                             ir.Continue, ir.FunctionDef))


def _bound_in(body: tuple[ir.Stmt, ...]) -> Iterator[str]:
    """Names a function body binds (its locals), not looking into nested scopes."""
    for stmt in body:
        if isinstance(stmt, ir.Assign):
            for t in stmt.targets:
                yield from _target_names(t)
        elif isinstance(stmt, (ir.AugAssign, ir.AnnAssign)):
            yield from _target_names(stmt.target)
        elif isinstance(stmt, ir.For):
            yield from _target_names(stmt.target)
            yield from _bound_in(stmt.body)
            yield from _bound_in(stmt.orelse)
        elif isinstance(stmt, ir.If):
            yield from _bound_in(stmt.body)
            yield from _bound_in(stmt.orelse)
        elif isinstance(stmt, ir.FunctionDef):
            yield stmt.name


def _target_names(t: Any) -> Iterator[str]:
    if isinstance(t, ir.Name):
        yield t.id
    elif isinstance(t, (ir.TupleExpr, ir.ListExpr)):
        for e in t.elts:
            yield from _target_names(e)
    elif isinstance(t, ir.Starred):
        yield from _target_names(t.value)
