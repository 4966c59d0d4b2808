"""einops' `rearrange(x, "b h w c -> b (h w) c", ...)`, as the reshape and transpose it is.

Vision transformers and MLP-Mixers of 2021 wrote their patch and token shuffles with
einops.  A pattern names the axes of each side; parentheses compose axes into one, `1`
is an axis of size 1, and sizes of decomposed axes come from the keywords (`h=2`), at
most one unknown per group.  The call is emitted as the operations it stands for
(`jnp.reshape` to the elementary axes where the input decomposes, `jnp.transpose` to the
output's order, `jnp.reshape` to its groups), each only where it changes something.
einops itself is never imported; `...` is not taken (a located error).
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


class RearrangeMixin:
    """`einops.rearrange` over arrays."""

    def _rearrange(self: Resolver, args: list, kwargs: dict, span: Span, frame: Frame) -> Any:
        if len(args) != 2 or not isinstance(args[1], str):
            raise self.error("AOT304", "einops.rearrange takes an array and a pattern string "
                             "(axis sizes as keywords)", span)
        x, pattern = args
        if isinstance(x, (list, tuple)) and x and all(isinstance(t, Tensor) for t in x):
            x = self._call_entry(REGISTRY.lookup("jnp", "stack"), "jnp.stack", [list(x)], {},
                                 span, frame)  # a list of arrays is stacked first, as einops does
        if not isinstance(x, Tensor):
            raise self.error("AOT201", f"einops.rearrange takes an array, got "
                             f"{describe_value(x)}", span)
        for k, v in kwargs.items():
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise self.error("AOT203", f"einops.rearrange: axis size {k} must be a "
                                 f"positive int, got {describe_value(v)}", span)

        def bad(message: str) -> Exception:
            return self.error("AOT203", f"einops.rearrange {pattern!r}: {message}", span)

        if pattern.count("->") != 1:
            raise bad("a pattern is 'left -> right'")
        left_text, right_text = pattern.split("->")
        left, right = _groups(left_text, bad), _groups(right_text, bad)
        if len(left) != x.ndim:
            raise bad(f"the left side names {len(left)} axes, the input {x.describe()} has "
                      f"{x.ndim}")
        sizes: dict[str, int] = {}
        for group, dim in zip(left, x.shape):
            known = math.prod(kwargs.get(a, 1) for a in group if a != "1")
            unknown = [a for a in group if a != "1" and a not in kwargs]
            if len(unknown) > 1:
                raise bad(f"give the sizes of all but one of ({' '.join(group)})")
            if unknown:
                if dim % known:
                    raise self.error("AOT210", f"einops.rearrange {pattern!r}: an axis of size "
                                     f"{dim} does not split into ({' '.join(group)})", span)
                sizes[unknown[0]] = dim // known
            elif known != dim:
                raise self.error("AOT210", f"einops.rearrange {pattern!r}: ({' '.join(group)})"
                                 f" is {known}, the input's axis is {dim}", span)
            sizes.update({a: kwargs[a] for a in group if a in kwargs})
        names = [a for g in left for a in g if a != "1"]
        out_names = [a for g in right for a in g if a != "1"]
        if sorted(names) != sorted(out_names):
            raise bad("both sides must name the same axes, each once "
                      f"({' '.join(sorted(set(names) ^ set(out_names))) or 'repeated'})")
        unused = set(kwargs) - set(names)
        if unused:
            raise bad(f"sizes given for axes it does not name: {', '.join(sorted(unused))}")
        value: Any = x
        elementary = tuple(sizes[a] for a in names)
        if elementary != tuple(x.shape):
            value = self._call_entry(REGISTRY.lookup("jnp", "reshape"), "jnp.reshape",
                                     [value, elementary], {}, span, frame)
        perm = tuple(names.index(a) for a in out_names)
        if perm != tuple(range(len(perm))):
            value = self._call_entry(REGISTRY.lookup("jnp", "transpose"), "jnp.transpose",
                                     [value, perm], {}, span, frame)
        out = tuple(math.prod(sizes.get(a, 1) for a in g) for g in right)
        if out != tuple(value.shape):
            value = self._call_entry(REGISTRY.lookup("jnp", "reshape"), "jnp.reshape",
                                     [value, out], {}, span, frame)
        return value


def _groups(text: str, bad: Any) -> list[list[str]]:
    """`b (h w) c` -> [["b"], ["h", "w"], ["c"]]; `()` is a group of none (size 1)."""
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
        elif token == "1" or token.isidentifier():
            if current is None:
                groups.append([token])
            else:
                current.append(token)
        elif token == "...":
            raise bad("'...' is not supported here; name the axes")
        else:
            raise bad(f"{token!r} is not an axis name")
    if current is not None:
        raise bad("a '(' without its ')'")
    return groups


__all__ = ["RearrangeMixin"]
