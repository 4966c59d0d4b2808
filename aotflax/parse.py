"""Parse: model file text -> syntax IR (`ir.ModelFile`), with source spans.

The file is parsed once by CPython's own parser (`ast`; never imported or
executed), then compiled from that tree, which locates the errors the parser lets
through ('return' outside a function, duplicate arguments).  Constructs outside the
DSL are rejected here with located errors, so `resolve` only ever sees the subset
it understands.

Spans are in characters (CPython's columns are UTF-8 bytes) and cover what the
node's own text covers: an expression's span leaves out its grouping parentheses,
a parenthesized tuple's span its parentheses.  What `ast` does not locate (names
of definitions, parameters without their defaults, comprehension clauses,
f-string fields) is found in the text next to what it does locate (`source_text`).
"""

from __future__ import annotations

import ast
import re
import warnings
from functools import partial
from typing import Callable, NoReturn, Sequence, TypeVar, Union

from . import ir, quoting
from .diagnostics import BuildError, Diagnostic, SourceFile, Span
from .source_text import SourceText, fstring_text

T = TypeVar("T")

#: Modules a model file may import, and what `import X` binds.
ALLOWED_IMPORTS = frozenset(
    {
        "aotflax",
        "jax",
        "jax.numpy",
        "jax.lax",
        "jax.nn",
        "jax.random",
        "jax.ops",
        "jax.scipy",
        "jax.scipy.special",
        "numpy",
        "math",
        "functools",
        "typing",
        "__future__",
        "optax",
    }
)

_BINOPS: dict[type, str] = {
    ast.Add: "+",
    ast.Sub: "-",
    ast.Mult: "*",
    ast.Div: "/",
    ast.FloorDiv: "//",
    ast.Mod: "%",
    ast.Pow: "**",
    ast.MatMult: "@",
    ast.BitAnd: "&",
    ast.BitOr: "|",
    ast.BitXor: "^",
    ast.LShift: "<<",
    ast.RShift: ">>",
}
_UNARYOPS: dict[type, str] = {ast.USub: "-", ast.UAdd: "+", ast.Invert: "~", ast.Not: "not"}
_CMPOPS: dict[type, str] = {
    ast.Eq: "==",
    ast.NotEq: "!=",
    ast.Lt: "<",
    ast.LtE: "<=",
    ast.Gt: ">",
    ast.GtE: ">=",
    ast.In: "in",
    ast.NotIn: "not in",
    ast.Is: "is",
    ast.IsNot: "is not",
}

#: Expressions outside the DSL, as messages name them.
_UNSUPPORTED_EXPRS = {
    "Set": "set displays",
    "SetComp": "set comprehensions",
    "Await": "'await'",
    "Yield": "'yield'",
    "YieldFrom": "'yield'",
    "NamedExpr": "assignment expressions (:=)",
    "TemplateStr": "template strings",
}

_FUNCTIONS = (ast.FunctionDef, ast.AsyncFunctionDef)
_SIMPLE = (ast.Expr, ast.Assign, ast.AugAssign, ast.AnnAssign, ast.Return, ast.Raise,
           ast.Assert, ast.Pass, ast.Break, ast.Continue, ast.Global, ast.Nonlocal,
           ast.Delete, ast.Import, ast.ImportFrom) + ((ast.TypeAlias,) if hasattr(
               ast, "TypeAlias") else ())
_TRY_STAR = (ast.TryStar,) if hasattr(ast, "TryStar") else ()


def decode_source(path: str, data: bytes) -> SourceFile:
    """Decode model bytes as UTF-8; a bad byte is a located error."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        prefix = data[: e.start]
        line = prefix.count(b"\n") + 1
        col = e.start - (prefix.rfind(b"\n") + 1)
        shown = SourceFile(path, data.decode("utf-8", errors="replace"))
        span = Span(shown, line, col, line, col + 1)
        raise BuildError(
            [
                Diagnostic(
                    "AOT101",
                    f"model file is not valid UTF-8 (byte 0x{data[e.start]:02x})",
                    span,
                    hint="save the file as UTF-8",
                )
            ]
        ) from None
    if text.startswith("\ufeff"):
        text = text[1:]
    return SourceFile(path, text)


def parse_model(source: SourceFile, relpath: str | None = None) -> ir.ModelFile:
    """Parse one model file into the syntax IR, reporting every unsupported construct.

    **Arguments:**
    - `source`: the decoded file.
    - `relpath`: its path relative to the build root ("models/net.py").

    **Returns:** the `ir.ModelFile`; raises `BuildError` with all diagnostics otherwise.
    """
    tree = _check_syntax(source)
    source = SourceFile(source.path, source.text, relpath or source.path)
    try:
        with warnings.catch_warnings():  # evaluating string pieces may warn of escapes
            warnings.simplefilter("ignore")
            return _Converter(source, SourceText(source.text)).model(tree, relpath or source.path)
    except RecursionError:
        raise BuildError([_too_deep(source)]) from None


def _too_deep(source: SourceFile) -> Diagnostic:
    """Nesting beyond what the parser handles, located at the longest line (the usual culprit)."""
    lines = source.lines()
    lineno = max(range(len(lines)), key=lambda i: len(lines[i])) + 1
    span = Span(source, lineno, 0, lineno, max(len(lines[lineno - 1]), 1))
    return Diagnostic("AOT100", "expressions are nested too deeply to parse", span,
                      hint="split the expression into several statements")


def _check_syntax(source: SourceFile) -> ast.Module:
    """Parse with CPython's parser and compile the tree (nothing runs); errors are located.

    **Returns:** the module's AST.
    """
    try:
        with warnings.catch_warnings():  # the build's output is diagnostics, not warnings
            warnings.simplefilter("ignore")
            tree = ast.parse(source.text, source.path)
            _compile(source, tree)
            return tree
    except SyntaxError as e:
        raise BuildError([_syntax_error(source, e)]) from None
    except ValueError as e:  # e.g. NUL bytes
        span = _nul_span(source)
        raise BuildError([Diagnostic("AOT100", f"syntax error: {e}", span)]) from None
    except (RecursionError, MemoryError):
        raise BuildError([_too_deep(source)]) from None


def _compile(source: SourceFile, tree: ast.Module) -> None:
    """Compile, never run: this catches what the parser lets through ('return' outside a
    function, 'break' outside a loop, duplicate arguments), which resolve relies on."""
    try:
        try:
            compile(tree, source.path, "exec", dont_inherit=True)
        except RecursionError:  # checking a tree recurses less deep than compiling the text
            compile(source.text, source.path, "exec", dont_inherit=True)
    except SyntaxError as e:  # the compiler's columns are UTF-8 bytes (the parser's are not)
        text = SourceText(source.text)
        raise BuildError([_syntax_error(source, e, text.col)]) from None


def _syntax_error(source: SourceFile, e: SyntaxError,
                  chars: Callable[[int, int], int] | None = None) -> Diagnostic:
    """CPython's syntax error as a diagnostic; `chars` turns byte columns into characters."""
    line = e.lineno or 1
    col = max((e.offset or 1) - 1, 0)
    end_line = e.end_lineno or line
    end_col = (e.end_offset or col + 2) - 1
    if chars is not None:
        col = chars(line, col)
        end_col = chars(end_line, end_col) if e.end_offset else end_col
    if end_line != line or end_col <= col:
        end_line, end_col = line, col + 1
    msg = (e.msg or "invalid syntax").replace("(<unknown>, line", "(line")
    return Diagnostic("AOT100", f"syntax error: {msg}", Span(source, line, col, end_line, end_col))


def _nul_span(source: SourceFile) -> Span:
    """Where the first NUL byte is (CPython reports it without a location)."""
    at = source.text.find("\0")
    if at < 0:
        return Span(source, 1, 0, 1, 1)
    line = source.text.count("\n", 0, at) + 1
    col = at - (source.text.rfind("\n", 0, at) + 1)
    return Span(source, line, col, line, col + 1)


class _Unsupported(Exception):
    def __init__(self, code: str, message: str, where: Span, hint: str | None = None):
        self.code, self.message, self.where, self.hint = code, message, where, hint


#: Something a diagnostic can point at: a located node, or a span found in the text.
_Where = Union[ast.AST, Span]


class _Converter:
    """Turns CPython's AST into IR nodes, statement by statement."""

    def __init__(self, source: SourceFile, text: SourceText):
        self.source = source
        self.text = text
        self.plain = text.ascii and not (text.line_delta or text.col_delta)
        #: How many `def`s (or lambdas) enclose the statement being converted.
        self.functions = 0

    # -------------------------------------------------------------- helpers

    def span(self, node: ast.AST) -> Span:
        if self.plain:  # the file's own text, all ASCII: columns are characters
            return Span(self.source, node.lineno, node.col_offset,  # type: ignore[attr-defined]
                        node.end_lineno, node.end_col_offset)  # type: ignore[attr-defined]
        t = self.text
        line, end_line = node.lineno, node.end_lineno  # type: ignore[attr-defined]
        col = t.col(line, node.col_offset)  # type: ignore[attr-defined]
        end_col = t.col(end_line, node.end_col_offset)  # type: ignore[attr-defined]
        if t.line_delta or t.col_delta:
            return self.span_at(t.starts[line - 1] + col, t.starts[end_line - 1] + end_col)
        return Span(self.source, line, col, end_line, end_col)

    def span_at(self, start: int, end: int) -> Span:
        """The span of the text from offset `start` to offset `end`."""
        return Span(self.source, *self.text.place(start), *self.text.place(end))

    def fail(self, code: str, message: str, where: _Where, hint: str | None = None) -> NoReturn:
        raise _Unsupported(code, message, where if isinstance(where, Span) else self.span(
            where), hint)

    def lazily(self, node: ast.stmt | list[ast.stmt],
               fn: Callable[[], T]) -> T | ir.Unsupported:
        """Convert one statement; what the DSL cannot express becomes `ir.Unsupported`.

        Its diagnostic is kept with the statement and reported only if resolve executes it:
        a training loop no target reaches is never an error.
        """
        try:
            return fn()
        except _Unsupported as u:
            return ir.Unsupported(u.code, u.message, u.hint, self.stmt_span(node), u.where,
                                  _binds(node), self.what(node))

    def stmt_span(self, node: ast.stmt | list[ast.stmt]) -> Span:
        """A statement's span; a line of statements (`a = 1; b = 2`) spans all of them."""
        if isinstance(node, list):
            return self.span_at(self.text.start(node[0]), self.text.end(node[-1]))
        return self.span(node)

    def def_name(self, node: ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef
                 ) -> tuple[int, int]:
        """The offsets of a definition's name (after `def`, `async def` or `class`)."""
        return self.text.def_name(self.text.start(node))

    def string_pieces(self, node: ast.expr) -> list[tuple[int, int]]:
        """The string literals a string expression is written as ("a" f"b" 'c')."""
        return self.text.string_pieces(self.text.start(node), self.text.end(node))

    def what(self, node: ast.stmt | list[ast.stmt]) -> str:
        """How a warning names a statement: "function main", "'with' block", ..."""
        if isinstance(node, (*_FUNCTIONS, ast.ClassDef)):
            start, end = self.def_name(node)
            kind = "class" if isinstance(node, ast.ClassDef) else "function"
            return f"{kind} {self.text.text[start:end]}"
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            return "import"
        for cls, what in _STATEMENT_NAMES:
            if isinstance(node, cls):
                return what
        return "statement"

    def lines(self, stmts: Sequence[ast.stmt]) -> list[list[ast.stmt]]:
        """Statements as lines: simple statements joined by ';' share one."""
        out: list[list[ast.stmt]] = []
        text = self.text
        for stmt in stmts:
            if out and isinstance(stmt, _SIMPLE) and isinstance(out[-1][-1], _SIMPLE):
                if text.joined(text.end(out[-1][-1]), text.start(stmt)):
                    out[-1].append(stmt)
                    continue
            out.append([stmt])
        return out

    def one_line_body(self, body: Sequence[ast.stmt]) -> bool:
        """Whether a block follows its header's ':' on the same line (`def f(): pass`)."""
        return self.text.after_colon(self.text.start(body[0]))

    # -------------------------------------------------------------- module

    def model(self, tree: ast.Module, relpath: str) -> ir.ModelFile:
        body: list = []
        for stmt in tree.body:
            if isinstance(stmt, ast.ClassDef):
                body.append(self.lazily(stmt, partial(self.classdef, stmt)))
                continue
            body.extend(self.statements([stmt]))
        return ir.ModelFile(self.source, relpath, tuple(body),
                            ast.get_docstring(tree, clean=True))

    def import_(self, node: ast.Import | ast.ImportFrom) -> list[ir.Import]:
        """Import statements bind names; what they mean is resolve's business.

        Any module may be named: an import no target uses is skipped with a warning, and
        one a target uses must be a module of the static language or a model file of the
        build (resolve says which).  CPython has normalized the names (NFKC).
        """
        out: list[ir.Import] = []
        if isinstance(node, ast.Import):
            for alias in node.names:
                mod = alias.name
                if alias.asname is not None:
                    out.append(ir.Import(mod, alias.asname, None, self.span(alias)))
                else:  # `import a.b.c` binds `a` and loads the whole path
                    first = mod.split(".")[0]
                    out.append(ir.Import(first, first, None, self.span(alias),
                                         dotted=mod if "." in mod else None))
            return out
        mod, level = node.module or "", node.level or 0
        if node.names[0].name == "*":
            self.fail("AOT104", f"'from {'.' * level}{mod} import *' is not supported", node,
                      hint="import the names you use explicitly")
        for alias in node.names:
            out.append(ir.Import(mod, alias.asname or alias.name, alias.name, self.span(alias),
                                 level=level))
        return out

    def classdef(self, node: ast.ClassDef) -> ir.ClassDef:
        bases = tuple(self.expr(b.value if isinstance(b, ast.Starred) else b)
                      for b in node.bases)
        metaclass = None
        for kw in node.keywords:
            if kw.arg != "metaclass":
                self.fail("AOT102", "class keywords other than metaclass= are not supported",
                          kw)
            metaclass = self.expr(kw.value)
        decorators = tuple(self.expr(d) for d in node.decorator_list)
        methods: list[ir.FunctionDef] = []
        others: list[ir.Unsupported] = []
        fields: list[ir.Stmt] = []
        if self.one_line_body(node.body):  # `class A: x = 1`: each statement refused apart
            for small in node.body:
                others.append(self.not_in_class(small))
        else:
            for i, line in enumerate(self.lines(node.body)):
                first = line[0]
                if isinstance(first, _FUNCTIONS):
                    got = self.lazily(first, partial(self.functiondef, first))
                    if isinstance(got, ir.FunctionDef):
                        methods.append(got)
                    else:
                        others.append(got)
                elif i == 0 and self.is_docstring(line):
                    continue
                elif all(isinstance(s, ast.Pass) for s in line):
                    continue
                elif _is_field(line):
                    for small in line:
                        field = self.lazily(small, partial(self.small_statement, small))
                        if isinstance(field, ir.Unsupported):
                            others.append(field)
                        else:
                            fields.append(field)
                else:
                    others.append(self.not_in_class(line if isinstance(first, _SIMPLE)
                                                    else first))
        name = self.def_name(node)
        return ir.ClassDef(
            node.name,
            bases,
            tuple(methods),
            ast.get_docstring(node, clean=True),
            self.span(node),
            self.span_at(*name),
            decorators,
            tuple(others),
            tuple(fields),
            metaclass,
        )

    def not_in_class(self, node: ast.stmt | list[ast.stmt]) -> ir.Unsupported:
        sp = self.stmt_span(node)
        return ir.Unsupported(
            "AOT102", "a module class may contain only methods and attributes (name = value)",
            "compute the value at module level and assign it to a class attribute, or make it "
            "a hyperparameter of apply",
            sp, sp, _binds(node), self.what(node))

    def is_docstring(self, line: list[ast.stmt]) -> bool:
        """A line of one string (a plain or implicitly concatenated one, bytes too)."""
        if len(line) != 1 or not isinstance(line[0], ast.Expr):
            return False
        value = line[0].value
        if isinstance(value, ast.Constant):
            return isinstance(value.value, (str, bytes))
        return isinstance(value, ast.JoinedStr) and len(self.string_pieces(value)) > 1

    # -------------------------------------------------------------- statements

    def statements(self, stmts: Sequence[ast.stmt]) -> list[ir.Stmt]:
        out: list[ir.Stmt] = []
        for stmt in stmts:
            if isinstance(stmt, (ast.Import, ast.ImportFrom)):
                got = self.lazily(stmt, partial(self.import_, stmt))
                out.extend(got if isinstance(got, list) else [got])
            elif isinstance(stmt, _SIMPLE):
                out.append(self.lazily(stmt, partial(self.small_statement, stmt)))
            else:
                out.append(self.lazily(stmt, partial(self.compound, stmt)))
        return out

    def block(self, stmts: Sequence[ast.stmt]) -> tuple[ir.Stmt, ...]:
        return tuple(self.statements(stmts))

    def small_statement(self, node: ast.stmt) -> ir.Stmt:
        sp = self.span(node)
        if isinstance(node, ast.Assign):
            targets = tuple(self.target(t) for t in node.targets)
            return ir.Assign(targets, self.expr(node.value), sp)
        if isinstance(node, ast.AugAssign):
            op = _BINOPS[type(node.op)]
            return ir.AugAssign(self.target(node.target), op, self.expr(node.value), sp)
        if isinstance(node, ast.AnnAssign):
            value = self.expr(node.value) if node.value is not None else None
            ann = self.expr(node.annotation)
            return ir.AnnAssign(self.target(node.target), ann, value, sp)
        if isinstance(node, ast.Expr):
            return ir.ExprStmt(self.expr(node.value), sp)
        if isinstance(node, ast.Return):
            return ir.Return(self.expr(node.value) if node.value is not None else None, sp)
        if isinstance(node, ast.Raise):
            if node.cause is not None:
                self.fail("AOT102", "'raise ... from ...' is not supported", node)
            return ir.Raise(self.expr(node.exc) if node.exc is not None else None, sp)
        if isinstance(node, ast.Assert):
            msg = self.expr(node.msg) if node.msg is not None else None
            return ir.Assert(self.expr(node.test), msg, sp)
        if isinstance(node, ast.Pass):
            return ir.Pass(sp)
        if isinstance(node, ast.Break):
            return ir.Break(sp)
        if isinstance(node, ast.Continue):
            return ir.Continue(sp)
        if isinstance(node, (ast.Global, ast.Nonlocal)):
            self.fail("AOT102", f"'{type(node).__name__.lower()}' is not supported", node,
                      hint="pass values as arguments and return results instead")
        if isinstance(node, ast.Delete):
            return ir.Delete(tuple(self.target(t) for t in self.deleted(node)), sp)
        self.fail("AOT102", f"unsupported statement: {type(node).__name__}", node)

    def deleted(self, node: ast.Delete) -> list[ast.expr]:
        """What `del` unbinds: `del (a, b)` and `del [a, b]` name a and b, as `del a, b` does
        (but `del (a, b),` names one tuple)."""
        if len(node.targets) == 1 and isinstance(node.targets[0], (ast.Tuple, ast.List)):
            one = node.targets[0]
            if "," not in self.text.text[self.text.end(one): self.text.end(node)]:
                return one.elts
        return node.targets

    def compound(self, node: ast.stmt) -> ir.Stmt:
        sp = self.span(node)
        if isinstance(node, _FUNCTIONS):
            return self.functiondef(node)
        if isinstance(node, ast.If):
            orelse: tuple[ir.Stmt, ...] = ()
            if node.orelse and self.is_elif(node.orelse[0]):
                orelse = (self.compound(node.orelse[0]),)
            elif node.orelse:
                orelse = self.block(node.orelse)
            return ir.If(self.expr(node.test), self.block(node.body), orelse, sp)
        if isinstance(node, (ast.For, ast.AsyncFor)):
            if isinstance(node, ast.AsyncFor):
                self.fail("AOT102", "'async for' is not supported", node)
            orelse = self.block(node.orelse)
            return ir.For(
                self.target(node.target), self.expr(node.iter), self.block(node.body), orelse, sp
            )
        if isinstance(node, ast.While):
            if not self.functions:
                self.fail("AOT102", "'while' loops run only inside functions: the top level "
                          "of a model file binds names once", node,
                          hint="move the loop into a function, or use a 'for' loop")
            return ir.While(self.expr(node.test), self.block(node.body),
                            self.block(node.orelse), sp)
        if isinstance(node, ast.ClassDef):
            self.fail("AOT102", "classes may be defined only at the top level of a model file", node)
        if isinstance(node, (ast.Try, *_TRY_STAR)):
            self.fail("AOT102", "'try' is not supported in model files", node)
        if isinstance(node, ast.With) and self.functions and len(node.items) == 1 and \
                node.items[0].optional_vars is None:  # `with nn.stochastic(rng):`
            return ir.With(self.expr(node.items[0].context_expr), self.block(node.body), sp)
        if isinstance(node, (ast.With, ast.AsyncWith)):
            self.fail(
                "AOT102",
                "'with' is supported only as `with nn.stochastic(rng):` inside a function: "
                "state and randomness are explicit in aotflax",
                node,
                hint="BatchNorm statistics are returned in new_state; pass rng= to stochastic targets",
            )
        self.fail("AOT102", f"unsupported statement: {type(node).__name__}", node)

    def is_elif(self, node: ast.stmt) -> bool:
        """Whether the `if` in an `orelse` is an `elif` (not an `else:` block's first line)."""
        return isinstance(node, ast.If) and self.text.text.startswith("elif", self.text.start(
            node))

    def functiondef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> ir.FunctionDef:
        if isinstance(node, ast.AsyncFunctionDef):
            self.fail("AOT102", "'async def' is not supported", node)
        name = self.def_name(node)
        opening = self.text.skip(name[1])
        if self.text.text.startswith("[", opening):  # type parameters (Python 3.12)
            opening = self.text.skip(self.text.closing(opening, self.text.end(node)) + 1)
        params = self.parameters(node.args, node, opening)
        if node.returns is not None:
            self.annotation(node.returns)
        docstring = ast.get_docstring(node, clean=True)
        self.functions += 1
        try:
            if docstring is not None and not self.one_line_body(node.body):
                body = self.block(node.body[len(self.lines(node.body)[0]):])
            else:
                body = self.block(node.body)
        finally:
            self.functions -= 1
        decorators = tuple(self.expr(d) for d in node.decorator_list)
        return ir.FunctionDef(
            node.name,
            params,
            body,
            decorators,
            docstring,
            self.span(node),
            self.span_at(*name),
        )

    def parameters(self, args: ast.arguments, owner: ast.AST, opening: int) -> ir.Parameters:
        """A def's or lambda's parameters; `opening` is the offset of the def's '(' or where
        `lambda` ends.  A parameter's span is its name (with its stars); the list's runs
        from the first parameter to the ')' or ':' that ends it."""
        out: list[ir.Param] = []
        last_end = 0

        def add(arg: ast.arg, default: ast.expr | None, kind: str) -> None:
            nonlocal last_end
            value = self.expr(default) if default is not None else None
            ann = self.annotation(arg.annotation) if arg.annotation is not None else None
            start, end = self.text.name_at(self.text.start(arg))
            if kind in ("vararg", "kwarg"):
                start = self.stars_before(start)
            out.append(ir.Param(arg.arg, value, ann, kind, self.span_at(start, end)))
            last = default if default is not None else arg.annotation
            last_end = self.text.end(last) if last is not None else end

        positional = [*args.posonlyargs, *args.args]
        first_default = len(positional) - len(args.defaults)
        for i, arg in enumerate(positional):
            add(arg, args.defaults[i - first_default] if i >= first_default else None,
                "positional")
        if args.vararg is not None:
            add(args.vararg, None, "vararg")
        for arg, default in zip(args.kwonlyargs, args.kw_defaults):
            add(arg, default, "kwonly")
        if args.kwarg is not None:
            add(args.kwarg, None, "kwarg")
        if not out:
            return ir.Parameters((), self.span(owner))
        text = self.text
        if isinstance(owner, ast.Lambda):  # up to the ':'
            start = text.skip(opening)
            end = text.lambda_params_end(last_end)
        else:  # up to the ')'
            start = text.skip(opening + 1)
            end = text.closing(opening, text.end(owner))
        return ir.Parameters(tuple(out), self.span_at(start, end))

    def stars_before(self, offset: int) -> int:
        """The offset of the `*` or `**` before a `*args` or `**kwargs` name."""
        text = self.text.text
        while offset > 0 and text[offset - 1] in " \t\f\r\n\\":
            offset -= 1
        while offset > 0 and text[offset - 1] == "*":
            offset -= 1
        return offset

    def annotation(self, node: ast.expr) -> ir.Expr:
        """A type annotation: names, attributes, subscripts and literals only.

        Annotations are never evaluated by the build, but a user initializer is copied
        into generated code, where Python evaluates them: nothing may run there.
        """
        value = self.expr(node)
        stack: list[ir.Expr] = [value]
        while stack:
            e = stack.pop()
            if isinstance(e, ir.Attribute):
                stack.append(e.value)
            elif isinstance(e, ir.Subscript):
                stack.extend((e.value, e.index))
            elif isinstance(e, (ir.TupleExpr, ir.ListExpr)):
                stack.extend(e.elts)
            elif isinstance(e, ir.BinOp) and e.op == "|":
                stack.extend((e.left, e.right))
            elif not isinstance(e, (ir.Name, ir.Constant)):
                self.fail("AOT103", "annotations may only name types (names, attributes, "
                          "subscripts, strings)", node)
        return value

    # -------------------------------------------------------------- targets

    def target(self, node: ast.expr) -> ir.Target:
        if isinstance(node, (ast.Name, ast.Attribute, ast.Subscript)):
            return self.expr(node)
        if isinstance(node, (ast.Tuple, ast.List)):
            elts: list[ir.Expr] = []
            for el in node.elts:
                if isinstance(el, ast.Starred):
                    elts.append(ir.Starred(self.target(el.value), self.span(el)))
                else:
                    elts.append(self.target(el))
            if isinstance(node, ast.Tuple):
                return ir.TupleExpr(tuple(elts), self.tuple_span(node))
            return ir.ListExpr(tuple(elts), self.span(node))
        self.fail("AOT103", "cannot assign to this expression", node)

    # -------------------------------------------------------------- expressions

    def expr(self, node: ast.expr) -> ir.Expr:
        method = _EXPRS.get(type(node))
        if method is None:
            name = type(node).__name__
            self.fail("AOT103", f"{_UNSUPPORTED_EXPRS.get(name, name)} are not supported in "
                      "model files", node)
        return method(self, node)

    def expr_Name(self, node: ast.Name) -> ir.Expr:
        return ir.Name(node.id, self.span(node))

    def expr_Constant(self, node: ast.Constant) -> ir.Expr:
        if isinstance(node.value, bytes) and len(self.string_pieces(node)) > 1:
            self.fail("AOT103", "bytes literals are not supported", node)
        return ir.Constant(node.value, self.span(node))

    def expr_JoinedStr(self, node: ast.JoinedStr) -> ir.Expr:
        """An f-string, or strings and f-strings written next to each other.

        Adjacent pieces join from the right (`a (b c)`): literal text of one piece stays a
        part of its own next to an f-string's parts.
        """
        text = self.text.text
        pieces: list[list] = []  # each piece's parts
        for start, end in self.string_pieces(node):
            m = self.text.string_start(start)
            if m is not None and "f" in m.group(1).lower():
                pieces.append(self.fstring_parts(start, m))
            else:
                pieces.append([ast.literal_eval(text[start:end])])
        if len(pieces) == 1:
            return ir.FString(tuple(pieces[0]), self.span(node))
        # from the right: while no field has come, the text so far is one string
        backwards: list = []  # the parts, last first
        suffix: list[str] = []  # the text after the rightmost field, last first
        for parts in reversed(pieces):
            if not backwards and not any(isinstance(p, ir.FormattedValue) for p in parts):
                suffix.extend(reversed(parts))
                continue
            if not backwards and suffix:
                backwards.append("".join(reversed(suffix)))
            backwards.extend(reversed(parts))
        if not backwards:
            return ir.Constant("".join(reversed(suffix)), self.span(node))
        return ir.FString(tuple(reversed(backwards)), self.span(node))

    def fstring_parts(self, start: int, m: re.Match) -> list:
        """An f-string's parts: literal text (escapes resolved) and `FormattedValue`s."""
        text = self.text.text
        raw = "r" in m.group(1).lower()
        parts: list = []
        literal = [m.end()]

        def field(at: int) -> int:
            if literal[0] < at:
                parts.append(fstring_text(text[literal[0]: at], raw))
            end = self.formatted_value(at, parts)
            literal[0] = end
            return end

        stop = self.text.scan_fstring(m, field) - len(m.group(2))
        if literal[0] < stop:
            parts.append(fstring_text(text[literal[0]: stop], raw))
        return parts

    def formatted_value(self, at: int, parts: list) -> int:
        """Convert the replacement field opening at `at` into `parts`; where it ends."""
        expr_end, conversion, spec, nested, equal, end = self.text.field(at)
        where = self.span_at(at, end)
        if nested:
            self.fail("AOT103", "nested f-string format specs are not supported", where)
        if equal:
            self.fail("AOT103", "f-string '=' specifiers are not supported", where)
        source = self.text.text[at + 1: expr_end]
        line, col = self.text.place(at + 1)
        try:  # the expression alone, placed where it stands (CPython parses it so too)
            tree = ast.parse("(" + source + ")", mode="eval")
        except (SyntaxError, ValueError, RecursionError, MemoryError):
            self.fail("AOT103", "unsupported f-string part", where)
        inner = _Converter(self.source, SourceText("(" + source + ")", line - 1, col - 1))
        parts.append(ir.FormattedValue(inner.expr(tree.body), spec, conversion, where))
        return end

    def expr_Attribute(self, node: ast.Attribute) -> ir.Expr:
        value = self.expr(node.value)  # first, so `().__class__.__bases__` names __class__
        attr = node.attr
        # `f.__name__`, a function's name (2020 code set it on lambdas it dispatched on), is
        # data, and so is a base's `__init__` called through `super()`; every other dunder
        # attribute is Python's machinery
        if len(attr) > 4 and attr.startswith("__") and attr.endswith("__") and \
                attr != "__name__" and not (attr == "__init__" and _is_super_call(node.value)):
            end = self.text.end(node)
            start = end
            text = self.text.text
            while start > 0 and (text[start - 1].isalnum() or text[start - 1] == "_"
                                 or not text[start - 1].isascii()):
                start -= 1
            self.fail("AOT105", f"attribute '{attr}' is not available in model files: model "
                      "files are data, never executed", self.span_at(start, end))
        return ir.Attribute(value, attr, self.span(node))

    def expr_Call(self, node: ast.Call) -> ir.Expr:
        args: list[ir.Expr] = []
        keywords: list[ir.Keyword] = []
        items: list[ast.AST] = [*node.args, *node.keywords]
        if node.args and node.keywords and _before(node.keywords[0], node.args[-1]):
            items.sort(key=_position)  # `f(a=1, *b)`: in the order written
        for arg in items:
            if isinstance(arg, ast.keyword):
                keywords.append(ir.Keyword(arg.arg, self.expr(arg.value), self.span(arg)))
            elif isinstance(arg, ast.Starred):
                args.append(ir.Starred(self.expr(arg.value), self.span(arg)))
            else:
                args.append(self.expr(arg))  # type: ignore[arg-type]
        return ir.Call(self.expr(node.func), tuple(args), tuple(keywords), self.span(node))

    def expr_BinOp(self, node: ast.BinOp) -> ir.Expr:
        return ir.BinOp(self.expr(node.left), _BINOPS[type(node.op)], self.expr(node.right),
                        self.span(node))

    def expr_UnaryOp(self, node: ast.UnaryOp) -> ir.Expr:
        return ir.UnaryOp(_UNARYOPS[type(node.op)], self.expr(node.operand), self.span(node))

    def expr_BoolOp(self, node: ast.BoolOp) -> ir.Expr:
        # CPython keeps `a and b and c` flat and `(a and b) and c` nested, as the IR does
        op = "and" if isinstance(node.op, ast.And) else "or"
        return ir.BoolOp(op, tuple(self.expr(v) for v in node.values), self.span(node))

    def expr_Compare(self, node: ast.Compare) -> ir.Expr:
        ops = tuple(_CMPOPS[type(op)] for op in node.ops)
        comps = tuple(self.expr(c) for c in node.comparators)
        return ir.Compare(self.expr(node.left), ops, comps, self.span(node))

    def expr_IfExp(self, node: ast.IfExp) -> ir.Expr:
        return ir.IfExp(
            self.expr(node.test), self.expr(node.body), self.expr(node.orelse), self.span(node)
        )

    def elements(self, elts: Sequence[ast.expr]) -> tuple[ir.Expr, ...]:
        out: list[ir.Expr] = []
        for el in elts:
            if isinstance(el, ast.Starred):
                out.append(ir.Starred(self.expr(el.value), self.span(el)))
            else:
                out.append(self.expr(el))
        return tuple(out)

    def tuple_span(self, node: ast.Tuple) -> Span:
        """A tuple's span; a parenthesized one's leaves its parentheses out."""
        t = self.text
        start, end = t.start(node), t.end(node)
        text = t.text
        if text[start] != "(" or text[end - 1] != ")" or not t.encloses(start, end):
            return self.span(node)
        first = t.skip(start + 1)
        if not node.elts:
            return self.span_at(first, first)
        last = t.outer_end(t.end(node.elts[-1]), end - 1)
        after = t.skip(last)
        return self.span_at(first, after + 1 if text[after] == "," else last)

    def expr_Tuple(self, node: ast.Tuple) -> ir.Expr:
        return ir.TupleExpr(self.elements(node.elts), self.tuple_span(node))

    def expr_List(self, node: ast.List) -> ir.Expr:
        return ir.ListExpr(self.elements(node.elts), self.span(node))

    def expr_Dict(self, node: ast.Dict) -> ir.Expr:
        keys: list = []
        values: list = []
        for key, value in zip(node.keys, node.values):
            keys.append(self.expr(key) if key is not None else None)
            values.append(self.expr(value))
        return ir.DictExpr(tuple(keys), tuple(values), self.span(node))

    def expr_Subscript(self, node: ast.Subscript) -> ir.Expr:
        index = node.slice
        several = isinstance(index, ast.Tuple) and not self.parenthesized(index)
        items: list[ir.Expr] = []
        for el in index.elts if several else [index]:  # type: ignore[attr-defined]
            if isinstance(el, ast.Starred):
                self.fail("AOT103", "starred subscripts are not supported", el)
            if isinstance(el, ast.Slice):
                items.append(
                    ir.Slice(
                        self.expr(el.lower) if el.lower is not None else None,
                        self.expr(el.upper) if el.upper is not None else None,
                        self.expr(el.step) if el.step is not None else None,
                        self.slice_span(el),
                    )
                )
            else:
                items.append(self.expr(el))
        sp = self.span(node)
        value = ir.TupleExpr(tuple(items), sp) if several else items[0]
        return ir.Subscript(self.expr(node.value), value, sp)

    def parenthesized(self, node: ast.Tuple) -> bool:
        t = self.text
        start, end = t.start(node), t.end(node)
        return t.text[start] == "(" and t.text[end - 1] == ")" and t.encloses(start, end)

    def slice_span(self, node: ast.Slice) -> Span:
        """A slice's span: one ending in ':' keeps the blanks after it (`a[1: ]`)."""
        t = self.text
        start, end = t.start(node), t.end(node)
        if t.text[end - 1] == ":":
            while end < len(t.text) and t.text[end] in " \t\f":
                end += 1
        return self.span_at(start, end)

    def generators(self, node: ast.ListComp | ast.GeneratorExp | ast.DictComp,
                   first: ast.expr, closer: int) -> tuple[tuple[ir.Comprehension, ...], int]:
        """The `for ... in ... if ...` clauses after `first` (the element, or the value
        of a dict comprehension), before the bracket at `closer`.  Each clause spans from
        the end of what precedes it to the end of the last clause.  **Returns:** the
        clauses and that end."""
        t = self.text
        starts: list[int] = []
        at = t.end(first)
        for comp in node.generators:
            starts.append(t.outer_end(at, closer))
            at = t.end(comp.ifs[-1] if comp.ifs else comp.iter)
        end = t.outer_end(at, closer)
        out: list[ir.Comprehension] = []
        for comp, start in zip(node.generators, starts):
            sp = self.span_at(start, end)
            if comp.is_async:
                self.fail("AOT103", "async comprehensions are not supported", sp)
            ifs = tuple(self.expr(i) for i in comp.ifs)
            out.append(ir.Comprehension(self.target(comp.target), self.expr(comp.iter), ifs, sp))
        return tuple(out), end

    def expr_ListComp(self, node: ast.ListComp) -> ir.Expr:
        elt = self.expr(node.elt)
        generators = self.generators(node, node.elt, self.text.end(node) - 1)[0]
        return ir.ListComp("list", elt, generators, self.span(node))

    def expr_GeneratorExp(self, node: ast.GeneratorExp) -> ir.Expr:
        # CPython's span takes in the parentheses (the call's, for `f(x for x in y)`; none
        # in `a[x for x in y]`); the IR's leaves them out
        elt = self.expr(node.elt)
        t = self.text
        start, end = t.start(node), t.end(node)
        if t.text[start] == "(" and t.encloses(start, end):
            start, end = t.skip(start + 1), end - 1
        generators, end = self.generators(node, node.elt, end)
        return ir.ListComp("tuple", elt, generators, self.span_at(start, end))

    def expr_DictComp(self, node: ast.DictComp) -> ir.Expr:
        key, value = self.expr(node.key), self.expr(node.value)
        generators = self.generators(node, node.value, self.text.end(node) - 1)[0]
        return ir.DictComp(key, value, generators, self.span(node))

    def expr_Lambda(self, node: ast.Lambda) -> ir.Expr:
        opening = self.text.start(node) + len("lambda")
        return ir.Lambda(self.parameters(node.args, node, opening), self.expr(node.body),
                         self.span(node))

    def expr_Starred(self, node: ast.Starred) -> ir.Expr:
        return ir.Starred(self.expr(node.value), self.span(node))


_EXPRS: dict[type, Callable[[_Converter, ast.expr], ir.Expr]] = {
    getattr(ast, name[len("expr_"):]): method
    for name, method in vars(_Converter).items() if name.startswith("expr_")
}

_STATEMENT_NAMES: tuple[tuple[type | tuple[type, ...], str], ...] = (
    (ast.If, "'if' block"), ((ast.For, ast.AsyncFor), "'for' loop"), (ast.While, "'while' loop"),
    ((ast.With, ast.AsyncWith), "'with' block"), (ast.Try, "'try' block"))


def _position(node: ast.AST) -> tuple[int, int]:
    return node.lineno, node.col_offset  # type: ignore[attr-defined]


def _before(a: ast.AST, b: ast.AST) -> bool:
    return _position(a) < _position(b)


def _binds(node: ast.stmt | list[ast.stmt]) -> tuple[str, ...]:
    """Module-level names a statement binds in Python (for one that stays unconverted)."""
    out: list[str] = []

    def target(t: ast.expr) -> None:
        if isinstance(t, ast.Name):
            out.append(t.id)
        elif isinstance(t, (ast.Tuple, ast.List)):
            for el in t.elts:
                target(el)
        elif isinstance(t, ast.Starred):
            target(t.value)

    def visit(n: ast.stmt) -> None:
        if isinstance(n, (*_FUNCTIONS, ast.ClassDef)):
            out.append(n.name)
            return  # their bodies bind local names
        if isinstance(n, ast.Assign):
            for t in n.targets:
                target(t)
        elif isinstance(n, (ast.AugAssign, ast.AnnAssign, ast.For, ast.AsyncFor)):
            target(n.target)
        elif isinstance(n, ast.Import):
            out.extend(a.asname or a.name.split(".")[0] for a in n.names)
        elif isinstance(n, ast.ImportFrom) and n.names[0].name != "*":
            out.extend(a.asname or a.name for a in n.names)
        elif isinstance(n, (ast.With, ast.AsyncWith)):
            for item in n.items:
                if item.optional_vars is not None:
                    target(item.optional_vars)
        for child in _blocks(n):
            visit(child)

    for stmt in node if isinstance(node, list) else [node]:
        visit(stmt)
    return tuple(dict.fromkeys(quoting.normalize(name) for name in out))


def _blocks(node: ast.stmt) -> list[ast.stmt]:
    """The statements of a compound statement's blocks, where they bind module names
    (an `except*` handler's and a `match` case's are not looked into)."""
    if isinstance(node, (ast.If, ast.For, ast.AsyncFor, ast.While)):
        return [*node.body, *node.orelse]
    if isinstance(node, (ast.With, ast.AsyncWith)):
        return node.body
    if isinstance(node, ast.Try):
        return [*node.body, *(s for h in node.handlers for s in h.body), *node.orelse,
                *node.finalbody]
    if isinstance(node, _TRY_STAR):
        return [*node.body, *node.orelse, *node.finalbody]
    return []


def _is_field(line: list[ast.stmt]) -> bool:
    """`name: type = value` or `name = value` in a class body (a dataclass field)."""
    for small in line:
        if isinstance(small, ast.AnnAssign) and isinstance(small.target, ast.Name):
            continue
        if isinstance(small, ast.Assign) and len(small.targets) == 1 and isinstance(
                small.targets[0], ast.Name):
            continue
        return False
    return True


def _is_super_call(node: ast.expr) -> bool:
    """`super()` or `super(Cls, self)`: its `__init__` is the one dunder attribute a model
    file may name (a class's `__init__` calling its base's)."""
    return (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
            and node.func.id == "super")
