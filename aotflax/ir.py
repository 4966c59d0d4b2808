"""The syntax IR: a model file as frozen dataclasses, every node with its span.

`parse` builds these from CPython's `ast`; `resolve` interprets
them statically.  The IR is a small, explicit subset of Python: anything the
DSL does not accept is rejected by `parse` with a located error, so later
stages never meet an unknown construct.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union

from .diagnostics import SourceFile, Span

# ---------------------------------------------------------------- expressions


@dataclass(frozen=True, slots=True)
class Name:
    #: Identifier as written.
    id: str
    span: Span


@dataclass(frozen=True, slots=True)
class Constant:
    #: int, float, complex, str, bool, None or Ellipsis.
    value: object
    span: Span


@dataclass(frozen=True, slots=True)
class FString:
    #: Literal strings and `FormattedValue`s in order.
    parts: tuple[Union[str, "FormattedValue"], ...]
    span: Span


@dataclass(frozen=True, slots=True)
class FormattedValue:
    value: "Expr"
    #: Format spec after `:` (static text only), or None.
    format_spec: str | None
    #: "r", "s", "a" or None.
    conversion: str | None
    span: Span


@dataclass(frozen=True, slots=True)
class Attribute:
    value: "Expr"
    attr: str
    span: Span


@dataclass(frozen=True, slots=True)
class Keyword:
    #: Keyword name, or None for `**mapping`.
    name: str | None
    value: "Expr"
    span: Span


@dataclass(frozen=True, slots=True)
class Starred:
    #: `*value` inside a call's arguments or a tuple/list display.
    value: "Expr"
    span: Span


@dataclass(frozen=True, slots=True)
class Call:
    func: "Expr"
    #: Positional arguments; `Starred` for `*args`.
    args: tuple["Expr", ...]
    keywords: tuple[Keyword, ...]
    span: Span


@dataclass(frozen=True, slots=True)
class BinOp:
    left: "Expr"
    #: Python operator symbol: "+", "-", "*", "/", "//", "%", "**", "@", "&", "|", "^", "<<", ">>".
    op: str
    right: "Expr"
    span: Span


@dataclass(frozen=True, slots=True)
class UnaryOp:
    #: "-", "+", "~" or "not".
    op: str
    operand: "Expr"
    span: Span


@dataclass(frozen=True, slots=True)
class BoolOp:
    #: "and" or "or".
    op: str
    values: tuple["Expr", ...]
    span: Span


@dataclass(frozen=True, slots=True)
class Compare:
    left: "Expr"
    #: Operators: "==", "!=", "<", "<=", ">", ">=", "in", "not in", "is", "is not".
    ops: tuple[str, ...]
    comparators: tuple["Expr", ...]
    span: Span


@dataclass(frozen=True, slots=True)
class IfExp:
    test: "Expr"
    body: "Expr"
    orelse: "Expr"
    span: Span


@dataclass(frozen=True, slots=True)
class TupleExpr:
    elts: tuple["Expr", ...]
    span: Span


@dataclass(frozen=True, slots=True)
class ListExpr:
    elts: tuple["Expr", ...]
    span: Span


@dataclass(frozen=True, slots=True)
class DictExpr:
    #: Keys; None for a `**mapping` entry.
    keys: tuple[Union["Expr", None], ...]
    values: tuple["Expr", ...]
    span: Span


@dataclass(frozen=True, slots=True)
class Slice:
    lower: Union["Expr", None]
    upper: Union["Expr", None]
    step: Union["Expr", None]
    span: Span


@dataclass(frozen=True, slots=True)
class Subscript:
    value: "Expr"
    #: One index expression; a tuple index is a `TupleExpr` (of `Slice`s etc.).
    index: "Expr"
    span: Span


@dataclass(frozen=True, slots=True)
class Comprehension:
    target: "Target"
    iter: "Expr"
    ifs: tuple["Expr", ...]
    span: Span


@dataclass(frozen=True, slots=True)
class ListComp:
    #: "list", "tuple" (a generator passed to tuple()), "set" is rejected.
    kind: str
    elt: "Expr"
    generators: tuple[Comprehension, ...]
    span: Span


@dataclass(frozen=True, slots=True)
class DictComp:
    key: "Expr"
    value: "Expr"
    generators: tuple[Comprehension, ...]
    span: Span


@dataclass(frozen=True, slots=True)
class Lambda:
    params: "Parameters"
    body: "Expr"
    span: Span


Expr = Union[
    Name,
    Constant,
    FString,
    Attribute,
    Call,
    BinOp,
    UnaryOp,
    BoolOp,
    Compare,
    IfExp,
    TupleExpr,
    ListExpr,
    DictExpr,
    Slice,
    Subscript,
    ListComp,
    DictComp,
    Lambda,
    Starred,
]

#: Assignment targets: a Name, a tuple/list of targets, a Starred target, or a
#: Subscript/Attribute (only for `x.value = ...` on state variables).
Target = Expr

# ---------------------------------------------------------------- statements


@dataclass(frozen=True, slots=True)
class Param:
    name: str
    #: Default expression, evaluated statically where the function is defined.
    default: Union[Expr, None]
    #: Annotation as written (kept for messages; not enforced).
    annotation: Union[Expr, None]
    #: "positional" (normal), "vararg" (*args), "kwonly", "kwarg" (**kwargs).
    kind: str
    span: Span


@dataclass(frozen=True, slots=True)
class Parameters:
    params: tuple[Param, ...]
    span: Span

    def names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.params)


@dataclass(frozen=True, slots=True)
class Assign:
    #: One or more targets (`a = b = value`).
    targets: tuple[Target, ...]
    value: Expr
    span: Span


@dataclass(frozen=True, slots=True)
class AugAssign:
    target: Target
    op: str
    value: Expr
    span: Span


@dataclass(frozen=True, slots=True)
class AnnAssign:
    target: Target
    annotation: Expr
    value: Union[Expr, None]
    span: Span


@dataclass(frozen=True, slots=True)
class ExprStmt:
    value: Expr
    span: Span


@dataclass(frozen=True, slots=True)
class Return:
    value: Union[Expr, None]
    span: Span


@dataclass(frozen=True, slots=True)
class If:
    test: Expr
    body: tuple["Stmt", ...]
    orelse: tuple["Stmt", ...]
    span: Span


@dataclass(frozen=True, slots=True)
class For:
    target: Target
    iter: Expr
    body: tuple["Stmt", ...]
    orelse: tuple["Stmt", ...]
    span: Span


@dataclass(frozen=True, slots=True)
class With:
    """`with nn.stochastic(rng):` inside a function (one context, no `as`): the body runs
    with the context resolve makes of the expression."""

    context: Expr
    body: tuple["Stmt", ...]
    span: Span


@dataclass(frozen=True, slots=True)
class While:
    """A `while` loop inside a function: run at build time while its test is static and
    true (every iteration charged to the file's budget), as a `for` is unrolled."""

    test: Expr
    body: tuple["Stmt", ...]
    orelse: tuple["Stmt", ...]
    span: Span


@dataclass(frozen=True, slots=True)
class Raise:
    #: The exception expression (e.g. `ValueError("...")`), or None.
    exc: Union[Expr, None]
    span: Span


@dataclass(frozen=True, slots=True)
class Assert:
    test: Expr
    msg: Union[Expr, None]
    span: Span


@dataclass(frozen=True, slots=True)
class Pass:
    span: Span


@dataclass(frozen=True, slots=True)
class Break:
    span: Span


@dataclass(frozen=True, slots=True)
class Continue:
    span: Span


@dataclass(frozen=True, slots=True)
class FunctionDef:
    name: str
    params: Parameters
    body: tuple["Stmt", ...]
    #: Decorators as expressions (e.g. `nn.module_method`).
    decorators: tuple[Expr, ...]
    #: Docstring, if the body starts with one.
    docstring: str | None
    span: Span
    #: Span of the name (for pointing at a definition).
    name_span: Span


@dataclass(frozen=True, slots=True)
class ClassDef:
    name: str
    bases: tuple[Expr, ...]
    #: Methods in source order.
    methods: tuple[FunctionDef, ...]
    docstring: str | None
    span: Span
    name_span: Span
    #: Decorators (reported only if the class is used).
    decorators: tuple[Expr, ...] = ()
    #: Class-body statements other than methods and docstrings (unsupported in modules;
    #: reported only if the class is used).
    others: tuple["Unsupported", ...] = ()
    #: Class-level assignments `name: type = value` / `name = value`, in order: the fields
    #: of a dataclass or NamedTuple (a module class may not have them).
    fields: tuple["Stmt", ...] = ()
    #: `metaclass=` of the class statement (its only keyword the language takes).
    metaclass: "Expr | None" = None


@dataclass(frozen=True, slots=True)
class Import:
    """One name bound by an import statement (`import a.b as c`, `from . import d`)."""

    #: Module imported, e.g. "jax.numpy"; "" for `from . import x`.
    module: str
    #: Name bound in the model file (e.g. "jnp"); for `from m import a as b`, `b`.
    alias: str
    #: For `from m import a`, "a"; None for `import m`.
    member: str | None
    span: Span
    #: Leading dots of a relative import (`from .. import x` is 2); 0 for absolute.
    level: int = 0
    #: For `import a.b.c` without `as`: the full dotted path (binds `a`, loads all).
    dotted: str | None = None


@dataclass(frozen=True, slots=True)
class Delete:
    """`del a, b`: the names are unbound (in model code, usually unused arguments)."""

    targets: tuple[Expr, ...]
    span: Span


@dataclass(frozen=True, slots=True)
class Unsupported:
    """A statement outside the static language, kept where it stands.

    Parsing never fails a file for code outside the DSL: real model files carry
    training loops, flag definitions and `with` blocks that no target reaches.  The
    diagnostic is reported only if resolution executes this statement.
    """

    #: Diagnostic code, message and hint reported when the statement is executed.
    code: str
    message: str
    hint: str | None
    #: The whole statement.
    span: Span
    #: Where the unsupported construct itself is (inside the statement).
    where: Span
    #: Names the statement would bind in Python (so a skipped `def` or `class` still
    #: says what it defines), and a short description for warnings.
    binds: tuple[str, ...] = ()
    what: str = "statement"


Stmt = Union[
    Import,
    Delete,
    Unsupported,
    Assign,
    AugAssign,
    AnnAssign,
    ExprStmt,
    Return,
    If,
    For,
    While,
    With,
    Raise,
    Assert,
    Pass,
    Break,
    Continue,
    FunctionDef,
]


@dataclass(frozen=True, slots=True)
class ModelFile:
    """A parsed model file: imports, definitions and top-level statements in order."""

    file: SourceFile
    #: Path relative to the build root with "/" separators, e.g. "models/net.py".
    relpath: str
    #: Top-level statements (imports, definitions, constants, `aot.target(...)` calls,
    #: and `Unsupported` ones) in order.
    body: tuple[Union[Stmt, ClassDef], ...]
    docstring: str | None

    @property
    def imports(self) -> tuple[Import, ...]:
        return tuple(s for s in self.body if isinstance(s, Import))
