"""Sharing: one emitted function per distinct computation.

Resolve specializes a module method per instance (per width, batch size, input
shape, hyperparameter); most instances compute the same thing, since generated
code reads sizes from its arguments (`sizes`).  After each function is rendered
on its own (`emit.Renderer`), this module decides what the file contains:

- **Groups.**  Functions whose code is the same once numbers are masked, and
  whose calls go to the same groups, form one group (bottom-up: callees are
  grouped first, so their callers become equal too).  Targets share across the
  whole file.
- **Keyword arguments.**  Where the members of a group differ in a number, the
  number becomes a keyword-only argument, named after the hyperparameter whose
  value it is in every member (`strides`, `epsilon`, `filters * 4`), or after
  the keyword it is passed as; each call passes its instance's value.  A
  function is never emitted twice with only its numbers changed.
- **Names.**  `snake_case` of the module (`res_net_block`), with what tells
  variants apart: a flag (`_train`, `_decode`), the parameter subtree one of
  them has (`_with_conv_proj`), a hyperparameter's value; never a counter that
  reads like Linen's automatic `ResNetBlock_3`.
- **Comments.**  Each line keeps its `file:line  shape`; dimensions that differ
  between the members are written by name (`f32[batch, height, width, filters]`),
  and the docstring lists the instances and targets the function serves.

Functions that callers do not call with keywords (initializers, called by the
runtime as `init(key, shape, dtype)`; `custom_jvp` pairs) are shared only when
their code is identical.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from typing import Any

from . import target_names, variables
from .emit import (
    FN_REF,
    KW_REF,
    RESERVED,
    Body,
    Line,
    Renderer,
    checked,
    placeholder,
    slot,
    template,
)
from .program import FileProgram, Function, Tensor
from .program import describe as describe_aval
from .quoting import MAX_IDENTIFIER, comment, docstring, identifier_problem
from .values import ModuleRef, StaticError, describe_value, static_key, to_code
from .variables import all_functions, axis_names, input_candidates

#: A string literal (skipped) or a number of generated code: its first character is a
#: quote or a digit, which the scan looks for in one loop (a character set first); what
#: follows depends on it.  A string: `"(?:[^"\\\n]|\\.)*"` written so its runs of plain
#: characters are one step; a number: `(?<![\w.\x00])\d+(?:\.\d*)?(?:[eE][+-]?\d+)?j?`
#: not followed by `[\w.]`, its lookbehind placed after its first digit.
_TOKEN = re.compile(r'["\'\d](?:(?<=")[^"\\\n]*(?:\\.[^"\\\n]*)*"|(?<=\')[^\'\\\n]*'
                    r"(?:\\.[^'\\\n]*)*'|(?<![\w.\x00]\d)(?<=\d)\d*(?:\.\d*)?(?:[eE][+-]?\d+)?"
                    r"j?(?![\w.]))")
_IDENT = re.compile(r"[A-Za-z_]\w*")
#: `_IDENT` for ASCII text (its `\w` without Unicode look-ups).
_IDENT_ASCII = re.compile(r"[A-Za-z_]\w*", re.ASCII)
#: A string literal: `"(?:[^"\\\n]|\\.)*"` (or in single quotes) with its runs of plain
#: characters read in one step.
_STRING = re.compile(r'"[^"\\\n]*(?:\\.[^"\\\n]*)*"|\'[^\'\\\n]*(?:\\.[^\'\\\n]*)*\'')
#: A call's placeholder in rendered code (`emit.FN_REF`, `emit.KW_REF`).
_PLACEHOLDER = re.compile(r"\x00[a-z]+\x00|\x01[LN][a-z]+\x01")
_KEYWORD_BEFORE = re.compile(r"([A-Za-z_]\w*)=\(?$")
#: Longest function name made from a module's name and its variant's labels (suffixes
#: and counters come on top, within `quoting.MAX_IDENTIFIER`).
_MAX_NAME = MAX_IDENTIFIER - 30
#: Longest summary line of a generated docstring: with a function's indent and quotes it
#: stays within 100 columns (what does not fit goes to the paragraph below it).
SUMMARY_WIDTH = 90
#: Stands for a space that `_wrap` keeps (inside one hyperparameter's `name=value`).
_NBSP = "\x00"
#: Flags whose value tells a training variant from an evaluation one: (True, False) labels.
FLAG_LABELS = {"train": ("train", ""), "training": ("train", ""), "is_training": ("train", ""),
               "deterministic": ("", "train"), "use_running_average": ("", "train"),
               "decode": ("decode", "")}


def split_numbers(text: str) -> tuple[list[str], list[str]]:
    """`text` as the code between its numbers, and its numbers (strings are skipped)."""
    segments, numbers, last = [], [], 0
    for m in _TOKEN.finditer(text):
        start, end = m.span()
        if text[start] in "\"'":  # a string
            continue
        segments.append(text[last:start])
        numbers.append(text[start:end])
        last = end
    segments.append(text[last:])
    return segments, numbers


def _identifiers(text: str) -> list[str]:
    """`_IDENT.findall(text)`."""
    return (_IDENT_ASCII if text.isascii() else _IDENT).findall(text)


def masked(text: str) -> str:
    """`text` with every number replaced by `#` (what two shareable functions agree on)."""
    segments, _ = split_numbers(text)
    return "#".join(segments)


@functools.lru_cache(maxsize=4096)
def snake(name: str) -> str:
    """`ResNetBlock` -> `res_net_block`, `MLP` -> `mlp`, `LSTMCell` -> `lstm_cell`; a lone
    capital after a word of one or two letters stays in it: `ViT` -> `vit`, `ViTBlock` ->
    `vit_block`, `BiT` -> `bit`."""
    merged: list[str] = []
    for chunk in name.split("_"):  # the name's own underscores stay where they are
        words = re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", " ", chunk)
        out: list[str] = []
        for w in words.split(" "):
            if len(w) == 1 and w.isupper() and out and len(out[-1]) <= 2 and out[-1].isalpha():
                out[-1] += w
            else:
                out.append(w)
        merged.append("_".join(out))
    return re.sub(r"[^0-9A-Za-z]+", "_", "_".join(merged)).lower().strip("_") or "fn"


# ------------------------------------------------------------------ records


@dataclass
class Kwarg:
    """A keyword argument of a shared function: one value per member."""

    name: str
    #: Code of its value at each member's calls.
    values: list[str]


@dataclass
class Member:
    """One function of the program in its group."""

    body: Body
    group: "Group"
    #: `body.code()`, computed once (sharing reads it several times).
    code: str = ""
    #: The code with calls resolved (names and keyword arguments), numbers included.
    text: str = ""
    #: This member's keyword arguments, as its callers pass them ("strides=(2, 2)").
    call_kwargs: str = ""


@dataclass
class Group:
    """One emitted function."""

    index: int
    key: str
    members: list[Member] = field(default_factory=list)
    name: str = ""
    kwargs: list[Kwarg] = field(default_factory=list)
    #: Groups its members call.
    callees: list["Group"] = field(default_factory=list)
    #: The shared code (numbers that vary replaced by keyword arguments).
    code: str = ""
    #: Whether callers may pass keyword arguments (else: shared only when identical).
    keywords: bool = True
    #: `_candidates`, once found.
    candidates: list[tuple[str, list[Any]]] | None = None

    @property
    def first(self) -> Function:
        return self.members[0].body.function

    @property
    def kind(self) -> str:
        return self.members[0].body.kind


class Plan:
    """The shared functions of one file, and how to call each instance."""

    def __init__(self, program: FileProgram, renderer: Renderer):
        self.program = program
        self.renderer = renderer
        self.groups: list[Group] = []
        #: (id(function), kind) -> its member.
        self.members: dict[tuple[int, str], Member] = {}
        #: Instances served, for docstrings: (id(function), kind) -> [(target, path)].
        self.instances: dict[tuple[int, str], list[tuple[str, str]]] = {}
        #: `split_numbers` of the texts seen so far: many members have the same code.
        self._splits: dict[str, tuple[list[str], list[str]]] = {}
        #: The keys and code of hyperparameter values (each instance has the same ones).
        self.values = _Values()

    # -------------------------------------------------------------- queries

    def member(self, fn: Function, kind: str = "apply") -> Member:
        return self.members[(id(fn), kind)]

    def name(self, fn: Function, kind: str = "apply") -> str:
        return self.member(fn, kind).group.name

    def call(self, fn: Function, args: list[str], kind: str = "apply") -> str:
        """`name(args..., keyword arguments)` for one instance."""
        member = self.member(fn, kind)
        parts = list(args) + ([member.call_kwargs] if member.call_kwargs else [])
        return f"{member.group.name}({', '.join(parts)})"

    def module_names(self) -> set[str]:
        """Every name the module binds at the top level besides the targets' own."""
        names = set(RESERVED) | {g.name for g in self.groups} | {"TARGETS"}
        names |= {u.name for u in self.program.user_functions}
        return names | {name for t in self.program.targets
                        for name in target_names.target_globals(t.name)}

    def texts(self) -> list[str]:
        return [render_group(self, g) for g in self.groups]

    def inputs(self) -> dict[str, tuple[tuple[str, Any], ...]]:
        return {g.name: g.first.inputs for g in self.groups}

    def split(self, text: str) -> tuple[list[str], list[str]]:
        """`split_numbers(text)`, once per distinct text of this file."""
        found = self._splits.get(text)
        if found is None:
            found = self._splits[text] = split_numbers(text)
        return found

    def masked(self, text: str) -> str:
        """`masked(text)`, from `split`."""
        return "#".join(self.split(text)[0])


# ------------------------------------------------------------------ planning


def plan(program: FileProgram, renderer: Renderer) -> Plan:
    """Render every function of `program` and its variable tree, group them, name them and
    find their keyword arguments."""
    out = Plan(program, renderer)
    for fn in all_functions(program):
        for kind in ("apply", "init") if fn.init_name else ("apply",):
            renderer.ref(fn, kind)
    bodies: dict[tuple[int, str], Body] = {}
    i = 0
    while i < len(renderer.units):  # functions referenced by others are rendered too
        fn, kind = renderer.units[i]
        bodies[(id(fn), kind)] = renderer.render(fn, kind)
        i += 1
    trees = variables.bodies(program, renderer)
    bodies.update(trees)
    _group_all(out, bodies)
    for group in out.groups:
        seen: list[Group] = []
        for member in group.members:
            for callee, ckind in member.body.calls:
                g = out.members[(id(callee), ckind)].group
                if g not in seen and g is not group:
                    seen.append(g)
        group.callees = seen
    _instances(out)
    _name_groups(out)
    for group in _topological(out.groups):
        _resolve_calls(out, group)
        _find_kwargs(out, group)
    return out


def _group_all(out: Plan, bodies: dict[tuple[int, str], Body]) -> None:
    """Groups of bodies with the same code once numbers are masked (callees first)."""
    units = out.renderer.units
    keys: dict[tuple[int, str], str] = {}
    by_key: dict[str, Group] = {}
    codes = {k: body.code() for k, body in bodies.items()}

    def group_of(fn: Function, kind: str) -> Group:
        k = (id(fn), kind)
        found = out.members.get(k)
        if found is not None:
            return found.group
        key = key_of(fn, kind)
        group = by_key.get(key)
        if group is None:
            group = by_key[key] = Group(len(out.groups), key,
                                        keywords=not fn.keeps_name and not fn.static_args)
            out.groups.append(group)
        member = Member(bodies[k], group, codes[k])
        group.members.append(member)
        out.members[k] = member
        return group

    def key_of(fn: Function, kind: str) -> str:
        k = (id(fn), kind)
        if k in keys:
            return keys[k]
        text = codes[k]
        calls = bodies[k].calls

        def callee(m: re.Match) -> str:
            return "\x00" + placeholder(group_of(*calls[slot(m.group(1))]).index) + "\x00"

        keyed = KW_REF.sub("", FN_REF.sub(callee, text))
        if fn.keeps_name:
            keyed = f"unique {id(fn)}\n{keyed}"  # custom_jvp / custom_vjp: never merged
        elif fn.static_args:
            keyed = f"exact\n{keyed}"  # called by the runtime: only identical code is shared
        else:
            keyed = out.masked(keyed)
        keys[k] = f"{kind}\n{keyed}"
        return keys[k]

    for fn, kind in units:
        if (id(fn), kind) in bodies:
            group_of(fn, kind)


def _topological(groups: list[Group]) -> list[Group]:
    done: set[int] = set()
    out: list[Group] = []

    def visit(g: Group) -> None:
        if g.index in done:
            return
        done.add(g.index)
        for c in g.callees:
            visit(c)
        out.append(g)

    for g in groups:
        visit(g)
    return out


def _resolve_calls(plan: Plan, group: Group) -> None:
    """Each member's code with its calls named and their keyword arguments filled in."""
    for member in group.members:
        member.text = _resolved(member.code, [plan.members[(id(fn), kind)]
                                              for fn, kind in member.body.calls])


def _resolved(code: str, callees: list[Member]) -> str:
    """`code` calling `callees` (the k-th placeholder: the k-th) by their names, with
    their keyword arguments."""
    def name(m: re.Match) -> str:
        return callees[slot(m.group(1))].group.name

    def kwargs(m: re.Match) -> str:
        text = callees[slot(m.group(2))].call_kwargs
        if not text:
            return ""
        return ", " + text if m.group(1) == "L" else text

    return KW_REF.sub(kwargs, FN_REF.sub(name, code))


# ------------------------------------------------------------------ keyword arguments


def _find_kwargs(plan: Plan, group: Group) -> None:
    """The numbers that differ between members become keyword arguments."""
    members = group.members
    if not group.keywords or len({m.text for m in members}) == 1:
        group.code = members[0].text  # identical members (most groups): nothing to find
        return
    split = [plan.split(m.text) for m in members]
    segments, numbers0 = split[0]
    numbers = [n for _, n in split]
    differing = [k for k in range(len(numbers0)) if len({n[k] for n in numbers}) > 1]
    if not differing or not group.keywords:
        group.code = members[0].text
        return
    # a name only ever passed as a call's keyword (`padding=`) is free for a parameter
    taken = set(_identifiers(_CALL_KEYWORD.sub("", members[0].text))) | set(RESERVED)
    candidates = _candidates(group)
    # hyperparameters, then a variable tree's input sizes (marked)
    tiers = ([c for c in candidates if not c[0].startswith("\x01")],
             [(n[1:], v) for n, v in candidates if n.startswith("\x01")])
    codes = _Codes(plan.values)
    #: per-member texts of a number -> how `_match` reads them (many numbers repeat).
    matched: dict[tuple[str, ...], tuple[str, list[str], str] | None] = {}
    kwargs: list[Kwarg] = []
    #: number index -> replacement text; runs replace a whole tuple display.
    replace: dict[int, str] = {}
    #: first index -> (last index, characters cut before and after) of a display replaced whole
    runs: dict[int, tuple[int, int, int]] = {}

    def kwarg(name: str, values: list[str]) -> str:
        for kw in kwargs:
            if kw.values == values and (kw.name == name or name.startswith("\x00")):
                return kw.name
        base = name.lstrip("\x00")
        if identifier_problem(base) or len(base) > _MAX_NAME:  # a DSL name not for code
            base = "size"
        final, n = base, 1
        while final in taken or any(kw.name == final for kw in kwargs):
            final, n = f"{base}_{n}", n + 1
        kwargs.append(Kwarg(final, values))
        return final

    def match(k: int) -> tuple[str, list[str], str] | None:
        texts = [n[k] for n in numbers]
        key = tuple(texts)
        if key not in matched:
            matched[key] = _match(tiers, texts, codes)
        return matched[key]

    done: set[int] = set()
    for k in differing:
        if k in done:
            continue
        run = _tuple_run(segments, len(numbers0), k)
        if run is not None:
            j, last = run
            texts = [_tuple_text(n[j:last + 1]) for n in numbers]
            hp = _match_exact(tiers[0], texts, codes)
            if hp is not None:
                replace[j] = kwarg(hp[0], hp[1])
                runs[j] = (last, 1, 2 if segments[last + 1].startswith(",)") else 1)
                done.update(range(j, last + 1))
                continue
        display = _keyword_display(segments, len(numbers0), k)
        if display is not None and any(
                match(i) is None for i in range(display.first, display.last + 1)
                if i in differing):
            # a display passed as a keyword that no hyperparameter explains number by
            # number: the whole display is one argument, named after the keyword
            # (`padding=padding`, each call passing its `((1, 0), (1, 1))`)
            replace[display.first] = kwarg("\x00" + display.keyword,
                                           [display.text(n) for n in numbers])
            runs[display.first] = (display.last, display.cut_before, display.cut_after)
            done.update(range(display.first, display.last + 1))
            continue
        texts = [n[k] for n in numbers]
        expr = match(k)
        if expr is not None:
            name, values, fmt = expr
            replace[k] = fmt.format(kwarg(name, values))
        else:
            before = _KEYWORD_BEFORE.search(segments[k])
            replace[k] = kwarg("\x00" + (before.group(1) if before else "size"), texts)
        done.add(k)
    group.kwargs = kwargs
    group.code = _substitute(segments, numbers0, replace, runs)
    for i, member in enumerate(members):
        member.call_kwargs = ", ".join(f"{kw.name}={kw.values[i]}" for kw in kwargs)


def _candidates(group: Group) -> list[tuple[str, list[Any]]]:
    """Names a varying number may be: hyperparameters (their values per member) and, for
    a variable tree, the sizes of its module's inputs (`in_channels`)."""

    if group.candidates is not None:
        return group.candidates
    out: list[tuple[str, list[Any]]] = []
    first = group.members[0].body.function.hparams
    hparams = [dict(m.body.function.hparams) for m in group.members]
    for name, _ in first:
        values = []
        for found in hparams:
            if name not in found:
                break
            values.append(found[name])
        else:
            out.append((name, values))
    if group.kind == "variables":
        per = [dict(input_candidates(m.body.function)) for m in group.members]
        for label in per[0]:
            if all(label in p for p in per):  # marked: tried after the hyperparameters
                out.append(("\x01" + label, [p[label][0] for p in per]))
    group.candidates = out
    return out


def _code(value: Any) -> str | None:
    try:
        return to_code(value)
    except StaticError:
        return None


class _Values:
    """`_key` and `_code` of each value met, computed once per plan: the functions of one
    module's instances hold the same value objects (`conv=`, `act=`), and many groups and
    names read them.  Keyed by identity; each entry keeps its value alive, so no other
    value takes its id while the memo lives."""

    def __init__(self) -> None:
        self.keys: dict[int, tuple[Any, tuple[str, Any]]] = {}
        self.codes: dict[int, tuple[Any, str | None]] = {}
        self.texts: dict[int, tuple[Any, str]] = {}

    def key(self, value: Any) -> tuple[str, Any]:
        found = self.keys.get(id(value))
        if found is None:
            found = self.keys[id(value)] = (value, _key(value))
        return found[1]

    def code(self, value: Any) -> str | None:
        found = self.codes.get(id(value))
        if found is None:
            found = self.codes[id(value)] = (value, _code(value))
        return found[1]

    def text(self, value: Any) -> str:
        """`value` as a docstring shows it: its code, else its description."""
        found = self.texts.get(id(value))
        if found is None:
            found = self.texts[id(value)] = (value, self.code(value) or describe_value(value))
        return found[1]


class _Codes:
    """The code of each candidate's values, computed once per group (a group has many
    numbers to match against the same candidates)."""

    def __init__(self, values: _Values) -> None:
        self.values = values
        #: id(values) -> their codes; the candidates' lists live as long as this.
        self.memo: dict[int, list[str | None]] = {}

    def of(self, values: list[Any]) -> list[str | None]:
        found = self.memo.get(id(values))
        if found is None:
            found = self.memo[id(values)] = [self.values.code(v) for v in values]
        return found


def _match_exact(candidates: list[tuple[str, list[Any]]], texts: list[str],
                 codes: _Codes) -> tuple[str, list[str]] | None:
    for name, values in candidates:
        if codes.of(values) == texts:
            return name, texts
    return None


def _match(tiers: tuple[list[tuple[str, list[Any]]], ...], texts: list[str],
           codes: _Codes) -> tuple[str, list[str], str] | None:
    """(keyword, its values, how the number reads it) for one varying number: a
    hyperparameter first (exactly, then times or divided by a constant), then the other
    candidates (a module's input sizes) the same way: `tiers`."""
    for tier in tiers:
        exact = _match_exact(tier, texts, codes)
        if exact is not None:
            return exact[0], exact[1], "{}"
        found = _scaled(tier, texts) or _item(tier, texts, codes)
        if found is not None:
            return found
    return None


def _item(candidates: list[tuple[str, list[Any]]], texts: list[str],
          codes: _Codes) -> tuple[str, list[str], str] | None:
    """A number that is one item of a tuple hyperparameter in every member: the tuple is
    the keyword, read where the number stood (`kernel_size[0]`)."""
    for name, values in candidates:
        first = values[0]
        if not isinstance(first, tuple) or not all(
                isinstance(v, tuple) and len(v) == len(first) for v in values):
            continue
        for i in range(len(first)):
            if all(type(v[i]) is int and repr(v[i]) == t for v, t in zip(values, texts)):
                found = codes.of(values)
                if all(c is not None for c in found):
                    return name, [c for c in found if c is not None], "{}[%d]" % i
    return None


def _scaled(candidates: list[tuple[str, list[Any]]],
            texts: list[str]) -> tuple[str, list[str], str] | None:
    try:
        ints = [int(t) for t in texts]
    except ValueError:
        return None
    for name, values in candidates:
        if not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in values):
            continue
        codes = [repr(int(v)) for v in values]
        if all(n % v == 0 for n, v in zip(ints, values)):
            c = {n // v for n, v in zip(ints, values)}
            if len(c) == 1 and (k := c.pop()) > 1:
                return name, codes, "{} * " + str(k)
        if all(v % n == 0 for n, v in zip(ints, values) if n):
            c = {v // n for n, v in zip(ints, values) if n}
            if len(c) == 1 and 0 not in ints and (k := c.pop()) > 1:
                return name, codes, "{} // " + str(k)
    return None


def _tuple_run(segments: list[str], count: int, k: int) -> tuple[int, int] | None:
    """Numbers `j..last` around `k` that make a tuple display `(a, b, ...)` on their own."""
    j = k
    while j > 0 and segments[j] == ", ":
        j -= 1
    last = k
    while last + 1 < count and segments[last + 1] == ", ":
        last += 1
    before, after = segments[j], segments[last + 1]
    if not before.endswith("(") or (len(before) > 1 and (before[-2].isalnum() or
                                                           before[-2] in "_)]\x00")):
        return None
    if not (after.startswith(")") or (j == last and after.startswith(",)"))):
        return None
    return j, last


@dataclass
class _Display:
    """A keyword argument whose value is a display of numbers alone, `padding=((1, 0), (1,
    1))`: numbers `first..last`, the display's own characters at the end of the segment
    before the first (`cut_before`) and at the start of the segment after the last."""

    keyword: str
    first: int
    last: int
    opening: str
    closing: str
    segments: list[str]

    @property
    def cut_before(self) -> int:
        return len(self.opening)

    @property
    def cut_after(self) -> int:
        return len(self.closing)

    def text(self, numbers: list[str]) -> str:
        """The display as one member writes it."""
        inner = [numbers[self.first]]
        for i in range(self.first + 1, self.last + 1):
            inner += [self.segments[i], numbers[i]]
        return self.opening + "".join(inner) + self.closing


#: The start of a keyword argument's display: `padding=((` (a minus may open a number).
_DISPLAY_START = re.compile(r"(?<![\w.])([A-Za-z_]\w*)=(\(+ *-?)$")
#: What may stand between two numbers inside a display.
_DISPLAY_INNER = re.compile(r"[(), ]*-?")
#: A call's keyword argument (`, padding=`), not a comparison.
_CALL_KEYWORD = re.compile(r"(?<=[(,] )[A-Za-z_]\w*=(?!=)|(?<=\()[A-Za-z_]\w*=(?!=)")


def _keyword_display(segments: list[str], count: int, k: int) -> _Display | None:
    """The display of numbers alone that number `k` stands in, when it is a keyword
    argument's whole value (`window_strides=(1, 1)`, `padding=((1, 0), (1, 1))`)."""
    first = k
    while first > 0 and _DISPLAY_INNER.fullmatch(segments[first]):
        first -= 1
    start = _DISPLAY_START.search(segments[first])
    if start is None:
        return None
    opening = start.group(2)
    depth = opening.count("(")
    last = k
    while last + 1 < count and _DISPLAY_INNER.fullmatch(segments[last + 1]):
        last += 1
    for i in range(first + 1, last + 1):
        depth += segments[i].count("(") - segments[i].count(")")
        if depth < 1:
            return None  # the display closed before number i: not one display
    after = segments[last + 1]
    for end, char in enumerate(after):
        if char == ")":
            depth -= 1
            if depth == 0:
                return _Display(start.group(1), first, last, opening, after[:end + 1],
                                segments)
        elif char not in ", ":
            return None
    return None


def _tuple_text(numbers: list[str]) -> str:
    return "(" + ", ".join(numbers) + ("," if len(numbers) == 1 else "") + ")"


def _substitute(segments: list[str], numbers: list[str], replace: dict[int, str],
                runs: dict[int, tuple[int, int, int]]) -> str:
    out: list[str] = []
    k = 0
    pending = segments[0]
    while k < len(numbers):
        if k in runs:  # a whole display: its brackets go with its numbers
            last, cut_before, cut_after = runs[k]
            out.append(pending[:len(pending) - cut_before] + replace[k])
            pending = segments[last + 1][cut_after:]
            k = last + 1
            continue
        out.append(pending)
        out.append(replace.get(k, numbers[k]))
        pending = segments[k + 1]
        k += 1
    out.append(pending)
    return "".join(out)


# ------------------------------------------------------------------ names


def base_name(fn: Function) -> str:
    if fn.origin and "." in fn.origin:
        cls, method = fn.origin.split(".", 1)
        return snake(cls) + ("" if method == "apply" else "_" + snake(method))
    stem = re.sub(r"[^0-9A-Za-z_]", "_", re.sub(r"_\d+$", "", fn.origin or fn.name))
    return stem if stem and not stem[0].isdigit() else f"fn_{stem}"


def _name_groups(plan: Plan) -> None:
    """Names for every group: the module's, with what tells its variants apart."""
    by_base: dict[tuple[str, str], list[Group]] = {}
    for g in plan.groups:
        if g.first.keeps_name:  # custom_jvp / vjp functions keep their names (rules name them)
            g.name = g.first.name if g.kind == "apply" else g.first.init_name or g.first.name
            continue
        by_base.setdefault((base_name(g.first), g.kind), []).append(g)
    # the target templates' locals too: `loss` would be shadowed in `_t_loss`
    used = set(RESERVED) | target_names.TEMPLATE_LOCALS | {g.name for g in plan.groups if g.name}
    used |= {u.name for u in plan.program.user_functions}
    used |= {"TARGETS"} | {name for t in plan.program.targets
                           for name in target_names.target_globals(t.name)}
    # the values of every function (and attributes); members share most of their lines
    # (strings and names never span lines: the lines' names are the code's; calls are
    # placeholders, not names)
    # (instances of one structure often have the same code: each code is split once)
    codes = {member.code for member in plan.members.values()}
    lines = {line for code in codes for line in code.split("\n")}
    used.update(_identifiers(_PLACEHOLDER.sub("", _STRING.sub("", "\n".join(lines)))))
    for (base, kind), groups in by_base.items():
        names = _variant_names(base, groups, plan.values)
        for g, name in zip(groups, names):
            name = name[:_MAX_NAME].rstrip("_") or "fn"
            if kind != "apply":
                name += f"_{kind}"
            final, n = name, 2
            while final in used:
                final, n = f"{name}_fn{n if n > 2 else ''}", n + 1
            used.add(final)
            g.name = checked(final, "function name")


def _variant_names(base: str, groups: list[Group], memo: _Values) -> list[str]:
    """`base` with, for each group, the labels that tell it from the others: flags first,
    then the model's name for its configuration (which replaces `base`: `res_net18`),
    then the parameter subtree only some have, then other hyperparameter values."""
    if len(groups) == 1:
        return [base]
    bases = [base] * len(groups)
    labels = [[] for _ in groups]  # type: list[list[str]]

    def names() -> list[str]:
        return ["_".join([b, *[x for x in lab if x]]) for b, lab in zip(bases, labels)]

    for kind, feature in _features(groups, memo):
        current = names()
        if len(set(current)) == len(current):
            break
        # a feature helps if it separates two groups that share a name so far
        split = any(feature[i] != feature[j] for i in range(len(groups))
                    for j in range(i) if current[i] == current[j])
        if not split:
            continue
        if kind == "label":
            bases = [f or b for f, b in zip(feature, bases)]
            continue
        for lab, value in zip(labels, feature):
            lab.append(value)
    seen: dict[str, int] = {}
    out = []
    for name in names():
        seen[name] = seen.get(name, 0) + 1
        out.append(name if seen[name] == 1 else f"{name}_variant{seen[name]}")
    return out


def _features(groups: list[Group], memo: _Values) -> list[tuple[str, list[str]]]:
    """Per feature, its kind and its label for each group (see `_variant_names`)."""
    flags: list[list[str]] = []
    modules: list[list[str]] = []
    values: list[list[str]] = []
    hparams = {g.index: [dict(m.body.function.hparams) for m in g.members] for g in groups}

    def constant(g: Group, name: str) -> tuple[bool, Any]:
        seen = []
        for hp in hparams[g.index]:
            if name not in hp:
                return False, None
            seen.append(hp[name])
        one = seen[0]  # instances often hold the same object: no key to compare
        first = memo.key(one)
        return all(v is one or memo.key(v) == first for v in seen), one

    names: list[str] = []
    for g in groups:
        for n, _ in g.first.hparams:
            if n not in names:
                names.append(n)
    for name in names:
        per = [constant(g, name) for g in groups]
        if not all(ok for ok, _ in per):
            continue
        vals = [v for _, v in per]
        first = memo.key(vals[0])
        if all(memo.key(v) == first for v in vals):
            continue
        if all(isinstance(v, bool) for v in vals):
            true, false = FLAG_LABELS.get(name, (name, ""))
            flags.append([true if v else false for v in vals])
            continue
        if all(isinstance(v, ModuleRef) for v in vals):
            sub_flags, sub_modules = _ref_features(vals)
            flags.extend(sub_flags)
            if len({v.class_name for v in vals}) > 1:
                modules.append([snake(v.class_name) for v in vals])
            modules.extend(sub_modules)
            continue
        values.append([_value_label(name, v, memo) for v in vals])
    # an input only some take (`aux`), then a parameter subtree only some have
    inputs = [[name for name, _ in g.first.inputs] for g in groups]
    extra = [[f"with_{_slug(k)}" if k in t else "" for t in inputs] for k in _partial(inputs)]
    trees = [_subtrees(g) for g in groups]
    subtree = [[f"with_{_slug(k)}" if k in t else "" for t in trees] for k in _partial(trees)]
    label = []
    names_of = [{m.body.function.label for m in g.members} for g in groups]
    if all(len(n) == 1 for n in names_of) and len({next(iter(n)) for n in names_of}) > 1:
        label = [[snake(next(iter(n))) if next(iter(n)) else "" for n in names_of]]
    return ([("flag", f) for f in flags] + [("label", f) for f in label]
            + [("module", f) for f in modules] + [("input", f) for f in extra]
            + [("subtree", f) for f in subtree] + [("value", f) for f in values])


def _partial(lists: list[list[str]]) -> list[str]:
    """The names some of `lists` hold and others do not, in order of appearance."""
    out: list[str] = []
    for names in lists:
        for k in names:
            if k not in out and not all(k in other for other in lists):
                out.append(k)
    return out


def _ref_features(refs: list[ModuleRef]) -> tuple[list[list[str]], list[list[str]]]:
    """What the hyperparameters bound on module references tell apart: flags that differ
    (`norm=BatchNorm.partial(use_running_average=not train)`: training and evaluation
    variants) and modules that differ (`PreNorm.partial(fn=SelfAttention)` and
    `fn=FeedForward`: `self_attention`, `feed_forward`)."""
    flags, modules = [], []
    names: list[str] = []
    for r in refs:
        for n, _ in r.bound:
            if n not in names:
                names.append(n)
    for name in names:
        vals = [dict(r.bound).get(name) for r in refs]
        if all(isinstance(v, bool) for v in vals) and len(set(vals)) > 1:
            true, false = FLAG_LABELS.get(name, (name, ""))
            flags.append([true if v else false for v in vals])
        else:
            refs_bound = [v for v in vals if isinstance(v, ModuleRef)]
            if len(refs_bound) == len(vals) and len({v.class_name for v in refs_bound}) > 1:
                modules.append([snake(v.class_name) for v in refs_bound])
    return flags, modules


def _key(value: Any) -> tuple[str, Any]:
    """What two values compare by: their static keys, else their identity."""
    try:
        return "key", static_key(value)
    except Exception:  # noqa: BLE001 - values without keys are compared by identity
        return "id", id(value)


def _value_label(name: str, value: Any, memo: _Values) -> str:
    code = memo.code(value)
    text = _slug(code) if code is not None else ""
    return f"{name}_{text}" if text else name


def _slug(text: str) -> str:
    return re.sub(r"_+", "_", re.sub(r"[^0-9A-Za-z]", "_", text)).strip("_").lower()


def _subtrees(g: Group) -> list[str]:
    """The top-level names of the group's parameters and state (`conv_proj`)."""
    fn = g.first
    return list(dict.fromkeys([d.path[0] for d in fn.params] +
                              [d.path[1] for d in fn.state if len(d.path) > 1]))


# ------------------------------------------------------------------ instances


def _instances(plan: Plan) -> None:
    """Which target and module path each function serves (for docstrings)."""
    seen: set[tuple[int, str, str, str]] = set()

    def walk(fn: Function, kind: str, target: str, path: tuple[str, ...]) -> None:
        key = (id(fn), kind, target, "/".join(path))
        if key in seen:
            return
        seen.add(key)
        plan.instances.setdefault((id(fn), kind), []).append((target, "/".join(path)))
        for op in _ops(fn.body):
            info = op.info
            if info is None or info.callee is None:
                continue
            sub = path + tuple(info.path or ())
            walk(info.callee, kind if info.callee.init_name and kind == "init" else "apply",
                 target, sub)

    for t in plan.program.targets:
        walk(t.function, "apply", t.name, ())
        if t.function.init_name:
            walk(t.function, "init", t.name, ())
        if t.train is not None:
            plan.instances.setdefault((id(t.train.loss), "apply"), []).append(
                (t.name, "(loss)"))


def _ops(body: tuple) -> list:
    out = []
    for op in body:
        out.append(op)
        for nested in op.nested:
            out.extend(_ops(nested.body))
    return out


def _serves(plan: Plan, group: Group) -> list[str]:
    """`resnet18_train, resnet18_eval: ResNetBlock_0, ResNetBlock_1` lines."""
    per_target: dict[str, dict[str, None]] = {}  # target -> its paths, in order, once
    instances = plan.instances
    for m in group.members:
        body = m.body
        for target, path in instances.get((id(body.function), body.kind), ()):
            paths = per_target.get(target)
            if paths is None:
                paths = per_target[target] = {}
            paths[path] = None
    by_paths: dict[tuple[str, ...], list[str]] = {}
    for target, paths in per_target.items():
        by_paths.setdefault(tuple(paths), []).append(target)
    if len(per_target) == 1 and len(next(iter(by_paths))) == 1:
        return []  # one instance of one target: its only call site says which
    out = []
    for key, targets in by_paths.items():
        if key == ("",):
            out.append(", ".join(targets))
            continue
        if key == ("(loss)",):
            out.append(f"{', '.join(targets)} as the loss")
            continue
        shown = [p or "the module itself" for p in key]
        if len(shown) > 8:
            shown = shown[:6] + [f"... ({len(key)} instances)"]
        out.append(f"{', '.join(targets)} ({', '.join(shown)})")
    return out


# ------------------------------------------------------------------ rendering


def render_group(plan: Plan, group: Group) -> str:
    """The text of one shared function."""
    first = group.members[0].body
    lines = group.code.split("\n")
    nd = len(first.function.decorators)
    decorators = lines[:nd]
    body_lines = lines[nd + 1:nd + 1 + len(first.lines)]
    result = "\n".join(lines[nd + 1 + len(first.lines):])[len("return "):]
    args = list(first.args)
    keyword_only = [kw.name for kw in group.kwargs] + (["rng"] if first.takes_rng else [])
    if keyword_only:
        args += ["*", *keyword_only]
    dims = _DimNames(group)
    text_lines = []
    members = [m.body for m in group.members]
    for i, code in enumerate(body_lines):
        line = first.lines[i]
        # the members' arrays are read only for a line that shows some (a variable tree's
        # lines show none)
        shows = [m.shows(m.lines[i]) for m in members] if line.source else []
        text_lines.append(code + dims.comment(line, shows[0] if shows else (), shows))
    return template("function.py.j2").jinja.render(
        name=group.name, args=", ".join(args), decorators=[d.lstrip("@") for d in decorators],
        doc=_docstring(plan, group), lines=text_lines, result=result)


def _docstring(plan: Plan, group: Group) -> str:
    """The function's docstring: a summary line of at most `SUMMARY_WIDTH` characters
    (what it implements, with its hyperparameters when they fit, and where), then a
    paragraph with the hyperparameters that did not fit and the instances it serves."""
    fn = group.first
    where = f"{fn.span.file.name or plan.program.relpath}:{fn.span.line}"
    origin, hparams = _signature(plan, group)
    prefix = tag = ""
    if group.kind == "variables":
        collections = ["params"] * bool(fn.params) + list(dict.fromkeys(
            d.path[0] for d in fn.state))
        prefix = f"The {' and '.join(collections)} of "
    if group.kind == "init":
        tag = ", init variant"
    shown = f"{origin}({', '.join(hparams)})" if hparams is not None else origin
    # the last resort names the file alone (every line's comment has its whole path)
    base = where.rsplit("/", 1)[-1]
    head = summary(f"{prefix}{shown}{tag}, from {where}.", f"{prefix}{origin}{tag}, from {where}.",
                   f"{prefix}{origin}{tag}, from {base}.")
    notes = []
    if hparams and not head.startswith(prefix + shown) and group.kind != "variables":
        # the variable tree's function leaves them to the forward function's docstring
        # each `name=value` on one line
        notes.append("Hyperparameters: " + ", ".join(h.replace(" ", _NBSP) for h in hparams)
                     + ".")
    if group.kind == "init":
        notes.append("Also initializes the parameters that come from data, writing them "
                     "into `params`.")
    serves = _serves(plan, group) if group.kind != "variables" else []
    if serves:
        notes.append("Serves " + "; ".join(serves) + ".")
    if not notes:
        return docstring(head)
    lines = [x.replace(_NBSP, " ") for x in _wrap(" ".join(notes))]
    return docstring(head) + "\n\n" + "".join(f"    {docstring(x)}\n" for x in lines) + "    "


def summary(text: str, *shorter: str) -> str:
    """`text` as a docstring's summary line, or the first of the `shorter` ones that fits
    (the last where none does)."""
    for candidate in (text, *shorter):
        if _width(candidate) <= SUMMARY_WIDTH:
            return candidate
    return shorter[-1] if shorter else text


#: A run of digits.
_DIGITS = re.compile(r"\d+")


@functools.lru_cache(maxsize=8192)
def _width(text: str) -> int:
    """`len(text)` with every number counted as three characters: a docstring's lines are
    laid out the same whatever its numbers (the emissions of a symbolic dimension at two
    sizes must have the same lines, `symbolic.reconcile`)."""
    return len(_DIGITS.sub("nnn", text)) if any(c.isdigit() for c in text) else len(text)


def _signature(plan: Plan, group: Group) -> tuple[str, list[str] | None]:
    """What the function implements and its hyperparameters' values across the group:
    `("ResNetBlock.apply", ["filters=8|16", "act=jax.nn.relu", "strides=(1, 1)"])`;
    None for a function that is not a module's method (a loss, an initializer)."""
    fn = group.first
    if not fn.origin or "." not in fn.origin:
        return fn.doc, None
    parts = []
    hparams = [dict(m.body.function.hparams) for m in group.members]
    for name, value in fn.hparams:
        seen: list[str] = []
        for hp in hparams:
            v = hp.get(name, value)
            text = plan.values.text(v)
            if text not in seen:
                seen.append(text)
        parts.append(f"{name}={'|'.join(seen[:6])}{'|...' if len(seen) > 6 else ''}")
    return fn.origin, parts


def _wrap(text: str, width: int = 88) -> list[str]:
    """`text` in lines of at most `width` (`_width`) characters, broken at spaces."""
    out, line, used = [], "", 0
    for word in text.split(" "):
        w = _width(word)
        if line and used + 1 + w > width:
            out.append(line)
            line, used = word, w
        elif line:
            line, used = f"{line} {word}", used + 1 + w
        else:
            line, used = word, w
    if line:
        out.append(line)
    return out


class _DimNames:
    """Names for the dimensions that differ between the members of a group: a
    hyperparameter with those values (`filters`), else the axis of an input it is
    (`batch`, `height`, `width`), else a multiple or fraction of one (`height // 2`,
    `height // strides[0]`)."""

    def __init__(self, group: Group):
        self.group = group
        self.found = False  # the names are found when a dimension first differs
        #: (shapes, dtype) -> the description `describe` gave.
        self.described: dict[tuple, str] = {}
        #: (sizes, rank, axis) -> `dim`.
        self.dims: dict[tuple[tuple[int, ...], int, int], str] = {}

    def _find(self) -> None:
        self.found = True
        group = self.group
        self.hps: dict[tuple[int, ...], str] = {}
        #: (values, rank, axis) -> name, for the axes of the inputs.
        self.axes: dict[tuple[tuple[int, ...], int, int], str] = {}
        self.vectors: dict[tuple[int, ...], str] = {}
        self.taken: set[str] = set()
        #: (values, name) of the varying ints a size may be divided by: hyperparameters,
        #: and items of tuple hyperparameters (`strides[0]`).
        self.divisors: list[tuple[tuple[int, ...], str, int | None]] = []
        for name, values in _candidates(group):
            if name.startswith("\x01"):
                continue
            if all(isinstance(v, int) and not isinstance(v, bool) for v in values):
                vec = tuple(int(v) for v in values)
                if len(set(vec)) > 1 and vec not in self.hps:
                    self.hps[vec] = name
                    self.taken.add(name)
                    self.divisors.append((vec, name, None))
            elif all(isinstance(v, tuple) and len(v) == len(values[0]) and all(
                    isinstance(i, int) and not isinstance(i, bool) for i in v) for v in values):
                for k in range(len(values[0])):
                    vec = tuple(v[k] for v in values)
                    if len(set(vec)) > 1:
                        self.divisors.append((vec, f"{name}[{k}]", k))
        inputs = [m.body.function.inputs for m in group.members]
        for i, (arg, t) in enumerate(inputs[0]):
            if not isinstance(t, Tensor):
                continue
            names = axis_names(t)
            for axis in range(t.ndim):
                others = [ins[i][1] if i < len(ins) else None for ins in inputs]
                if not all(isinstance(o, Tensor) and o.ndim > axis for o in others):
                    continue
                vec = tuple(o.shape[axis] for o in others if isinstance(o, Tensor))
                if len(set(vec)) == 1 or (vec, t.ndim, axis) in self.axes:
                    continue
                # a hyperparameter may have the axis's name (`channels`, the output's): the
                # input's is then `in_channels`
                first = names[axis] if i == 0 else f"{arg}_{names[axis]}"
                name = next((n for n in (first, f"in_{first}") if n not in self.taken), first)
                while name in self.taken:
                    name += "_"
                self.axes[(vec, t.ndim, axis)] = name
                self.vectors.setdefault(vec, name)
                self.taken.add(name)

    def dim(self, vec: tuple[int, ...], rank: int, axis: int) -> str:
        """The name of axis `axis` of a rank-`rank` array of sizes `vec` in the members
        (a number where they agree); one name per key, as first found (the arrays of a
        function share most of their dimensions)."""
        if len(set(vec)) == 1:
            return str(vec[0])
        key = (vec, rank, axis)
        found = self.dims.get(key)
        if found is None:
            found = self.dims[key] = self._dim(vec, rank, axis)
        return found

    def _dim(self, vec: tuple[int, ...], rank: int, axis: int) -> str:
        if not self.found:
            self._find()
        found = self.hps.get(vec) or self.axes.get((vec, rank, axis))
        if found is not None:
            return found
        for values, name, k in self.divisors:  # an item of a tuple: `kernel_size[1]`
            if k is not None and values == vec:
                return name
        # the same axis of an input, scaled (`height // 2`), before another axis that
        # happens to have the same sizes (a batch of 2 and 4 beside heights of 2 and 4)
        same = [(v, n) for (v, r, a), n in self.axes.items() if (r, a) == (rank, axis)]
        for values, name in same:
            scaled = _relation(vec, values)
            if scaled is not None:
                return scaled.format(name)
        if vec in self.vectors:
            return self.vectors[vec]
        for values, name in [*self.vectors.items(), *self.hps.items()]:
            scaled = _relation(vec, values)
            if scaled is not None:
                return scaled.format(name)
        # the same axis of an input divided by a varying hyperparameter (`height //
        # strides[0]`: a strided convolution of blocks with and without a stride); of the
        # items of one tuple, the one at this spatial axis first
        for values, name in same:
            fits = [(k != axis - 1, d) for vals, d, k in self.divisors
                    if all(s > 0 and v == x // s for v, x, s in zip(vec, values, vals))]
            if fits:
                return f"{name} // {min(fits)[1]}"
        name, n = "n", 1
        while name in self.taken:
            name, n = f"n{n}", n + 1
        self.vectors[vec] = name
        self.taken.add(name)
        return name

    def describe(self, t: Tensor, shapes: list[tuple[int, ...] | None]) -> str:
        """`t`'s type, with the dimensions that differ between the members' `shapes`
        named."""
        dims = []
        for axis in range(t.ndim):
            vec = tuple(sh[axis] if sh is not None and axis < len(sh) else t.shape[axis]
                        for sh in shapes)
            dims.append(self.dim(vec, t.ndim, axis))
        if dims == [str(d) for d in t.shape]:  # the same in every use: as it describes itself
            return t.describe()
        return describe_aval(tuple(dims), t.dtype)  # type: ignore[arg-type]

    def comment(self, line: Line, shown: tuple[Tensor, ...],
                shows: list[tuple[Tensor, ...]]) -> str:
        """The comment of `line`, which shows `shown` in the first member and `shows` in
        each member."""
        if not line.where and not shown:
            return ""
        parts = []
        for k, t in enumerate(shown):
            # the k-th array's shape in each member (None: it shows fewer)
            shapes = [s[k].shape if k < len(s) else None for s in shows]
            if shapes.count(t.shape) == len(shapes):
                parts.append(t.describe())  # the same in every use (most lines)
                continue
            # a layer's lines show the same arrays (and `dim` answers a vector as it first
            # did): described once
            key = (tuple(shapes), t.dtype)
            part = self.described.get(key)
            if part is None:
                part = self.described[key] = self.describe(t, shapes)
            parts.append(part)
        types = ", ".join(parts)
        text = f"  # {comment(line.where)}" if line.where else "  #"
        return text + (f"  {comment(types)}" if types else "")


def _relation(vec: tuple[int, ...], known: tuple[int, ...]) -> str | None:
    """`{} * 2` or `{} // 2` when `vec` is a constant multiple or fraction of `known`."""
    if all(k and v % k == 0 for v, k in zip(vec, known)):
        c = {v // k for v, k in zip(vec, known)}
        if len(c) == 1 and (m := c.pop()) > 1:
            return "{} * " + str(m)
    if all(v and k % v == 0 for v, k in zip(vec, known)):
        c = {k // v for v, k in zip(vec, known)}
        if len(c) == 1 and (m := c.pop()) > 1:
            return "{} // " + str(m)
    return None
