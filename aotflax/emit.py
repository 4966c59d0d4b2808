"""Emit: a resolved `FileProgram` -> the text of a generated JAX module.

Emission has three steps:

1. Each function of the program (one per module specialization) is rendered on
   its own (`render_body`): naming happens here, with liveness (a value takes
   the DSL variable it was assigned to, or its op's stem: `dense`, `conv`,
   reusing a name whose previous value is dead and adding a suffix otherwise),
   and each line keeps its `file:line  shape` comment.  Calls of other emitted
   functions are left as placeholders.
2. `sharing.plan` groups the rendered functions: instances whose code is the
   same (sizes are read from the arguments, see `sizes`) become one function,
   instances whose code differs only in numbers become one function with
   keyword arguments, and every group gets a name that says what it is
   (`res_net_block_train`), never a counter that reads like Linen's `Block_3`.
3. The module is laid out from templates (`templates/`): the shared functions,
   their variable trees (`variables`), and one `_runtime.Target` per target.

Templates receive strings only.  The build compiles the emitted text once
(`generate.compile_module`, whose code becomes the module's `.pyc`): emitting
invalid Python is an internal error.
"""

from __future__ import annotations

import builtins
import dataclasses
import keyword
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2

from .diagnostics import InternalError
from .program import (
    CallKwargs,
    Code,
    FileProgram,
    Function,
    FunctionRef,
    Op,
    Tensor,
    Var,
    call_code,
)
from .quoting import QuotingError, docstring, identifier, literal
from .sizes import SizeRef, plain

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"
if not TEMPLATES.is_dir():  # installed wheel: templates ship inside the package
    TEMPLATES = Path(__file__).resolve().parent / "templates"

_ENV = jinja2.Environment(
    loader=jinja2.FileSystemLoader(str(TEMPLATES)),
    undefined=jinja2.StrictUndefined,
    keep_trailing_newline=True,
    trim_blocks=True,
    lstrip_blocks=True,
    autoescape=False,
    # templates do not change during a build: no file stat on every lookup
    auto_reload=False,
)


#: Names generated code may never bind.
RESERVED = frozenset(keyword.kwlist) | frozenset(dir(builtins)) | {
    "jax", "jnp", "np", "_runtime", "params", "state", "rng", "self"}


class _Template:
    """A template under `templates/`; one made of `{{ name }}` substitutions only (most op
    templates) renders without jinja's machinery, which is most of emit's time."""

    _SIMPLE = re.compile(r"\{\{ (\w+) \}\}")

    def __init__(self, name: str):
        self.jinja = _ENV.get_template(name)
        source = (TEMPLATES / name).read_text()
        rest = self._SIMPLE.sub("", source)
        self.parts: list[str] | None = None
        if "{" not in rest and "}" not in rest:
            self.parts = self._SIMPLE.split(source)

    def render(self, **ctx: Any) -> str:
        if self.parts is None:
            return self.jinja.render(**ctx)
        out = []
        for i, part in enumerate(self.parts):
            out.append(part if i % 2 == 0 else str(ctx[part]))
        return "".join(out)


_TEMPLATES: dict[str, _Template] = {}


def template(name: str) -> _Template:
    found = _TEMPLATES.get(name)
    if found is None:
        found = _TEMPLATES[name] = _Template(name)
    return found


#: Longest variable name taken from a DSL name; longer ones are cut.
MAX_STEM = 40


# ------------------------------------------------------------------ naming


class Namer:
    """Assigns variable names to the values of one function (see module docstring)."""

    def __init__(self, fn: Function, reserved: set[str], body: tuple[Op, ...] | None = None):
        self.fn = fn
        self.body = fn.body if body is None else body
        self.reserved = reserved
        #: id(var) -> name; also ("fn", ...) / ("kw", ...) keys for function references.
        self.names: dict[Any, str] = {}
        self.holder: dict[str, int] = {}  # name -> index of last use of its current value
        self.last_use: dict[int, int] = {}
        inputs = [op.inputs() for op in self.body]
        #: Per op, the variables it reads.
        self.inputs = inputs
        self.live = live_ops(fn, self.body, inputs)
        for i, read in enumerate(inputs):
            if self.live[i]:
                for v in read:
                    self.last_use[id(v)] = i
        end = len(self.body)
        for v in fn.result.vars():
            self.last_use[id(v)] = end
        for _, code in fn.state_result:
            for v in code.vars():
                self.last_use[id(v)] = end

    def bind_input(self, name: str, var: Var) -> None:
        self.names[id(var)] = name
        self.holder[name] = self.last_use.get(id(var), -1)

    def name_outputs(self, i: int, op: Op) -> None:
        taken: set[str] = set()  # one op's outputs never share a name
        for var in op.outputs:
            if id(var) not in self.last_use:
                self.names[id(var)] = "_"  # never read
                continue
            stem = self.fn.hints.get(id(var)) or op.stem
            name = self.free(name_stem(stem), i, avoid=taken)
            taken.add(name)
            self.names[id(var)] = name
            self.holder[name] = self.last_use.get(id(var), i)

    def temps(self, i: int, op: Op) -> dict[str, str]:
        out = {}
        for t in op.temps:
            name = self.free(t, i, strict=True)
            out[t] = name
            self.holder[name] = i
        return out

    def free(self, stem: str, i: int, strict: bool = False,
             avoid: set[str] | frozenset[str] = frozenset()) -> str:
        n = 0
        while True:
            name = stem if n == 0 else f"{stem}_{n}"
            held = self.holder.get(name)
            dead = held is None or held < i or (not strict and held <= i)
            if name not in self.reserved and name not in avoid and dead:
                return name
            n += 1


def live_ops(fn: Function, body: tuple[Op, ...] | None = None,
             inputs: list[list[Var]] | None = None) -> list[bool]:
    """Which ops of `fn` compute something it uses (a backward liveness pass).

    Ops are pure, so one whose outputs are all unused (a constant a rule made and then
    wrote inline, a layer whose result the model drops) is left out of the generated code,
    except where it initializes parameters (`init_only`).
    `inputs`: each op's `inputs()`, where the caller has them.
    """
    body = fn.body if body is None else body
    needed = {id(v) for v in fn.result.vars()}
    for _, code in fn.state_result:
        needed.update(id(v) for v in code.vars())
    live = [False] * len(body)
    for i in range(len(body) - 1, -1, -1):
        op = body[i]
        # an op without outputs stores something; in an init variant, the data-dependent
        # initialization and the calls of the callees' init variants write parameters
        if not op.outputs or op.init_only or any(id(v) in needed for v in op.outputs):
            live[i] = True
            needed.update(id(v) for v in (op.inputs() if inputs is None else inputs[i]))
    return live


def name_stem(stem: str, lower: bool = True) -> str:
    """A variable-name stem from a DSL name or op: ASCII, short (lower-case for stems)."""
    stem = (stem.lower() if lower else stem)[:MAX_STEM]
    if _PLAIN_STEM.fullmatch(stem):  # most are: nothing to replace
        out = stem
    else:
        out = "".join(c if c.isascii() and (c.isalnum() or c == "_") else "_"
                      for c in stem) or "v"
    return out if not out[0].isdigit() else "v" + out


_PLAIN_STEM = re.compile(r"[A-Za-z0-9_]+")


def free_name(stem: str, taken: set[str]) -> str:
    """`stem`, or `stem_1`, `stem_2`, ...: the first not in `taken` (which it joins)."""
    base = name_stem(stem, lower=False)
    name, n = base, 0
    while name in taken:
        n += 1
        name = f"{base}_{n}"
    taken.add(name)
    return name


def checked(name: str, what: str) -> str:
    """A name resolve produced for generated code; resolve checked it, so a bad one is a bug."""
    try:
        return identifier(name, what)
    except QuotingError as e:
        raise InternalError(f"emit: {e}") from None


# ------------------------------------------------------------------ rendering


@dataclass
class Line:
    """One line of a rendered function: code, and what its comment says."""

    code: str
    #: `models/net.py:12`: the DSL line (empty: no location, e.g. a `def` line).
    where: str = ""
    #: Which arrays the comment shows (the values the line assigns), read from the ops of
    #: the function it is a line of (`Body.shows`; functions of one structure share their
    #: lines): ("o", op path) for an op's outputs, ("t", op path, temp, k) for a scratch
    #: variable's k-th type; op path: indices into the body, then into nested bodies.
    source: tuple | None = None


@dataclass
class Body:
    """A function rendered on its own, before it is shared (see `sharing`)."""

    function: Function
    #: "apply", or "init" (the init variant of a function initializing from data).
    kind: str
    #: Positional arguments (params, state collections, inputs, shared subtrees, static).
    args: list[str]
    #: Whether it takes `rng` (keyword-only).
    takes_rng: bool
    lines: list[Line]
    result: str
    #: Functions it calls: the k-th is written `placeholder(k)` in the code (`FN_REF`,
    #: `KW_REF`), so functions of one structure have the same code: (function, kind).
    calls: list[tuple[Function, str]] = field(default_factory=list)
    #: The ops it was rendered from (its lines' `source`s index them).
    ops: tuple[Op, ...] = ()
    #: `code()`, once computed (functions of one structure share it).
    text: str | None = None

    def code(self) -> str:
        """The code alone (no comments, no docstring): what sharing compares.  Its lines:
        the decorators, the arguments, one per line of `lines`, then `return result`."""
        if self.text is None:
            head = [*(_decorator(d) for d in self.function.decorators),
                    "ARGS " + ", ".join(self.args) + (" | rng" if self.takes_rng else "")]
            self.text = "\n".join([*head, *(line.code for line in self.lines),
                                   f"return {self.result}"])
        return self.text

    def shows(self, line: Line) -> tuple[Tensor, ...]:
        """The arrays `line`'s comment shows in this function."""
        return _shown(self.ops, line.source) if line.source else ()


def _decorator(text: str) -> str:
    """A decorator resolve wrote (`jax.custom_jvp`, `f.defjvp`, `_runtime.backward_of(f,
    f_fwd)`): dotted names, called with names at most, each checked an identifier."""
    head, _, rest = text.partition("(")
    dotted = ".".join(checked(part, "decorator name") for part in head.split("."))
    if not rest:
        return dotted
    names = [checked(a.strip(), "decorator argument") for a in rest.removesuffix(")").split(",")]
    return f"{dotted}({', '.join(names)})"


def placeholder(index: int) -> str:
    """A letters-only identifier for function `index` (numbers are what sharing compares)."""
    letters = ""
    while True:
        letters = chr(ord("a") + index % 26) + letters
        index //= 26
        if not index:
            return letters


def slot(letters: str) -> int:
    """The index `placeholder` wrote as `letters`."""
    n = 0
    for c in letters:
        n = n * 26 + (ord(c) - ord("a"))
    return n


#: In rendered code, `\x00name\x00` is a reference to an emitted function (the
#: `placeholder` of its index in `Body.calls`) and `\x01L|N name\x01` the place of its
#: keyword arguments (L: after other arguments).
FN_REF = re.compile(r"\x00([a-z]+)\x00")
KW_REF = re.compile(r"\x01([LN])([a-z]+)\x01")


@dataclass
class _Rendered:
    """A function rendered once for every function of its structure (`Renderer.render`)."""

    body: Body
    #: For each of its calls (`Body.calls`), where `structure` lists that callee.
    order: list[int]


def _calls_order(calls: list[tuple[Function, str]],
                 callees: list[tuple[Function, str]]) -> list[int] | None:
    """Where each of `calls` is among `callees` (None: they are not the same functions)."""
    where = {(id(f), k): i for i, (f, k) in enumerate(callees)}
    order = [where.get((id(f), k), -1) for f, k in calls]
    return None if -1 in order or len(order) != len(callees) else order


class Renderer:
    """Renders the functions of one program, handing out placeholders for calls.

    Resolve makes a function per instance; most have the same structure (ops,
    templates, code text, how values flow), since sizes are read from arguments.
    A function is rendered once per structure (`structure`): another of the same
    structure gets its text with its own callees' placeholders, and its own arrays
    in the comments.
    """

    def __init__(self, program: FileProgram, reserved: set[str]):
        self.program = program
        self.reserved = reserved
        #: (id(function), kind) -> index of the placeholder.
        self.index: dict[tuple[int, str], int] = {}
        self.units: list[tuple[Function, str]] = []
        #: structure key -> the function rendered for it.
        self.rendered: dict[tuple, _Rendered] = {}
        #: (kind, where its method is, its number of ops) -> the first function rendered
        #: of them, with its ops and body, until a second one keys it (then None).
        self.first: dict[tuple, tuple[Function, tuple[Op, ...], Body] | None] = {}

    def ref(self, fn: Function, kind: str) -> int:
        key = (id(fn), kind)
        found = self.index.get(key)
        if found is None:
            found = self.index[key] = len(self.units)
            self.units.append((fn, kind))
        return found

    def refs(self, body: Body, ops: tuple[Op, ...], names: dict[Any, str]) -> None:
        """Placeholders for every function the ops call (nested bodies included)."""
        for op in ops:
            for _, code in op.args:
                for part in code.parts:
                    fn = getattr(part, "function", None)
                    if fn is None or isinstance(part, (str, Var)):
                        continue
                    if fn in op.nested:
                        continue
                    self.call(body, fn, part.kind, names)  # type: ignore[attr-defined]
            for nested in op.nested:
                self.refs(body, nested.body, names)

    def call(self, body: Body, fn: Function, kind: str, names: dict[Any, str]) -> None:
        """A function `body` calls (`refs`): its placeholder recorded in `names`."""
        self.ref(fn, kind)
        k = call_slot(body.calls, fn, kind)
        names[("fn", id(fn), kind)] = f"\x00{placeholder(k)}\x00"
        names[("kw", id(fn), kind)] = f"\x01{{}}{placeholder(k)}\x01"

    def render(self, fn: Function, kind: str = "apply") -> Body:
        checked(fn.name, "function name")  # resolve's name: used for nested and jvp rules
        body = fn.body
        if kind == "init":
            body = _init_then_apply(fn) or tuple(
                op if op.init_args is None else _init_call(op, op.init_args) for op in fn.body)
        elif fn.init_name is not None:
            body = tuple(op for op in fn.body if not op.init_only)
        out = Body(fn, kind, [], fn.takes_rng or kind == "init", [], "", ops=body)
        names: dict[Any, str] = {}
        # functions of one structure come from one method: the first of a method is
        # rendered without a key, which is found when a second one comes (a model of one
        # big function walks it once)
        method = (kind, fn.span.file.name, fn.span.line, len(body))
        if method not in self.first:
            self.first[method] = (fn, body, out)
            self.refs(out, body, names)
            out.args = _render_into(out, fn, body, self.program.relpath, self.reserved,
                                    names, indent="")
            return out
        first = self.first[method]
        if first is not None:
            self.first[method] = None  # keyed: the later ones are keyed as they come
            self.keep(first[0], kind, first[1], first[2])
        shape = structure(fn, kind, body)
        if shape is None:  # not keyed (a rare fragment): rendered on its own
            self.refs(out, body, names)
        else:
            key, callees = shape
            done = self.rendered.get(key)
            if done is not None:
                for f, k in callees:
                    self.ref(f, k)
                return _like(done, out, callees)
            for f, k in callees:
                self.call(out, f, k, names)
        out.args = _render_into(out, fn, body, self.program.relpath, self.reserved, names,
                                indent="")
        if shape is not None:
            self.rendered[shape[0]] = _Rendered(out, list(range(len(out.calls))))
        return out

    def keep(self, fn: Function, kind: str, body: tuple[Op, ...], out: Body) -> None:
        """Key `out`, `fn` rendered (as `kind`, with `body` as its ops) without a key, for
        the functions of its structure to come."""
        shape = structure(fn, kind, body)
        if shape is not None and shape[0] not in self.rendered:
            order = _calls_order(out.calls, shape[1])
            if order is not None:
                self.rendered[shape[0]] = _Rendered(out, order)


def call_slot(calls: list[tuple[Function, str]], fn: Function, kind: str) -> int:
    """The index of `(fn, kind)` in `calls`, which it joins if it is new."""
    for k, (f, c) in enumerate(calls):
        if f is fn and c == kind:
            return k
    calls.append((fn, kind))
    return len(calls) - 1


def _like(done: _Rendered, out: Body, callees: list[tuple[Function, str]]) -> Body:
    """`out` rendered as `done`, a function of the same structure whose callees `structure`
    listed as `callees`: the same code (its lines shared), calling the same places of its
    own callees, with its own arrays in the comments (`Body.shows`)."""
    first = done.body
    out.calls = [callees[i] for i in done.order]
    out.lines = first.lines
    out.args = first.args
    out.result = first.result
    out.text = first.code()
    return out


def _shown(body: tuple[Op, ...], source: tuple) -> tuple[Tensor, ...]:
    """The arrays a line's comment shows, from its `Line.source`."""
    path = source[1]
    ops = body
    for i, j in path[:-1]:
        ops = ops[i].nested[j].body
    op = ops[path[-1]]
    if source[0] == "o":
        return tuple(v for v in op.outputs if isinstance(v, Tensor))
    return (op.temp_types[source[2]][source[3]],)


# ------------------------------------------------------------------ structure


class _Unkeyed(Exception):
    """A function `structure` does not key (it is rendered on its own)."""


def structure(fn: Function, kind: str, body: tuple[Op, ...]
              ) -> tuple[tuple, list[tuple[Function, str]]] | None:
    """What `_render_into` reads of `fn` (as `kind`, with `body` as its ops), with its
    callees (and values) replaced by their order of appearance: two functions with the
    same key render to the same text but for their callees' placeholders.

    **Returns:** the key and the callees in that order (the order `Renderer.refs` finds
    them), or None for a function it does not key (a function reference outside an op's
    arguments, a nested function called from elsewhere, a fragment it does not know).
    """
    walk = _Structure()
    try:
        walk.key += (kind, fn.takes_rng, fn.init_name is not None, fn.decorators)
        walk.function(fn, body)
    except _Unkeyed:
        return None
    if walk.nested and any(id(f) in walk.nested for f, _ in walk.callees):
        return None  # named by a local `def` after it is defined, a placeholder before
    return tuple(walk.key), walk.callees


#: Marks in a structure key, before: a function, an op, an op's outputs, a function's
#: result, one of its state results; after a function; first in the one item an
#: argument's code of several parts is (each a tuple of one string: no item of code
#: equals one).
_FN, _OP, _OUTS, _RESULT, _STATE, _END, _CODE = (("fn",), ("op",), ("outs",), ("result",),
                                                 ("state",), ("end",), ("code",))


class _Structure:
    """One walk of `structure`: a flat key (text, marks, and values and callees numbered
    in the order it meets them)."""

    def __init__(self) -> None:
        self.key: list[Any] = []
        self.values: dict[int, int] = {}
        self.slots: dict[tuple[int, str], int] = {}
        self.callees: list[tuple[Function, str]] = []
        #: id() of the nested functions met.
        self.nested: set[int] = set()

    def function(self, fn: Function, body: tuple[Op, ...]) -> None:
        key, values, hints = self.key, self.values, fn.hints
        key += (_FN, fn.takes_params, fn.state_collections, fn.shared_args, fn.static_args)
        for name, v in fn.inputs:
            key += (name, values.setdefault(id(v), len(values)))
        for op in body:
            nested = op.nested
            key += (_OP, op.template)
            for name, code in op.args:  # a name, then its code as one item
                parts = code.parts
                if len(parts) == 1 and type(parts[0]) is str:  # most arguments: text alone
                    key += (name, parts[0])
                    continue
                key.append(name)
                mark = len(key)
                self.code(code, nested, True)
                key[mark:] = [(_CODE, *key[mark:])]
            key.append(_OUTS)
            for v in op.outputs:
                key += (values.setdefault(id(v), len(values)), hints.get(id(v)))
            key.append((op.temps, op.stem, tuple(map(len, op.temp_types)) if op.temp_types else (),
                        op.span.file.name, op.span.line))
            for inner in nested:
                self.nested.add(id(inner))
                key.append((inner.doc, inner.span.file.name, inner.span.line,
                            _nested_stem(inner)))
                self.function(inner, inner.body)
        key.append(_RESULT)
        self.code(fn.result, (), False)
        for collection, code in fn.state_result:
            key += (_STATE, collection)
            self.code(code, (), False)
        key.append(_END)

    def code(self, code: Code, nested: tuple[Function, ...], calls: bool) -> None:
        """`code`'s parts; `calls`: it is an op's argument (whose calls `refs` names)."""
        key, values = self.key, self.values
        for part in code.parts:
            if isinstance(part, str):
                key.append(part)
            elif isinstance(part, Var):
                key.append(values.setdefault(id(part), len(values)))
            elif type(part) is FunctionRef or type(part) is CallKwargs:
                if not calls:
                    raise _Unkeyed
                fn = part.function
                lead = getattr(part, "lead", None)
                if fn in nested:  # a scan's step: the local def (its keywords: none)
                    if part.kind != "apply":
                        raise _Unkeyed
                    key.append(("step", nested.index(fn), type(part) is CallKwargs, lead))
                    continue
                k = (id(fn), part.kind)
                slot = self.slots.get(k)
                if slot is None:
                    slot = self.slots[k] = len(self.callees)
                    self.callees.append((fn, part.kind))
                key.append(("call", slot, type(part) is CallKwargs, lead))
            elif type(part) is SizeRef:
                # named where every value its code reads is (the same ones in a function of
                # the same structure), else written as its number
                try:
                    number = literal(plain(part.value))
                except QuotingError:
                    raise _Unkeyed from None
                key.append(("size",))
                self.code(part.value.code, (), False)
                key.append(("size", number))
            else:
                raise _Unkeyed


def _init_then_apply(fn: Function) -> tuple[Op, ...] | None:
    """The init variant of a function that calls no init variant, as its data-dependent
    initializers (and what they read) followed by a call of the function itself, which
    reads the parameters they wrote: the forward pass is written once, in the function.
    None where its body is needed as it is (state, nested functions, stores, results that
    are not one array)."""
    body = fn.body
    if fn.state_collections or fn.shared_args or fn.static_args or fn.keeps_name:
        return None
    if any(op.init_args is not None or op.nested for op in body):
        return None
    if not all(isinstance(v, Tensor) for _, v in fn.inputs):
        return None
    result = fn.result.vars()
    if len(result) != 1 or fn.result.parts != (result[0],) or \
            not isinstance(result[0], Tensor):
        return None
    out = result[0]
    needed: set[int] = set()
    keep = [False] * len(body)
    for i in range(len(body) - 1, -1, -1):
        op = body[i]
        if op.init_only or any(id(v) in needed for v in op.outputs):
            keep[i] = True
            needed.update(id(v) for v in op.inputs())
        elif not op.outputs:
            return None  # a store of the forward pass: it stays where it is
    kept = [op for op, k in zip(body, keep) if k]
    if not any(op.init_only for op in kept) or any(v is out for op in kept for v in op.outputs):
        return None
    producer = next(op for op in body if any(v is out for v in op.outputs))
    args = [Code(("params",))] if fn.takes_params else []
    args += [Code((v,)) for _, v in fn.inputs]
    if fn.takes_rng:
        args.append(Code(("rng=rng",)))
    call = Op("ops/call.j2", (("call", call_code(fn, args, "apply")),), (out,), (),
              producer.span, producer.stem)
    return (*kept, call)


def _init_call(op: Op, args: tuple) -> Op:
    """A call of a callee's init variant: it writes the callee's parameters, so it stays
    even where the model drops its result (`init_only`, see `live_ops`)."""
    return dataclasses.replace(op, args=args, init_only=True)


def _comment_where(relpath: str, op: Op) -> str:
    """`models/net.py:12`: the DSL line (in the file it is in: models import each other)."""
    return f"{op.span.file.name or relpath}:{op.span.line}"


def _render_into(out: Body, fn: Function, body: tuple[Op, ...], relpath: str,
                 reserved: set[str], refs: dict[Any, str], indent: str,
                 outer: dict[Any, str] | None = None,
                 outer_live: set[str] | frozenset[str] = frozenset(),
                 path: tuple[tuple[int, int], ...] = ()) -> list[str]:
    """Render `fn` (with `body` as its ops) into `out`: its lines and result; returns its
    arguments.

    For a nested def, `outer` names the enclosing function's values and `outer_live`
    are the names it holds: the nested body's variables never overwrite them; `path`:
    per level, the index of the op whose nested function it is and its index among the
    op's nested functions (`Line.source`).
    """
    # state and shared-module reads are written as `batch_stats["..."]` text: no variable
    # may take those names
    collections = [checked(c, "state collection name") for c in fn.state_collections]
    shared = [checked(a, "argument name") for a in fn.shared_args]
    namer = Namer(fn, reserved | set(outer_live) | set(collections) | set(shared), body)
    namer.names.update(refs)
    if outer:
        namer.names.update(outer)
    args: list[str] = []
    if fn.takes_params:
        args.append("params")
    for coll in collections:
        namer.bind_input(coll, _Placeholder())
        args.append(coll)
    # inputs are passed by position: a DSL name that is taken (`params`, a collection,
    # a builtin, a module function, an outer value the body reads) is renamed
    mine = {id(v) for _, v in fn.inputs}
    captured = {outer[id(v)] for op in body for v in op.inputs()
                if id(v) in outer and id(v) not in mine} if outer else set()
    static = [checked(a, "argument name") for a in fn.static_args]
    taken = (set(namer.reserved) - set(outer_live)) | captured | set(args) | set(static) | \
        set(shared)
    for name, var in fn.inputs:
        local = free_name(name, taken)
        namer.bind_input(local, var)
        args.append(local)
    for name in shared:
        namer.bind_input(name, _Placeholder())
        args.append(name)
    args += static
    lines = out.lines
    collected = _collected_state(fn, body, namer, relpath, lines) if not indent else {}
    for i, op in enumerate(body):
        if not namer.live[i]:
            continue
        for j, nested in enumerate(op.nested):
            live = set(namer.names.values()) | set(namer.holder)
            local = namer.free(name_stem(_nested_stem(nested)), i, strict=True)
            namer.holder[local] = i
            namer.names[("fn", id(nested), "apply")] = local
            _render_nested(out, nested, relpath, reserved | {local}, refs, indent,
                           namer.names, live | {local}, local, path + ((i, j),))
        namer.name_outputs(i, op)
        if collected:
            for v in op.outputs:
                found = collected.get(id(v))
                if found is not None:
                    namer.names[id(v)] = found
        ctx: dict[str, Any] = {k: code.render(namer.names) for k, code in op.args}
        temps = namer.temps(i, op)
        ctx.update(temps)
        named = [namer.names[id(v)] for v in op.outputs]
        ctx["out"] = named[0] if named else "_"
        ctx["outs"] = ", ".join(named) if named else "_"
        text = template(op.template).render(**ctx).rstrip("\n").split("\n")
        where = _comment_where(relpath, op)
        at = path + (i,)
        last = len(text) - 1
        if not last:  # one line (most ops): it shows the outputs
            lines.append(Line(indent + text[0], where, ("o", at)))
            continue
        # the lines assigning a scratch variable show its type (the k-th for the k-th)
        pending = {temps[name]: [k, 0]
                   for k, (name, types) in enumerate(zip(op.temps, op.temp_types)) if types}
        for j, line in enumerate(text):
            if j == last:
                lines.append(Line(indent + line, where, ("o", at)))
                continue
            target = line.split(" = ", 1)[0] if " = " in line else ""
            temp = pending.get(target)
            if temp is None or temp[1] == len(op.temp_types[temp[0]]):
                lines.append(Line(indent + line, where))
                continue
            lines.append(Line(indent + line, where, ("t", at, temp[0], temp[1])))
            temp[1] += 1
    result = fn.result.render(namer.names)
    if fn.state_result:
        result = ", ".join([result] + [collected.get(c, None) or code.render(namer.names)
                                       for c, code in fn.state_result])
    folded = _fold_return(lines, result, indent)
    if not indent:
        out.result = "" if folded else result
    elif not folded:
        lines.append(Line(f"{indent}return {result}"))
    return args


def _collected_state(fn: Function, body: tuple[Op, ...], namer: Namer, relpath: str,
                     lines: list[Line]) -> dict[Any, str]:
    """Where a collection's new state is a flat dict of what the body's calls return
    (`{"BatchNorm_0": ..., "ResNetBlock_0": ...}`), each call assigns its entry of a dict
    made first (`new_batch_stats["ResNetBlock_0"]`) and the function returns that dict:
    the return line does not list every child.  Returns id(value) -> the entry it is
    assigned to, and collection -> the dict's name (the line making it is added)."""
    flat = [(coll, entries) for coll, code in fn.state_result
             if (entries := _flat_entries(code)) is not None and len(entries) > 1]
    if not flat:
        return {}
    made: set[int] = set()
    read: set[int] = {id(v) for v in fn.result.vars()}
    live, inputs = namer.live, namer.inputs
    for i, op in enumerate(body):
        if live[i]:
            made.update(map(id, op.outputs))
            read.update(map(id, inputs[i]))
    out: dict[Any, str] = {}
    for coll, entries in flat:
        if any(id(v) not in made or id(v) in read or id(v) in out for _, v in entries):
            continue
        local = namer.free(name_stem(f"new_{coll}"), 0, strict=True)
        namer.holder[local] = len(body) + 1  # held to the end: nothing else takes it
        where = f"{fn.span.file.name or relpath}:{fn.span.line}"
        lines.append(Line(f"{local} = {{}}", where))
        for key, v in entries:
            out[id(v)] = f"{local}[{key}]"
        out[coll] = local
    return out


def _flat_entries(code: Code) -> list[tuple[str, Var]] | None:
    """`{"a": x, "b": y}` (a dict display resolve wrote: quoted keys, one value each) as
    [(key literal, value)]; None for anything else (nested dicts, the state given)."""
    parts = code.parts
    if len(parts) < 4 or parts[0] != "{" or parts[-1] != "}":
        return None
    entries = []
    k = 1
    while k < len(parts) - 1:
        key, value = parts[k], parts[k + 1] if k + 1 < len(parts) else None
        if not isinstance(key, str) or not isinstance(value, Var) or \
                not _KEY_LITERAL.fullmatch(key):
            return None
        entries.append((key[:-2], value))
        k += 2
        if k < len(parts) - 1:
            if parts[k] != ", ":
                return None
            k += 1
    return entries


#: A dict display's key as resolve writes it: a quoted string, then `: `.
_KEY_LITERAL = re.compile(r'"[^"\\\n]*(?:\\.[^"\\\n]*)*": ')


#: An identifier of generated code, or a string literal (skipped: names never hide in one).
_NAME_OR_STRING = re.compile(r'[A-Za-z_]\w*|"[^"\\\n]*(?:\\.[^"\\\n]*)*"')


def _fold_return(lines: list[Line], result: str, indent: str) -> bool:
    """Return the last line's value where it computes only what is returned: `y = x + r`
    then `return y, stats` becomes `return x + r, stats` (the line keeps its comment).
    Returns whether it did (the last line is then the function's `return`)."""
    if not lines:
        return False
    last = lines[-1]
    code = last.code
    if last.source is None or last.source[0] != "o" or not code.startswith(indent):
        return False
    target, sep, value = code[len(indent):].partition(" = ")
    if not sep or not target.isidentifier() or "\n" in value:
        return False
    head, _, rest = result.partition(", ")
    if head != target or target in _NAME_OR_STRING.findall(rest):
        return False  # the result is not this value first, or reads it again
    if _ORPHAN_PARTS.search(value):
        return False  # a statement-like tail (a comment, a second statement): left as is
    lines[-1] = Line(f"{indent}return {value}" + (f", {rest}" if rest else ""),
                     last.where, last.source)
    return True


#: What a one-line assignment's value never contains where it is a plain expression.
_ORPHAN_PARTS = re.compile(r";|  #")


def _render_nested(out: Body, nested: Function, relpath: str, reserved: set[str],
                   refs: dict[Any, str], indent: str, outer: dict[Any, str],
                   outer_live: set[str], local: str, path: tuple[tuple[int, int], ...]
                   ) -> None:
    """A function defined inside another (a scan's step), named `local` there; `path`:
    where the op it is defined for is (see `_render_into`)."""
    inner = Body(nested, "apply", [], False, [], "")
    where = f"{nested.span.file.name or relpath}:{nested.span.line}"
    args = _render_into(inner, nested, nested.body, relpath, reserved, refs, indent + "    ",
                        outer, outer_live, path)
    out.lines.append(Line(f"{indent}def {local}({', '.join(args)}):", where))
    out.lines.append(Line(f'{indent}    """{docstring(f"{nested.doc}, from {where}.")}"""'))
    out.lines.extend(inner.lines)


def _nested_stem(fn: Function) -> str:
    return fn.origin or re.sub(r"_\d+$", "", fn.name) or "step"


class _Placeholder(Var):
    __slots__ = ()
