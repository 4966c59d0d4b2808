"""What a generated module may contain, checked on its AST (tests/test_hostile_input.py).

A generated module is a docstring, the imports of jax, jax.numpy, numpy and
`_runtime`, function definitions, `_runtime.Target(...)` and dict assignments,
and `TARGETS`.  Whatever a model file said reaches it only as data: every
name it reads is one it binds (or `float` / `complex`, which literals use),
it reads no dunder attribute, imports nothing but optax inside a function,
and a string carrying the test's marker is either a whole payload, intact, or
part of a docstring.
"""

from __future__ import annotations

import ast

#: Appears in every hostile payload; it must never become a name.
MARKER = "PWNED"

_MODULE_IMPORTS = {("jax", None), ("jax.numpy", "jnp"), ("numpy", "np")}
_FREE_NAMES = frozenset({"float", "complex"})
#: The `_runtime` calls a module-level assignment may make: targets, their variable
#: trees, parameter-group labels.
_RUNTIME_DECLARATIONS = frozenset({"Target", "Variables", "labels"})


def problems(text: str, payloads: set[str] = frozenset()) -> list[str]:
    """Everything in generated module `text` that the program did not mean (empty: clean)."""
    tree = ast.parse(text)
    out: list[str] = []
    out += _module_statements(tree)
    bound = _bound_names(tree)
    docstrings = _docstring_nodes(tree)
    for node in ast.walk(tree):
        where = f"line {getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load) and \
                node.id not in bound and node.id not in _FREE_NAMES:
            out.append(f"{where}: reads the unbound name {node.id!r}")
        if isinstance(node, ast.Attribute) and node.attr.startswith("__"):
            out.append(f"{where}: reads the attribute {node.attr!r}")
        if isinstance(node, (ast.Import, ast.ImportFrom)) and node not in tree.body:
            names = [a.name for a in node.names]
            if not (isinstance(node, ast.Import) and names == ["optax"]):
                out.append(f"{where}: imports {names} inside a function")
        for name in _names_of(node):
            if MARKER in name or "import" in name:
                out.append(f"{where}: the name {name!r} came from a payload")
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and \
                MARKER in node.value and node.value not in payloads and id(node) not in docstrings:
            out.append(f"{where}: a string holds part of a payload: {node.value[:80]!r}")
    return out


def _module_statements(tree: ast.Module) -> list[str]:
    out = []
    functions: set[str] = set()
    body = tree.body
    if not (body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)):
        out.append("the module does not start with its docstring")
    for stmt in body[1:]:
        where = f"line {stmt.lineno}"
        if isinstance(stmt, ast.Import):
            names = {(a.name, a.asname) for a in stmt.names}
            if not names <= _MODULE_IMPORTS:
                out.append(f"{where}: imports {names}")
        elif isinstance(stmt, ast.ImportFrom):
            if stmt.module is not None or stmt.level < 1 or [a.name for a in stmt.names] != [
                    "_runtime"]:
                out.append(f"{where}: imports from {stmt.module!r}")
        elif isinstance(stmt, ast.FunctionDef):
            for d in stmt.decorator_list:  # jax.custom_jvp, and `primal.defjvp` for its rule
                if ast.unparse(d) not in ("jax.custom_jvp", "jax.custom_vjp") and not (
                        isinstance(d, ast.Attribute) and d.attr == "defjvp"
                        and isinstance(d.value, ast.Name) and d.value.id in functions) and not (
                        # a custom_vjp's backward rule: `_runtime.backward_of(primal, fwd)`
                        isinstance(d, ast.Call) and ast.unparse(d.func) == "_runtime.backward_of"
                        and not d.keywords and len(d.args) == 2 and all(
                            isinstance(a, ast.Name) and a.id in functions for a in d.args)):
                    out.append(f"{where}: a function decorated with {ast.unparse(d)!r}")
            functions.add(stmt.name)
        elif isinstance(stmt, ast.Assign):
            target_ok = len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name)
            value = stmt.value
            target_call = (isinstance(value, ast.Call) and isinstance(value.func, ast.Attribute)
                           and isinstance(value.func.value, ast.Name)
                           and value.func.value.id == "_runtime"
                           and value.func.attr in _RUNTIME_DECLARATIONS)
            if not target_ok or not (target_call or isinstance(value, ast.Dict)):
                out.append(f"{where}: a module-level {ast.unparse(stmt)[:80]!r}")
        else:
            out.append(f"{where}: a module-level {type(stmt).__name__}")
    return out


def _bound_names(tree: ast.Module) -> set[str]:
    """Every name the module binds anywhere (module level, arguments, assignments)."""
    bound: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.Lambda)):
            args = node.args
            bound.update(a.arg for a in [*args.posonlyargs, *args.args, *args.kwonlyargs])
            bound.update(a.arg for a in (args.vararg, args.kwarg) if a is not None)
            if isinstance(node, ast.FunctionDef):
                bound.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            bound.add(node.id)
        elif isinstance(node, ast.alias):
            bound.add((node.asname or node.name).split(".")[0])
    return bound


def _docstring_nodes(tree: ast.Module) -> set[int]:
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.FunctionDef)) and node.body and isinstance(
                node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant):
            out.add(id(node.body[0].value))
    return out


def _names_of(node: ast.AST) -> list[str]:
    if isinstance(node, ast.Name):
        return [node.id]
    if isinstance(node, ast.Attribute):
        return [node.attr]
    if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
        return [node.name]
    if isinstance(node, ast.arg):
        return [node.arg]
    if isinstance(node, ast.keyword) and node.arg:
        return [node.arg]
    return []
