"""Parse: model file text -> syntax IR (`ir.ModelFile`), with source spans.

The file is parsed with libcst (never imported or executed).  Python's own
parser is consulted first only to locate syntax errors precisely: libcst may
report an unclosed bracket at the end of the file, CPython points at the
bracket.  Constructs outside the DSL are rejected here with located errors,
so `resolve` only ever sees the subset it understands.
"""

from __future__ import annotations

import ast
import re
import warnings
from functools import partial
from typing import Callable, Mapping, NoReturn, Sequence, TypeVar, cast

import libcst as cst
from libcst.metadata import CodeRange, MetadataWrapper, PositionProvider

from . import ir, quoting
from .diagnostics import BuildError, Diagnostic, Reporter, SourceFile, Span

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

_BINOPS = {
    "Add": "+",
    "Subtract": "-",
    "Multiply": "*",
    "Divide": "/",
    "FloorDivide": "//",
    "Modulo": "%",
    "Power": "**",
    "MatrixMultiply": "@",
    "BitAnd": "&",
    "BitOr": "|",
    "BitXor": "^",
    "LeftShift": "<<",
    "RightShift": ">>",
}
_AUGOPS = {k + "Assign": v for k, v in _BINOPS.items()}
_UNARYOPS = {"Minus": "-", "Plus": "+", "BitInvert": "~", "Not": "not"}
_CMPOPS = {
    "Equal": "==",
    "NotEqual": "!=",
    "LessThan": "<",
    "LessThanEqual": "<=",
    "GreaterThan": ">",
    "GreaterThanEqual": ">=",
    "In": "in",
    "NotIn": "not in",
    "Is": "is",
    "IsNot": "is not",
}


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
    _check_syntax(source)
    check_nesting(source)
    source = SourceFile(source.path, source.text, relpath or source.path)
    try:
        module = cst.parse_module(source.text)
        return _Converter(source, module, _positions(module)).model(relpath or source.path)
    except cst.ParserSyntaxError as e:  # CPython accepted it, libcst did not
        span = Span(source, e.raw_line, e.raw_column, e.raw_line, e.raw_column + 1)
        raise BuildError(
            [Diagnostic("AOT100", f"syntax not supported: {e.message}", span)]
        ) from None
    except RecursionError:
        raise BuildError([_too_deep(source)]) from None


#: Deepest expression nesting accepted, counting one level per operator of an `and`/`or`
#: chain as libcst nests them (CPython keeps a chain flat; libcst's native parser
#: overflows its stack on some 7,000 levels).  Real models stay far below.
MAX_NESTING = 1000


def check_nesting(source: SourceFile) -> None:
    """Refuse expressions nested deeper than `MAX_NESTING` before libcst sees the text.

    CPython bounds the nesting of everything but boolean chains itself (`_check_syntax`
    turns its RecursionError into a located error), so only a file with more `and`/`or`
    words than the limit is walked, on CPython's AST, iteratively (no depth is too much).
    """
    if len(_BOOL_WORDS.findall(source.text)) <= MAX_NESTING:
        return
    try:
        tree = ast.parse(source.text)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return  # _check_syntax reports these
    stack: list[tuple[ast.AST, int]] = [(tree, 0)]
    while stack:
        node, depth = stack.pop()
        depth += len(node.values) - 1 if isinstance(node, ast.BoolOp) else 1
        if depth > MAX_NESTING:
            line, col = getattr(node, "lineno", 1), getattr(node, "col_offset", 0)
            end = (getattr(node, "end_col_offset", None)
                   if getattr(node, "end_lineno", None) == line else None)
            span = Span(source, line, col, line, end or max(len(source.line(line)), col + 1))
            raise BuildError([Diagnostic(
                "AOT100", f"this expression nests more than {MAX_NESTING:,} levels deep "
                "(each operator of an 'and'/'or' chain is one level)", span,
                hint="split it into several statements, or use all(...) / any(...)")])
        stack.extend((child, depth) for child in ast.iter_child_nodes(node))


_BOOL_WORDS = re.compile(r"\b(?:and|or)\b")


def _positions(module: cst.Module) -> Mapping[cst.CSTNode, CodeRange]:
    """Every node's position: PositionProvider's one code-generation pass.

    `MetadataWrapper.resolve` also walks the whole tree for batchable providers even when
    there are none, which doubles the cost on large files (bench/static_stages.py); so the
    provider runs alone here, through the wrapper only if libcst's internals have moved.
    """
    provider = PositionProvider()
    try:
        provider._gen_impl(module)
        # the provider's table holds CodeRange values (libcst types it for any provider)
        return cast(Mapping[cst.CSTNode, CodeRange], provider._computed)
    except AttributeError:  # pragma: no cover - another libcst layout
        return MetadataWrapper(module, unsafe_skip_copy=True).resolve(PositionProvider)


def _too_deep(source: SourceFile) -> Diagnostic:
    """Nesting beyond what the parser handles, located at the longest line (the usual culprit)."""
    lines = source.text.splitlines() or [""]
    lineno = max(range(len(lines)), key=lambda i: len(lines[i])) + 1
    span = Span(source, lineno, 0, lineno, max(len(lines[lineno - 1]), 1))
    return Diagnostic("AOT100", "expressions are nested too deeply to parse", span,
                      hint="split the expression into several statements")


def _check_syntax(source: SourceFile) -> None:
    """Locate syntax errors with CPython's parser (parsing only; nothing runs)."""
    try:
        # compile, never run: also catches what the parser lets through ('return' outside a
        # function, 'break' outside a loop, duplicate arguments), which resolve relies on
        with warnings.catch_warnings():  # the build's output is diagnostics, not warnings
            warnings.simplefilter("ignore")
            compile(source.text, source.path, "exec", dont_inherit=True)
    except SyntaxError as e:
        line = e.lineno or 1
        col = max((e.offset or 1) - 1, 0)
        end_line = e.end_lineno or line
        end_col = (e.end_offset or col + 2) - 1
        if end_line != line or end_col <= col:
            end_line, end_col = line, col + 1
        msg = (e.msg or "invalid syntax").replace("(<unknown>, line", "(line")
        span = Span(source, line, col, end_line, end_col)
        raise BuildError([Diagnostic("AOT100", f"syntax error: {msg}", span)]) from None
    except ValueError as e:  # e.g. NUL bytes
        span = _nul_span(source)
        raise BuildError([Diagnostic("AOT100", f"syntax error: {e}", span)]) from None
    except (RecursionError, MemoryError):
        raise BuildError([_too_deep(source)]) from None


def _nul_span(source: SourceFile) -> Span:
    """Where the first NUL byte is (CPython reports it without a location)."""
    at = source.text.find("\0")
    if at < 0:
        return Span(source, 1, 0, 1, 1)
    line = source.text.count("\n", 0, at) + 1
    col = at - (source.text.rfind("\n", 0, at) + 1)
    return Span(source, line, col, line, col + 1)


class _Unsupported(Exception):
    def __init__(self, code: str, message: str, node: cst.CSTNode, hint: str | None = None):
        self.code, self.message, self.node, self.hint = code, message, node, hint


class _Converter:
    """Turns libcst nodes into IR nodes; collects errors statement by statement."""

    def __init__(self, source: SourceFile, module: cst.Module, positions):
        self.source = source
        self.module = module
        self.positions = positions
        self.reporter = Reporter()

    # -------------------------------------------------------------- helpers

    def span(self, node: cst.CSTNode) -> Span:
        r = self.positions[node]
        return Span(self.source, r.start.line, r.start.column, r.end.line, r.end.column)

    def fail(self, code: str, message: str, node: cst.CSTNode,
             hint: str | None = None) -> NoReturn:
        raise _Unsupported(code, message, node, hint)

    def guarded(self, fn: Callable[[], object]) -> object | None:
        """Run one conversion; record its error and go on with the next statement."""
        try:
            return fn()
        except _Unsupported as u:
            self.reporter.error(u.code, u.message, self.span(u.node), hint=u.hint)
            return None

    def lazily(self, node: cst.CSTNode, fn: Callable[[], T]) -> T | ir.Unsupported:
        """Convert one statement; what the DSL cannot express becomes `ir.Unsupported`.

        Its diagnostic is kept with the statement and reported only if resolve executes it:
        a training loop no target reaches is never an error.
        """
        try:
            return fn()
        except _Unsupported as u:
            return ir.Unsupported(u.code, u.message, u.hint, self.span(node), self.span(u.node),
                                  _binds(node), _what(node))

    # -------------------------------------------------------------- module

    def model(self, relpath: str) -> ir.ModelFile:
        body: list = []
        docstring = self.module.get_docstring(clean=True)
        for stmt in self.module.body:
            if isinstance(stmt, cst.ClassDef):
                body.append(self.lazily(stmt, partial(self.classdef, stmt)))
                continue
            body.extend(self.statements([stmt]))
        self.reporter.raise_if_errors()
        return ir.ModelFile(self.source, relpath, tuple(body), docstring)

    def import_(self, node: cst.BaseSmallStatement) -> list[ir.Import]:
        """Import statements bind names; what they mean is resolve's business.

        Any module may be named: an import no target uses is skipped with a warning, and
        one a target uses must be a module of the static language or a model file of the
        build (resolve says which).
        """
        out: list[ir.Import] = []
        if isinstance(node, cst.Import):
            for alias in node.names:
                mod = _dotted(self.module.code_for_node(alias.name))
                if alias.asname is not None:
                    out.append(ir.Import(mod, self.alias_name(alias.asname), None,
                                         self.span(alias)))
                else:  # `import a.b.c` binds `a` and loads the whole path
                    out.append(ir.Import(mod.split(".")[0], mod.split(".")[0], None,
                                         self.span(alias), dotted=mod if "." in mod else None))
            return out
        if isinstance(node, cst.ImportFrom):
            mod = _dotted(self.module.code_for_node(node.module)) if node.module else ""
            level = len(node.relative)
            if isinstance(node.names, cst.ImportStar):
                self.fail("AOT104", f"'from {'.' * level}{mod} import *' is not supported", node,
                          hint="import the names you use explicitly")
            for alias in node.names:
                member = _dotted(self.module.code_for_node(alias.name))
                bound = self.alias_name(alias.asname) if alias.asname else member
                out.append(ir.Import(mod, bound, member, self.span(alias), level=level))
            return out
        self.fail("AOT102", "unsupported statement", node)

    def alias_name(self, asname: cst.AsName) -> str:
        """The name an `import ... as name` binds (the grammar allows only a name there)."""
        if not isinstance(asname.name, cst.Name):
            self.fail("AOT102", "an import binds a name", asname)
        return _name(asname.name)

    def classdef(self, node: cst.ClassDef) -> ir.ClassDef:
        bases = tuple(self.expr(a.value) for a in node.bases)
        if node.keywords:
            self.fail("AOT102", "class keywords are not supported", node.keywords[0])
        decorators = tuple(self.expr(d.decorator) for d in node.decorators)
        methods: list[ir.FunctionDef] = []
        others: list[ir.Unsupported] = []
        fields: list[ir.Stmt] = []
        body = node.body.body if isinstance(node.body, cst.IndentedBlock) else node.body.body
        for i, stmt in enumerate(body):
            if isinstance(stmt, cst.FunctionDef):
                got = self.lazily(stmt, partial(self.functiondef, stmt))
                if isinstance(got, ir.FunctionDef):
                    methods.append(got)
                else:
                    others.append(got)
            elif i == 0 and _is_docstring(stmt):
                continue
            elif isinstance(stmt, cst.SimpleStatementLine) and all(
                isinstance(s, cst.Pass) for s in stmt.body
            ):
                continue
            elif isinstance(stmt, cst.SimpleStatementLine) and _is_field(stmt):
                for small in stmt.body:
                    field = self.lazily(small, partial(self.small_statement, small))
                    if isinstance(field, ir.Unsupported):
                        others.append(field)
                    else:
                        fields.append(field)
            else:
                others.append(ir.Unsupported(
                    "AOT102", "a module class may contain only methods",
                    "put constants at module level, or make them hyperparameters of apply",
                    self.span(stmt), self.span(stmt), _binds(stmt), _what(stmt)))
        return ir.ClassDef(
            _name(node.name),
            bases,
            tuple(methods),
            node.get_docstring(clean=True),
            self.span(node),
            self.span(node.name),
            decorators,
            tuple(others),
            tuple(fields),
        )

    # -------------------------------------------------------------- statements

    def statements(self, stmts) -> list[ir.Stmt]:
        out: list[ir.Stmt] = []
        for stmt in stmts:
            if isinstance(stmt, cst.SimpleStatementLine):
                for small in stmt.body:
                    if isinstance(small, (cst.Import, cst.ImportFrom)):
                        got = self.lazily(small, partial(self.import_, small))
                        out.extend(got if isinstance(got, list) else [got])
                        continue
                    out.append(self.lazily(small, partial(self.small_statement, small)))
            else:
                out.append(self.lazily(stmt, partial(self.compound, stmt)))
        return out

    def block(self, node: cst.BaseSuite) -> tuple[ir.Stmt, ...]:
        if isinstance(node, cst.IndentedBlock):
            return tuple(self.statements(node.body))
        if isinstance(node, cst.SimpleStatementSuite):
            return tuple(self.statements([cst.SimpleStatementLine(body=node.body)]))
        self.fail("AOT102", "unsupported block", node)

    def small_statement(self, node: cst.BaseSmallStatement) -> ir.Stmt:
        sp = self.span(node)
        if isinstance(node, cst.Assign):
            targets = tuple(self.target(t.target) for t in node.targets)
            return ir.Assign(targets, self.expr(node.value), sp)
        if isinstance(node, cst.AugAssign):
            op = _AUGOPS[type(node.operator).__name__]
            return ir.AugAssign(self.target(node.target), op, self.expr(node.value), sp)
        if isinstance(node, cst.AnnAssign):
            value = self.expr(node.value) if node.value is not None else None
            ann = self.expr(node.annotation.annotation)
            return ir.AnnAssign(self.target(node.target), ann, value, sp)
        if isinstance(node, cst.Expr):
            return ir.ExprStmt(self.expr(node.value), sp)
        if isinstance(node, cst.Return):
            return ir.Return(self.expr(node.value) if node.value is not None else None, sp)
        if isinstance(node, cst.Raise):
            if node.cause is not None:
                self.fail("AOT102", "'raise ... from ...' is not supported", node)
            return ir.Raise(self.expr(node.exc) if node.exc is not None else None, sp)
        if isinstance(node, cst.Assert):
            msg = self.expr(node.msg) if node.msg is not None else None
            return ir.Assert(self.expr(node.test), msg, sp)
        if isinstance(node, cst.Pass):
            return ir.Pass(sp)
        if isinstance(node, cst.Break):
            return ir.Break(sp)
        if isinstance(node, cst.Continue):
            return ir.Continue(sp)
        if isinstance(node, (cst.Global, cst.Nonlocal)):
            self.fail("AOT102", f"'{type(node).__name__.lower()}' is not supported", node,
                      hint="pass values as arguments and return results instead")
        if isinstance(node, cst.Del):
            target = node.target
            items = target.elements if isinstance(target, (cst.Tuple, cst.List)) else None
            targets = tuple(self.target(e.value) for e in items) if items is not None else (
                self.target(target),)
            return ir.Delete(targets, sp)
        self.fail("AOT102", f"unsupported statement: {type(node).__name__}", node)
        raise AssertionError("unreachable")

    def compound(self, node: cst.BaseCompoundStatement) -> ir.Stmt:
        sp = self.span(node)
        if isinstance(node, cst.FunctionDef):
            return self.functiondef(node)
        if isinstance(node, cst.If):
            orelse: tuple[ir.Stmt, ...] = ()
            if isinstance(node.orelse, cst.If):
                orelse = (self.compound(node.orelse),)
            elif isinstance(node.orelse, cst.Else):
                orelse = self.block(node.orelse.body)
            return ir.If(self.expr(node.test), self.block(node.body), orelse, sp)
        if isinstance(node, cst.For):
            if node.asynchronous is not None:
                self.fail("AOT102", "'async for' is not supported", node)
            orelse = self.block(node.orelse.body) if node.orelse else ()
            return ir.For(
                self.target(node.target), self.expr(node.iter), self.block(node.body), orelse, sp
            )
        if isinstance(node, cst.While):
            self.fail(
                "AOT102",
                "'while' loops are not supported: loops are unrolled at build time",
                node,
                hint="use 'for i in range(n)' with a static n, or jax.lax.scan for recurrence",
            )
        if isinstance(node, cst.ClassDef):
            self.fail("AOT102", "classes may be defined only at the top level of a model file", node)
        if isinstance(node, (cst.Try,)) or type(node).__name__ in ("TryStar",):
            self.fail("AOT102", "'try' is not supported in model files", node)
        if isinstance(node, cst.With):
            self.fail(
                "AOT102",
                "'with' is not supported: state and randomness are explicit in aotflax",
                node,
                hint="BatchNorm statistics are returned in new_state; pass rng= to stochastic targets",
            )
        self.fail("AOT102", f"unsupported statement: {type(node).__name__}", node)
        raise AssertionError("unreachable")

    def functiondef(self, node: cst.FunctionDef) -> ir.FunctionDef:
        if node.asynchronous is not None:
            self.fail("AOT102", "'async def' is not supported", node)
        params = self.parameters(node.params, node)
        if node.returns is not None:
            self.annotation(node.returns)
        body_nodes = node.body.body if isinstance(node.body, cst.IndentedBlock) else None
        docstring = node.get_docstring(clean=True)
        if body_nodes is not None and docstring is not None:
            body = tuple(self.statements(body_nodes[1:]))
        else:
            body = self.block(node.body)
        decorators = tuple(self.expr(d.decorator) for d in node.decorators)
        return ir.FunctionDef(
            _name(node.name),
            params,
            body,
            decorators,
            docstring,
            self.span(node),
            self.span(node.name),
        )

    def parameters(self, p: cst.Parameters, owner: cst.CSTNode) -> ir.Parameters:
        out: list[ir.Param] = []

        def add(param: cst.Param, kind: str) -> None:
            default = self.expr(param.default) if param.default is not None else None
            ann = self.annotation(param.annotation) if param.annotation else None
            out.append(ir.Param(_name(param.name), default, ann, kind, self.span(param)))

        for param in (*p.posonly_params, *p.params):
            add(param, "positional")
        if isinstance(p.star_arg, cst.Param):
            add(p.star_arg, "vararg")
        for param in p.kwonly_params:
            add(param, "kwonly")
        if p.star_kwarg is not None:
            add(p.star_kwarg, "kwarg")
        return ir.Parameters(tuple(out), self.span(p) if out else self.span(owner))

    def annotation(self, node: cst.Annotation) -> ir.Expr:
        """A type annotation: names, attributes, subscripts and literals only.

        Annotations are never evaluated by the build, but a user initializer is copied
        into generated code, where Python evaluates them: nothing may run there.
        """
        value = self.expr(node.annotation)
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
                          "subscripts, strings)", node.annotation)
        return value

    # -------------------------------------------------------------- targets

    def target(self, node: cst.BaseExpression) -> ir.Target:
        if isinstance(node, (cst.Name, cst.Attribute, cst.Subscript)):
            return self.expr(node)
        if isinstance(node, (cst.Tuple, cst.List)):
            elts: list[ir.Expr] = []
            for el in node.elements:
                if isinstance(el, cst.StarredElement):
                    elts.append(ir.Starred(self.target(el.value), self.span(el)))
                else:
                    elts.append(self.target(el.value))
            cls = ir.TupleExpr if isinstance(node, cst.Tuple) else ir.ListExpr
            return cls(tuple(elts), self.span(node))
        self.fail("AOT103", "cannot assign to this expression", node)
        raise AssertionError("unreachable")

    # -------------------------------------------------------------- expressions

    def expr(self, node: cst.BaseExpression) -> ir.Expr:
        method = getattr(self, "expr_" + type(node).__name__, None)
        if method is None:
            what = {
                "Set": "set displays",
                "SetComp": "set comprehensions",
                "Await": "'await'",
                "Yield": "'yield'",
                "NamedExpr": "assignment expressions (:=)",
                "TemplatedString": "template strings",
            }.get(type(node).__name__, type(node).__name__)
            self.fail("AOT103", f"{what} are not supported in model files", node)
        return method(node)

    def expr_Name(self, node: cst.Name) -> ir.Expr:
        sp = self.span(node)
        if node.value in ("True", "False", "None"):
            return ir.Constant({"True": True, "False": False, "None": None}[node.value], sp)
        return ir.Name(_name(node), sp)

    def expr_Integer(self, node: cst.Integer) -> ir.Expr:
        return ir.Constant(node.evaluated_value, self.span(node))

    expr_Float = expr_Integer
    expr_Imaginary = expr_Integer

    def expr_SimpleString(self, node: cst.SimpleString) -> ir.Expr:
        return ir.Constant(ast.literal_eval(node.value), self.span(node))

    def expr_Ellipsis(self, node: cst.Ellipsis) -> ir.Expr:
        return ir.Constant(Ellipsis, self.span(node))

    def expr_ConcatenatedString(self, node: cst.ConcatenatedString) -> ir.Expr:
        parts: list = []
        for piece in (node.left, node.right):
            converted = self.expr(piece)
            if isinstance(converted, ir.Constant):
                if isinstance(converted.value, bytes):
                    self.fail("AOT103", "bytes literals are not supported", node)
                parts.append(converted.value)
            elif isinstance(converted, ir.FString):
                parts.extend(converted.parts)
            else:  # libcst's string pieces are strings and f-strings only
                self.fail("AOT103", "unsupported string", piece)
        if all(isinstance(p, str) for p in parts):
            return ir.Constant("".join(parts), self.span(node))
        return ir.FString(tuple(parts), self.span(node))

    def expr_FormattedString(self, node: cst.FormattedString) -> ir.Expr:
        parts: list = []
        for part in node.parts:
            if isinstance(part, cst.FormattedStringText):
                parts.append(_unescape(part.value))
                continue
            if not isinstance(part, cst.FormattedStringExpression):
                self.fail("AOT103", "unsupported f-string part", part)
            spec = None
            if part.format_spec:
                texts = [s for s in part.format_spec if isinstance(s, cst.FormattedStringText)]
                if len(texts) != len(part.format_spec):
                    self.fail("AOT103", "nested f-string format specs are not supported", part)
                spec = "".join(s.value for s in texts)
            if part.equal is not None:
                self.fail("AOT103", "f-string '=' specifiers are not supported", part)
            parts.append(
                ir.FormattedValue(self.expr(part.expression), spec, part.conversion, self.span(part))
            )
        return ir.FString(tuple(parts), self.span(node))

    def expr_Attribute(self, node: cst.Attribute) -> ir.Expr:
        value = self.expr(node.value)  # first, so `().__class__.__bases__` names __class__
        attr = _name(node.attr)
        if len(attr) > 4 and attr.startswith("__") and attr.endswith("__"):
            self.fail("AOT105", f"attribute '{attr}' is not available in model files: model "
                      "files are data, never executed", node.attr)
        return ir.Attribute(value, attr, self.span(node))

    def expr_Call(self, node: cst.Call) -> ir.Expr:
        args: list[ir.Expr] = []
        keywords: list[ir.Keyword] = []
        for arg in node.args:
            value = self.expr(arg.value)
            if arg.keyword is not None:
                keywords.append(ir.Keyword(_name(arg.keyword), value, self.span(arg)))
            elif arg.star == "**":
                keywords.append(ir.Keyword(None, value, self.span(arg)))
            elif arg.star == "*":
                args.append(ir.Starred(value, self.span(arg)))
            else:
                args.append(value)
        return ir.Call(self.expr(node.func), tuple(args), tuple(keywords), self.span(node))

    def expr_BinaryOperation(self, node: cst.BinaryOperation) -> ir.Expr:
        op = _BINOPS[type(node.operator).__name__]
        return ir.BinOp(self.expr(node.left), op, self.expr(node.right), self.span(node))

    def expr_UnaryOperation(self, node: cst.UnaryOperation) -> ir.Expr:
        op = _UNARYOPS[type(node.operator).__name__]
        return ir.UnaryOp(op, self.expr(node.expression), self.span(node))

    def expr_BooleanOperation(self, node: cst.BooleanOperation) -> ir.Expr:
        op = "and" if isinstance(node.operator, cst.And) else "or"
        values: list[ir.Expr] = []
        for side in (node.left, node.right):
            converted = self.expr(side)
            same = isinstance(side, cst.BooleanOperation) and not side.lpar
            if isinstance(converted, ir.BoolOp) and converted.op == op and same:
                values.extend(converted.values)
            else:
                values.append(converted)
        return ir.BoolOp(op, tuple(values), self.span(node))

    def expr_Comparison(self, node: cst.Comparison) -> ir.Expr:
        ops = tuple(_CMPOPS[type(c.operator).__name__] for c in node.comparisons)
        comps = tuple(self.expr(c.comparator) for c in node.comparisons)
        return ir.Compare(self.expr(node.left), ops, comps, self.span(node))

    def expr_IfExp(self, node: cst.IfExp) -> ir.Expr:
        return ir.IfExp(
            self.expr(node.test), self.expr(node.body), self.expr(node.orelse), self.span(node)
        )

    def _elements(self, elements: Sequence[cst.BaseElement]) -> tuple[ir.Expr, ...]:
        out: list[ir.Expr] = []
        for el in elements:
            if isinstance(el, cst.StarredElement):
                out.append(ir.Starred(self.expr(el.value), self.span(el)))
            else:
                out.append(self.expr(el.value))
        return tuple(out)

    def expr_Tuple(self, node: cst.Tuple) -> ir.Expr:
        return ir.TupleExpr(self._elements(node.elements), self.span(node))

    def expr_List(self, node: cst.List) -> ir.Expr:
        return ir.ListExpr(self._elements(node.elements), self.span(node))

    def expr_Dict(self, node: cst.Dict) -> ir.Expr:
        keys: list = []
        values: list = []
        for el in node.elements:
            if isinstance(el, cst.StarredDictElement):
                keys.append(None)
                values.append(self.expr(el.value))
            elif isinstance(el, cst.DictElement):
                keys.append(self.expr(el.key))
                values.append(self.expr(el.value))
        return ir.DictExpr(tuple(keys), tuple(values), self.span(node))

    def expr_Subscript(self, node: cst.Subscript) -> ir.Expr:
        items: list[ir.Expr] = []
        for el in node.slice:
            s = el.slice
            if isinstance(s, cst.Index):
                if s.star is not None:
                    self.fail("AOT103", "starred subscripts are not supported", el)
                items.append(self.expr(s.value))
            elif not isinstance(s, cst.Slice):
                self.fail("AOT103", "unsupported subscript", el)
            else:
                items.append(
                    ir.Slice(
                        self.expr(s.lower) if s.lower is not None else None,
                        self.expr(s.upper) if s.upper is not None else None,
                        self.expr(s.step) if s.step is not None else None,
                        self.span(el),
                    )
                )
        if len(items) == 1 and not _has_trailing_comma(node):
            index = items[0]
        else:
            index = ir.TupleExpr(tuple(items), self.span(node))
        return ir.Subscript(self.expr(node.value), index, self.span(node))

    def _generators(self, node) -> tuple[ir.Comprehension, ...]:
        out: list[ir.Comprehension] = []
        comp = node.for_in
        while comp is not None:
            if comp.asynchronous is not None:
                self.fail("AOT103", "async comprehensions are not supported", comp)
            ifs = tuple(self.expr(i.test) for i in comp.ifs)
            out.append(ir.Comprehension(self.target(comp.target), self.expr(comp.iter), ifs,
                                        self.span(comp)))
            comp = comp.inner_for_in
        return tuple(out)

    def expr_ListComp(self, node: cst.ListComp) -> ir.Expr:
        return ir.ListComp("list", self.expr(node.elt), self._generators(node), self.span(node))

    def expr_GeneratorExp(self, node: cst.GeneratorExp) -> ir.Expr:
        return ir.ListComp("tuple", self.expr(node.elt), self._generators(node), self.span(node))

    def expr_DictComp(self, node: cst.DictComp) -> ir.Expr:
        return ir.DictComp(
            self.expr(node.key), self.expr(node.value), self._generators(node), self.span(node)
        )

    def expr_Lambda(self, node: cst.Lambda) -> ir.Expr:
        return ir.Lambda(self.parameters(node.params, node), self.expr(node.body), self.span(node))

    def expr_StarredElement(self, node: cst.StarredElement) -> ir.Expr:
        return ir.Starred(self.expr(node.value), self.span(node))


def _name(node: cst.Name) -> str:
    """An identifier as CPython reads it: NFKC-normalized (`ｊｎｐ` is `jnp`)."""
    return quoting.normalize(node.value)


def _dotted(text: str) -> str:
    """A dotted module name as CPython reads it (each part normalized, spaces dropped)."""
    return ".".join(quoting.normalize(part.strip()) for part in text.split("."))


def _has_trailing_comma(node: cst.Subscript) -> bool:
    last = node.slice[-1]
    return isinstance(last.comma, cst.Comma)


def _is_docstring(stmt: cst.CSTNode) -> bool:
    return (
        isinstance(stmt, cst.SimpleStatementLine)
        and len(stmt.body) == 1
        and isinstance(stmt.body[0], cst.Expr)
        and isinstance(stmt.body[0].value, (cst.SimpleString, cst.ConcatenatedString))
    )


def _unescape(text: str) -> str:
    """Literal text of an f-string part: resolve escapes and doubled braces."""
    text = text.replace("{{", "{").replace("}}", "}")
    if "\\" not in text:
        return text
    return ast.literal_eval('"""' + text.replace('"', '\\"') + '"""')


def _binds(node: cst.CSTNode) -> tuple[str, ...]:
    """Module-level names a statement binds in Python (for one that stays unconverted)."""
    out: list[str] = []

    def target(t: cst.BaseExpression) -> None:
        if isinstance(t, cst.Name):
            out.append(t.value)
        elif isinstance(t, (cst.Tuple, cst.List)):
            for el in t.elements:
                target(el.value)
        elif isinstance(t, cst.StarredElement):
            target(t.value)

    def visit(n: cst.CSTNode) -> None:
        if isinstance(n, (cst.FunctionDef, cst.ClassDef)):
            out.append(n.name.value)
            return  # their bodies bind local names
        if isinstance(n, cst.Assign):
            for t in n.targets:
                target(t.target)
        elif isinstance(n, (cst.AugAssign, cst.AnnAssign)):
            target(n.target)
        elif isinstance(n, (cst.For,)):
            target(n.target)
        elif isinstance(n, cst.Import):
            for a in n.names:
                if a.asname:
                    target(a.asname.name)
                else:
                    out.append(cst.Module([]).code_for_node(a.name).split(".")[0])
        elif isinstance(n, cst.ImportFrom) and not isinstance(n.names, cst.ImportStar):
            for a in n.names:
                if a.asname:
                    target(a.asname.name)
                else:
                    out.append(cst.Module([]).code_for_node(a.name))
        elif isinstance(n, cst.WithItem) and n.asname is not None:
            target(n.asname.name)
        for child in n.children:
            if isinstance(child, (cst.BaseStatement, cst.BaseSmallStatement, cst.BaseSuite,
                                  cst.WithItem, cst.Else, cst.ExceptHandler, cst.Finally,
                                  cst.SimpleStatementLine, cst.IndentedBlock)) or isinstance(
                    n, (cst.SimpleStatementLine, cst.IndentedBlock, cst.With)):
                visit(child)

    visit(node)
    return tuple(dict.fromkeys(quoting.normalize(name) for name in out))


def _what(node: cst.CSTNode) -> str:
    """How a warning names a statement: "function main", "'with' block", ..."""
    if isinstance(node, cst.FunctionDef):
        return f"function {node.name.value}"
    if isinstance(node, cst.ClassDef):
        return f"class {node.name.value}"
    if isinstance(node, (cst.Import, cst.ImportFrom)):
        return "import"
    names = {cst.If: "'if' block", cst.For: "'for' loop", cst.While: "'while' loop",
             cst.With: "'with' block", cst.Try: "'try' block"}
    for cls, what in names.items():
        if isinstance(node, cls):
            return what
    return "statement"


def _is_field(stmt: cst.CSTNode) -> bool:
    """`name: type = value` or `name = value` in a class body (a dataclass field)."""
    if not isinstance(stmt, cst.SimpleStatementLine):
        return False
    for small in stmt.body:
        if isinstance(small, cst.AnnAssign) and isinstance(small.target, cst.Name):
            continue
        if isinstance(small, cst.Assign) and len(small.targets) == 1 and isinstance(
                small.targets[0].target, cst.Name):
            continue
        return False
    return True
