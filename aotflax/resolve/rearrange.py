"""einops' `rearrange`, `reduce` and `repeat`, as the reshapes, transposes, reductions and
broadcasts they are.

Vision transformers and MLP-Mixers of 2021 wrote their patch and token shuffles with
einops.  A pattern names the axes of each side; parentheses compose axes into one, `1`
is an axis of size 1, `...` stands for the axes the other names leave (bare on the left;
bare or inside parentheses on the right), and sizes of decomposed axes come from the
keywords (`h=2`), at most one unknown per group.  `reduce(x, pattern, "mean")` reduces the
axes the right side leaves out (`mean`, `sum`, `max`, `min`, `prod`, `any`, `all`);
`repeat` adds the right side's new axes (sizes as keywords, or a number: `(h 2)`).  The
call is emitted as the operations it stands for (`jnp.reshape` to the elementary axes
where the input decomposes, the reduction, `jnp.transpose` to the output's order,
`jnp.broadcast_to` the new axes, `jnp.reshape` to its groups), each only where it changes
something.  einops itself is never imported.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from ..diagnostics import Span
from ..ops import REGISTRY
from ..program import Tensor
from ..values import describe_value

if TYPE_CHECKING:
    from .base import Frame
    from .core import Resolver

#: einops' reductions by name, each the jnp function of that name.
REDUCTIONS = ("mean", "sum", "max", "min", "prod", "any", "all")
#: What each function takes, for its usage error.
_USAGE = {"rearrange": "an array and a pattern string",
          "reduce": "an array, a pattern string and a reduction ('mean', 'sum', ...)",
          "repeat": "an array and a pattern string"}


class RearrangeMixin:
    """`einops.rearrange`, `einops.reduce` and `einops.repeat` over arrays."""

    def _einops(self: Resolver, op: str, args: list, kwargs: dict, span: Span,
                frame: Frame) -> Any:
        written = f"einops.{op}"
        count = 3 if op == "reduce" else 2
        if len(args) != count or not isinstance(args[1], str) or (
                op == "reduce" and not isinstance(args[2], str)):
            raise self.error("AOT304", f"{written} takes {_USAGE[op]} (axis sizes as "
                             "keywords)", span)
        x, pattern = args[0], args[1]
        if isinstance(x, (list, tuple)) and x and all(isinstance(t, Tensor) for t in x):
            x = self._call_jnp("stack", [list(x)], {}, span, frame)  # stacked, as einops does
        if not isinstance(x, Tensor):
            raise self.error("AOT201", f"{written} takes an array, got {describe_value(x)}",
                             span)
        for k, v in kwargs.items():
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise self.error("AOT203", f"{written}: axis size {k} must be a positive "
                                 f"int, got {describe_value(v)}", span)

        def bad(message: str) -> Exception:
            return self.error("AOT203", f"{written} {pattern!r}: {message}", span)

        if op == "reduce" and args[2] not in REDUCTIONS:
            raise bad(f"the reduction {args[2]!r} is not one of {', '.join(REDUCTIONS)}")
        if pattern.count("->") != 1:
            raise bad("a pattern is 'left -> right'")
        left_text, right_text = pattern.split("->")
        left, right = _expand_ellipsis(_groups(left_text, bad), _groups(right_text, bad),
                                       x.ndim, bad)
        new_sizes = _anonymous(right, op, bad)
        if any(a.isdigit() and a != "1" for g in left for a in g):
            raise bad("a number other than 1 names no axis on the left side")
        if len(left) != x.ndim:
            raise bad(f"the left side names {len(left)} axes, the input {x.describe()} has "
                      f"{x.ndim}")
        sizes = self._einops_sizes(pattern, written, left, x, kwargs, span, bad)
        names = [a for g in left for a in g if a != "1"]
        out_names = [a for g in right for a in g if a != "1"]
        _check_names(op, names, out_names, bad)
        added = [a for a in out_names if a not in names]
        unused = set(kwargs) - set(names) - set(added)
        if unused:
            raise bad(f"sizes given for axes it does not name: {', '.join(sorted(unused))}")
        missing = [a for a in added if a not in kwargs and a not in new_sizes]
        if missing:
            raise bad(f"give the sizes of the new axes: {', '.join(missing)}")
        sizes.update(new_sizes)
        sizes.update({a: kwargs[a] for a in added if a in kwargs})
        value: Any = x
        elementary = tuple(sizes[a] for a in names)
        if elementary != tuple(x.shape):
            value = self._call_jnp("reshape", [value, elementary], {}, span, frame)
        reduced = [i for i, a in enumerate(names) if a not in out_names]
        if reduced:
            value = self._call_jnp(args[2], [value], {"axis": tuple(reduced)}, span, frame)
            names = [a for a in names if a in out_names]
        kept = [a for a in out_names if a in names]
        perm = tuple(names.index(a) for a in kept)
        if perm != tuple(range(len(perm))):
            value = self._call_jnp("transpose", [value, perm], {}, span, frame)
        if added:
            ones = tuple(1 if a in added else sizes[a] for a in out_names)
            if ones != tuple(value.shape):
                value = self._call_jnp("reshape", [value, ones], {}, span, frame)
            value = self._call_jnp("broadcast_to", [value, tuple(sizes[a] for a in out_names)],
                                   {}, span, frame)
        out = tuple(math.prod(sizes.get(a, 1) for a in g) for g in right)
        if out != tuple(value.shape):
            value = self._call_jnp("reshape", [value, out], {}, span, frame)
        return value

    def _einops_sizes(self: Resolver, pattern: str, written: str, left: list[list[str]],
                      x: Tensor, kwargs: dict, span: Span, bad: Any) -> dict[str, int]:
        """The size of each elementary axis of the left side, from the input's shape and
        the keywords (one unknown per group)."""
        sizes: dict[str, int] = {}
        for group, dim in zip(left, x.shape):
            known = math.prod(kwargs.get(a, 1) for a in group if a != "1")
            unknown = [a for a in group if a != "1" and a not in kwargs]
            if len(unknown) > 1:
                raise bad(f"give the sizes of all but one of ({' '.join(group)})")
            if unknown:
                if dim % known:
                    raise self.error("AOT210", f"{written} {pattern!r}: an axis of size "
                                     f"{dim} does not split into ({' '.join(group)})", span)
                sizes[unknown[0]] = dim // known
            elif known != dim:
                raise self.error("AOT210", f"{written} {pattern!r}: ({' '.join(group)})"
                                 f" is {known}, the input's axis is {dim}", span)
            sizes.update({a: kwargs[a] for a in group if a in kwargs})
        return sizes

    def _call_jnp(self: Resolver, name: str, args: list, kwargs: dict, span: Span,
                  frame: Frame) -> Any:
        return self._call_entry(REGISTRY.lookup("jnp", name), f"jnp.{name}", args, kwargs,
                                span, frame)


def _check_names(op: str, names: list[str], out_names: list[str], bad: Any) -> None:
    """Each axis named once a side; what each function lets the sides differ in."""
    for side in (names, out_names):
        twice = sorted({a for a in side if side.count(a) > 1})
        if twice:
            raise bad(f"each axis is named once a side ({' '.join(twice)})")
    gone = [a for a in names if a not in out_names]
    new = [a for a in out_names if a not in names]
    if op == "rearrange" and (gone or new):
        raise bad("both sides must name the same axes, each once "
                  f"({' '.join(sorted(set(gone) | set(new)))})")
    if op == "reduce" and new:
        raise bad(f"the right side names axes the left does not: {' '.join(new)}")
    if op == "repeat" and gone:
        raise bad(f"repeat keeps every axis of the left side: {' '.join(gone)} missing")


def _anonymous(right: list[list[str]], op: str, bad: Any) -> dict[str, int]:
    """`repeat`'s numbered new axes (`(h 2)`), renamed in place; sizes by name."""
    sizes: dict[str, int] = {}
    for group in right:
        for i, a in enumerate(group):
            if a.isdigit() and a != "1":
                if op != "repeat":
                    raise bad(f"a number other than 1 ({a}) is a new axis, which only "
                              "einops.repeat adds")
                group[i] = f"#{len(sizes)}"
                sizes[group[i]] = int(a)
    return sizes


def _expand_ellipsis(left: list[list[str]], right: list[list[str]], ndim: int, bad: Any
                     ) -> tuple[list[list[str]], list[list[str]]]:
    """`...` replaced by the axes it stands for: as many as the input has beyond the
    left side's other groups (each its own group; inside parentheses on the right, one
    group of them)."""
    on_left = sum(g.count("...") + g.count(_GROUPED) for g in left)
    on_right = sum(g.count("...") + g.count(_GROUPED) for g in right)
    if on_left > 1 or on_right > 1:
        raise bad("'...' appears at most once a side")
    if any(_GROUPED in g for g in left):
        raise bad("'...' may not be inside parentheses on the left side")
    if on_right and not on_left:
        raise bad("'...' on the right side needs '...' on the left")
    if not on_left:
        return left, right
    n = ndim - (len(left) - 1)
    if n < 0:
        raise bad(f"the left side names {len(left) - 1} axes besides '...', the input has "
                  f"{ndim}")
    axes = [f"...{i}" for i in range(n)]
    new_left: list[list[str]] = []
    for g in left:
        new_left += [[a] for a in axes] if g == ["..."] else [g]
    new_right: list[list[str]] = []
    for g in right:
        if g == ["..."]:
            new_right += [[a] for a in axes]
        elif _GROUPED in g:
            i = g.index(_GROUPED)
            new_right.append(g[:i] + axes + g[i + 1:])
        else:
            new_right.append(g)
    return new_left, new_right


#: `...` inside parentheses (`b (...)`), as `_groups` writes it.
_GROUPED = "(...)"


def _groups(text: str, bad: Any) -> list[list[str]]:
    """`b (h w) c` -> [["b"], ["h", "w"], ["c"]]; `()` is a group of none (size 1); `...`
    is a group `["..."]`, or `_GROUPED` inside parentheses."""
    groups: list[list[str]] = []
    current: list[str] | None = None
    for token in text.replace("(", " ( ").replace(")", " ) ").split():
        if token == "(":
            if current is not None:
                raise bad("groups do not nest")
            current = []
        elif token == ")":
            if current is None:
                raise bad("a ')' without its '('")
            groups.append(current)
            current = None
        elif token.isdigit() or token.isidentifier() or token == "...":
            if current is None:
                groups.append([token])
            else:
                current.append(_GROUPED if token == "..." else token)
        else:
            raise bad(f"{token!r} is not an axis name")
    if current is not None:
        raise bad("a '(' without its ')'")
    return groups


__all__ = ["REDUCTIONS", "RearrangeMixin"]
