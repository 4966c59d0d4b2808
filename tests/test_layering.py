"""The layout of the compiler package, read from its source with `ast`.

Imports flow one way through the stages of `aotflax/README.md`; there are no
import circles, counting imports inside functions (only imports under
`if TYPE_CHECKING:`, which never run, may point back); no private name (`_x`)
is imported from another module; parse and resolve never import jax, and the
code a build generates imports only jax, numpy and the standard library at run
time (optax inside the functions of training targets).
"""

from __future__ import annotations

import ast
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "aotflax"


@dataclass
class Module:
    name: str
    path: Path
    #: aotflax modules this one imports when it runs: (module, line).
    imports: list[tuple[str, int]] = field(default_factory=list)
    #: Top-level names of other packages it imports when it runs (`jax`, `numpy`).
    external: set[str] = field(default_factory=set)
    #: (`_name`, module it comes from, line) for private names imported from another module.
    private: list[tuple[str, str, int]] = field(default_factory=list)
    #: aotflax modules named in an import that do not exist: (name, line).
    missing: list[tuple[str, int]] = field(default_factory=list)


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_type_checking(test: ast.expr) -> bool:
    """`if TYPE_CHECKING:` / `if typing.TYPE_CHECKING:`: imports that never run."""
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def runtime_imports(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    """Every import statement that can run: at any depth, outside `if TYPE_CHECKING:`."""
    found: list[ast.Import | ast.ImportFrom] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
        if isinstance(node, ast.If) and is_type_checking(node.test):
            for child in node.orelse:
                visit(child)
            return
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def read_package() -> dict[str, Module]:
    modules = {module_name(p): Module(module_name(p), p) for p in sorted(PACKAGE.rglob("*.py"))}
    for mod in modules.values():
        package = mod.name if mod.path.name == "__init__.py" else mod.name.rpartition(".")[0]
        for node in runtime_imports(ast.parse(mod.path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.split(".")[0] == "aotflax":
                        add(mod, modules, alias.name, node.lineno)
                    else:
                        mod.external.add(alias.name.split(".")[0])
                continue
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            if source.split(".")[0] != "aotflax":
                mod.external.add(source.split(".")[0])
                continue
            for alias in node.names:
                submodule = f"{source}.{alias.name}"
                if submodule in modules:
                    add(mod, modules, submodule, node.lineno)
                    continue
                add(mod, modules, source, node.lineno)
                if alias.name.startswith("_") and not alias.name.startswith("__"):
                    mod.private.append((alias.name, source, node.lineno))
    return modules


def add(mod: Module, modules: dict[str, Module], target: str, line: int) -> None:
    """An import of `target` by `mod`: the module, and the packages above it that
    importing it initializes (those `mod` is not already inside)."""
    if target not in modules:
        mod.missing.append((target, line))
        return
    parts = target.split(".")
    for i in range(1, len(parts) + 1):
        name = ".".join(parts[:i])
        if name != mod.name and not mod.name.startswith(name + ".") and \
                (name, line) not in mod.imports:
            mod.imports.append((name, line))


def cycles(modules: dict[str, Module]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))

    def strong(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w, _ in modules[v].imports:
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1 or any(w == v for w, _ in modules[v].imports):
                found.append(sorted(component))

    for v in modules:
        if v not in index:
            strong(v)
    return found


def reachable(modules: dict[str, Module], start: str) -> set[str]:
    seen, todo = {start}, [start]
    while todo:
        for name, _ in modules[todo.pop()].imports:
            if name not in seen:
                seen.add(name)
                todo.append(name)
    return seen


def stages() -> list[tuple[str, set[str]]]:
    """The stage table of aotflax/README.md: (stage, its modules), in pipeline order.

    A row names files (`parse.py`) and packages (`resolve/`) in its module column.
    """
    rows = []
    for line in (PACKAGE / "README.md").read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 3 or cells[0] in ("stage", "") or set(cells[0]) <= {"-", " "}:
            continue
        names = set()
        for item in re.findall(r"`([\w/.]+)`", cells[1]):
            if item.endswith(".py"):
                names.add("aotflax." + item[:-3].replace("/", "."))
            elif item.endswith("/") and (PACKAGE / item / "__init__.py").exists():
                names.add("aotflax." + item.rstrip("/").replace("/", "."))
        rows.append((cells[0], names))
    return rows


def stage_of(name: str, table: list[tuple[str, set[str]]]) -> int | None:
    for i, (_, names) in enumerate(table):
        if any(name == n or name.startswith(n + ".") for n in names):
            return i
    return None


MODULES = read_package()


def where(mod: Module, line: int) -> str:
    return f"{mod.path.relative_to(ROOT)}:{line}"


def test_every_imported_module_exists() -> None:
    missing = [f"{where(m, line)}: {name}" for m in MODULES.values() for name, line in m.missing]
    assert not missing, "imports of aotflax modules that do not exist:\n" + "\n".join(missing)


def test_no_import_circles() -> None:
    found = cycles(MODULES)
    lines = []
    for component in found:
        members = set(component)
        edges = [f"  {where(MODULES[a], line)} imports {b}" for a in component
                 for b, line in MODULES[a].imports if b in members]
        lines.append("circle: " + ", ".join(component) + "\n" + "\n".join(edges))
    assert not found, "\n".join(lines)


def test_no_private_names_across_modules() -> None:
    found = [f"{where(m, line)}: {name} from {source}"
             for m in MODULES.values() for name, source, line in m.private]
    assert not found, ("private names imported from another module (make them public where "
                       "they are defined):\n" + "\n".join(found))


def test_imports_follow_the_stages() -> None:
    table = stages()
    order = [s for s, _ in table]
    pipeline = ["diagnostics", "IR", "parse", "resolve", "emit", "verify", "compile", "driver"]
    assert [s for s in order if s in pipeline] == pipeline, order
    assert all(names for _, names in table), table
    wrong = {}
    for mod in MODULES.values():
        mine = stage_of(mod.name, table)
        for name, line in mod.imports:
            theirs = stage_of(name, table)
            if mine is not None and theirs is not None and theirs > mine:
                wrong.setdefault((mod.name, name), f"{where(mod, line)}: {table[mine][0]} "
                                 f"imports {name} ({table[theirs][0]})")
    assert not wrong, ("imports against the stage order of aotflax/README.md:\n"
                       + "\n".join(wrong.values()))


@pytest.mark.parametrize("start", ["aotflax.parse", "aotflax.resolve", "aotflax.summary"])
def test_parse_and_resolve_never_import_jax(start: str) -> None:
    reached = sorted(reachable(MODULES, start))
    found = [f"{MODULES[n].path.relative_to(ROOT)} imports {', '.join(sorted(bad))}"
             for n in reached if (bad := MODULES[n].external & {"jax", "jaxlib", "optax", "flax"})]
    assert not found, f"{start} reaches modules that import jax:\n" + "\n".join(found)


def generated_sources() -> list[tuple[str, str]]:
    from aotflax import artifacts

    sources = [("templates/runtime.py.j2", artifacts.render_runtime("0.0.0"))]
    sources += [(str(p.relative_to(ROOT)), p.read_text(encoding="utf-8"))
                for p in sorted((ROOT / "generated").glob("*.py"))]
    return sources


def test_generated_code_imports_only_jax_numpy_and_the_standard_library() -> None:
    allowed = {"jax", "numpy"} | set(sys.stdlib_module_names)
    wrong = []
    for name, source in generated_sources():
        tree = ast.parse(source)
        top = {id(node) for node in tree.body}
        for node in ast.walk(tree):
            if not isinstance(node, (ast.Import, ast.ImportFrom)):
                continue
            if isinstance(node, ast.ImportFrom) and node.level:
                if node.module is None and [a.name for a in node.names] == ["_runtime"]:
                    continue  # the package's own runtime module
                wrong.append(f"{name}:{node.lineno}: relative import")
                continue
            roots = ([a.name.split(".")[0] for a in node.names] if isinstance(node, ast.Import)
                     else [(node.module or "").split(".")[0]])
            for root in roots:
                # optax only where the training code runs (a function's body)
                if root not in allowed and not (root == "optax" and id(node) not in top):
                    wrong.append(f"{name}:{node.lineno}: imports {root}")
    assert not wrong, "\n".join(wrong)
