"""Method targets take the module's whole parameter tree, as Linen's `apply(..., method=)`.

A target declared with `method="generate"` resolves only what that method runs,
so by itself it would know only the parameters the method uses (a VAE's decoder).
Linen's `init` runs the module's `__call__` and gives the whole tree, and
`apply(variables, z, method=...)` takes that tree; so does the generated target:
its `PARAM_SHAPES` and `init` are the whole tree of another target of the same
module in the file that holds every parameter the method uses (its `apply`
target first, then a training target), the parts it does not use ignored by
`apply` and `load()`.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from ..program import TargetProgram

__all__ = ["full_trees"]


def full_trees(targets: list[TargetProgram], decls: list[Any]) -> list[TargetProgram]:
    """The targets, each `method=` target's parameters the whole tree of its module's first
    other target that holds every parameter the method uses (apply targets first, in
    declaration order; a sibling whose parameters disagree with the method's on a shared
    path is a different configuration, skipped). Without one, the method's own tree.

    **Arguments:** `targets`: resolved targets; `decls`: their `TargetDecl`s (all of
    them, by name).
    """
    by_name = {d.name: d for d in decls}

    def module_of(t: TargetProgram) -> Any:
        decl = by_name.get(t.name)
        return None if decl is None else decl.module.module

    out = []
    for t in targets:
        decl = by_name.get(t.name)
        if decl is None or decl.method == "apply":
            out.append(t)
            continue
        siblings = [s for s in targets if s is not t and module_of(s) is module_of(t)]
        siblings.sort(key=lambda s: by_name[s.name].method != "apply")
        own = {p.path: p for p in t.params}
        whole = None
        for s in siblings:
            theirs = {p.path: p for p in s.params}
            if len(theirs) > len(own) and all(
                    k in theirs and (p.shape, p.dtype) == (theirs[k].shape, theirs[k].dtype)
                    for k, p in own.items()):
                whole = s
                break
        # the sibling's whole tree, whose variable tree `init` walks (`variables_of`)
        out.append(t if whole is None else replace(t, params=whole.params,
                                                   variables_of=whole.name))
    return out
