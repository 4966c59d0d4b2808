"""Symbolic dimensions: `aot.f32["batch", 28, 28, 1]` without symbolic arithmetic.

A target with named dimensions is resolved three times, with each name bound to
a different sentinel size: two large primes (A and B) and a small one (C).
Generated code that does not depend on the size is identical in A and B up to
the sentinel values themselves, which are then written as a variable read
from the input's shape at run time (`batch = x.shape[0]`).  A line whose code
differs in any other way (a size computed from the batch, a branch taken on
it) genuinely depends on the value: that is a located error, never a silently
specialized program.  C checks the program's structure at a small size.
"""

from __future__ import annotations

import builtins
import difflib
import keyword
import re
from dataclasses import dataclass, field, replace
from typing import Any

from .diagnostics import BuildError, Diagnostic, SourceFile, Span
from .program import FileProgram, Tensor


def _primes(start: int, n: int) -> list[int]:
    out: list[int] = []
    k = start
    while len(out) < n:
        k += 1
        if k > 1 and all(k % d for d in range(2, int(k**0.5) + 1)):
            out.append(k)
    return out


SENTINELS_A = _primes(1_000_000, 8)
SENTINELS_B = _primes(2_000_000, 8)
SENTINELS_C = _primes(2, 8)


@dataclass
class Sentinels:
    """Sizes handed to symbolic dimensions, in order of first appearance."""

    base: list[int]
    names: dict[str, int] = field(default_factory=dict)

    def value(self, name: str) -> int:
        if name not in self.names:
            if len(self.names) == len(self.base):
                raise ValueError("too many symbolic dimensions in one file")
            self.names[name] = self.base[len(self.names)]
        return self.names[name]


def rename_in_errors(error: BuildError, a: Sentinels) -> BuildError:
    """Messages mention symbolic dimensions by name, not by their sentinel sizes."""
    if not a.names:
        return error
    names = {s: s for s in a.names}
    return BuildError([replace(d, message=_sub(d.message, a.names, names))
                       for d in error.diagnostics])


def has_symbolic(program: FileProgram) -> bool:
    return any(t.symbolic for t in program.targets)


def _split(line: str, marker: str) -> tuple[str, str]:
    i = line.rfind(marker)
    return (line, "") if i < 0 else (line[:i], line[i:])


def _sub(text: str, values: dict[str, int], names: dict[str, str]) -> str:
    for sym, v in values.items():
        text = re.sub(rf"(?<![\w.]){v}(?![\w.])", names[sym], text)
    return text


def _located(source: SourceFile, comment: str, marker: str, message: str,
             hint: str) -> Diagnostic:
    m = re.match(re.escape(marker) + r"(\d+)", comment)
    if m is None:
        return Diagnostic("AOT411", message, None, hint=hint)
    line = int(m.group(1))
    text = source.line(line)
    col = len(text) - len(text.lstrip())
    return Diagnostic("AOT411", message, Span(source, line, col, line, max(len(text), col + 1)),
                      hint=hint)


def check_variables(program_a: FileProgram, program_b: FileProgram) -> None:
    """Refuses a parameter or state variable whose shape depends on a symbolic dimension.

    Generated code reads sizes from the arrays, so such a shape can look the same in the
    A and B emissions (`mlp_variables(in_width=a)`); the resolved shapes differ, and
    that is what this compares, target by target.
    """
    errors: list[Diagnostic] = []
    for ta, tb in zip(program_a.targets, program_b.targets):
        if not ta.symbolic:
            continue
        for da, db in zip(ta.params + ta.state, tb.params + tb.state):
            if da.shape != db.shape:
                names = sorted({d for _, dims in ta.symbolic for d in dims
                                if isinstance(d, str)})
                dims = (f"symbolic dimension '{names[0]}'" if len(names) == 1 else
                        "one of the symbolic dimensions " + ", ".join(f"'{n}'" for n in names))
                errors.append(Diagnostic(
                    "AOT411", f"the shape of '{'/'.join(da.path)}' in target '{ta.name}' "
                    f"depends on {dims}", da.span,
                    hint="a parameter's shape is fixed when the target is built: give this "
                         "axis of the input a size; only axes the variables do not depend "
                         "on (such as the batch) can be symbolic"))
                break
    if errors:
        raise BuildError(_unique(errors))


def reconcile(text_a: str, text_b: str, text_c: str | None, a: Sentinels, b: Sentinels,
              source: SourceFile, relpath: str, program_a: FileProgram,
              inputs: dict[str, tuple[tuple[str, Any], ...]] | None = None) -> str:
    """Merge the A/B emissions into one text with symbolic dimension variables.

    Raises `BuildError` with the DSL line of every place that needs a symbolic size
    as a constant.
    """
    marker = f"  # {relpath}:"
    reserved = set(re.findall(r"\b\w+\b", re.sub(r'"[^"\n]*"', "", text_a)))
    var = {s: s if s not in reserved and not keyword.iskeyword(s) and s not in dir(builtins)
           else f"{s}_dim" for s in a.names}
    symbols = ", ".join(f"'{s}'" for s in a.names)
    hint = ("read the size from the array where it is used (x.shape[0], or -1 in a "
            "reshape); a symbolic size is only known when the program runs, so it cannot "
            "set a parameter's shape or a submodule's hyperparameter")
    lines_a, lines_b = text_a.splitlines(), text_b.splitlines()
    errors: list[Diagnostic] = []
    if len(lines_a) != len(lines_b) or _structure(text_a) != _structure(text_c or text_a):
        other = text_b if len(lines_a) != len(lines_b) else text_c or text_a
        errors.append(_located(
            source, _divergence(text_a, other, marker), marker,
            f"the program's structure depends on the size of {symbols}",
            "a static `if`, a loop or a random draw over a symbolic dimension cannot be "
            "compiled once for every size"))
        raise BuildError(errors)
    out: list[str] = []
    in_doc = _docstring_mask(lines_a)
    for k, (la, lb) in enumerate(zip(lines_a, lines_b)):
        if la == lb:
            out.append(la)
            continue
        code_a, com_a = _split(la, marker)
        code_b, com_b = _split(lb, marker)
        code = _sub(code_a, a.names, var)
        docstring = in_doc[k] or code.strip().startswith("#")
        if code != _sub(code_b, b.names, var) and not docstring:
            errors.append(_located(source, com_a, marker, f"this line needs the size of "
                                   f"symbolic dimension {symbols} as a constant", hint))
            continue
        if docstring and code != _sub(code_b, b.names, var):
            code = _fuzzy(code_a, code_b, a, var)
        out.append(code + (_fuzzy(com_a, com_b, a, {s: s for s in a.names}) if com_a else ""))
    if errors:
        raise BuildError(_unique(errors))
    return _define_dims("\n".join(out) + "\n", program_a, a, var, source, inputs)


def _docstring_mask(lines: list[str]) -> list[bool]:
    """Which lines are (part of) a docstring: from a line opening one with three double
    quotes to the line closing it (a docstring's paragraph lists hyperparameters, sizes
    among them).  Generated code escapes a double quote inside a string, so three in a
    row only open or close a docstring."""
    out = []
    open_ = False
    for line in lines:
        starts = open_ or line.lstrip().startswith('"""')
        out.append(starts)
        if starts and line.count('"""') % 2 == 1:
            open_ = not open_
    return out


def _fuzzy(text_a: str, text_b: str, a: Sentinels, names: dict[str, str]) -> str:
    """Comments: sentinels become names, other numbers that differ become '?'."""
    ta, tb = re.split(r"(\d+)", text_a), re.split(r"(\d+)", text_b)
    if len(ta) != len(tb):
        return _sub(text_a, a.names, names)
    inverse = {str(v): names[s] for s, v in a.names.items()}
    return "".join(inverse.get(x, x if x == y else "?") for x, y in zip(ta, tb))


def _structure(text: str) -> str:
    return re.sub(r"\d+", "N", text)


def _divergence(text_a: str, text_b: str, marker: str) -> str:
    """The source comment of the first line where two emissions differ in structure
    (not only in numbers), or "" when no differing line has one."""
    lines_a, lines_b = text_a.splitlines(), text_b.splitlines()
    matcher = difflib.SequenceMatcher(a=[_structure(x) for x in lines_a],
                                      b=[_structure(x) for x in lines_b], autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            continue
        for line in lines_a[i1:i2] + lines_b[j1:j2]:
            comment = _split(line, marker)[1]
            if comment:
                return comment
    return ""


def _unique(errors: list[Diagnostic]) -> list[Diagnostic]:
    seen, out = set(), []
    for e in errors:
        key = (e.span.line if e.span else 0, e.message)
        if key not in seen:
            seen.add(key)
            out.append(e)
    return out


def _define_dims(text: str, program: FileProgram, a: Sentinels, var: dict[str, str],
                 source: SourceFile,
                 inputs: dict[str, tuple[tuple[str, Any], ...]] | None = None) -> str:
    """Insert `batch = x.shape[0]` at the top of each function that uses a dimension.

    `inputs`: the emitted functions' array inputs by emitted name (`emit.Emitted`);
    functions shared across instances are named by emission, not by resolve.
    """
    carriers: dict[str, dict[str, str]] = {}
    for fn in program.functions:
        carriers[fn.name] = _carriers(fn.inputs, a)
    for name, args in (inputs or {}).items():
        carriers[name] = _carriers(args, a)
    for t in program.targets:
        carriers[f"_{t.name}_apply"] = _carriers(
            tuple((n, Tensor(s, d)) for n, s, d in t.inputs), a)
    lines = text.split("\n")
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        out.append(line)
        m = re.match(r"def (\w+)\(", line)
        if m and m.group(1) in carriers:
            body = _block(lines, i + 1)
            doc = _docstring_lines(body)
            code = "\n".join(_split(b, "  # ")[0] for b in body[doc:])
            out.extend(body[:doc])
            for sym, name in var.items():
                if re.search(rf"(?<![\w.]){re.escape(name)}(?![\w])", code):
                    expr = carriers[m.group(1)].get(sym)
                    if expr is None:
                        raise BuildError([Diagnostic(
                            "AOT411", f"symbolic dimension '{sym}' reaches {m.group(1)} only "
                            "as a hyperparameter", None,
                            hint="pass an array that has the dimension instead")])
                    out.append(f"    {name} = {expr}  # symbolic dimension \"{sym}\"")
            out.extend(body[doc:])
            i += 1 + len(body)
            continue
        i += 1
    return "\n".join(out)


def _docstring_lines(body: list[str]) -> int:
    """How many lines of `body` its docstring takes (0: none); a shared function's
    docstring goes on to list the instances it serves."""
    if not body or not body[0].strip().startswith('"""'):
        return 0
    first = body[0].strip()
    if len(first) >= 6 and first.endswith('"""'):
        return 1
    for j in range(1, len(body)):
        if body[j].rstrip().endswith('"""'):
            return j + 1
    return 0


def _carriers(inputs, a: Sentinels) -> dict[str, str]:
    found: dict[str, str] = {}
    for name, tensor in inputs:
        for axis, d in enumerate(getattr(tensor, "shape", ())):
            for sym, v in a.names.items():
                if d == v and sym not in found:
                    found[sym] = f"{name}.shape[{axis}]"
    return found


def _block(lines: list[str], start: int) -> list[str]:
    out = []
    for line in lines[start:]:
        if line and not line.startswith((" ", "\t")):
            break
        out.append(line)
    while out and not out[-1].strip():
        out.pop()
    return out
