"""Method targets take the module's whole parameter tree, as Linen's `apply(..., method=)`.

A target declared with `method="generate"` resolves only what that method runs,
so by itself it would know only the parameters the method uses (a VAE's decoder).
Linen's `init` runs the module's `__call__` and gives the whole tree, and
`apply(variables, z, method=...)` takes that tree; so does the generated target:
its `PARAM_SHAPES` and `init` are the union of its own parameters and those of
the file's other targets of the same module (its `apply` target, its training
target), the parts it does not use ignored by `apply` and `load()`.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from ..program import ParamDecl, TargetProgram

__all__ = ["full_trees"]


def full_trees(targets: list[TargetProgram], decls: list[Any]) -> list[TargetProgram]:
    """The targets, each `method=` target's parameters completed from its module's other
    targets (apply targets first, in declaration order; a sibling whose parameters
    disagree with the method's on a shared path is a different configuration, skipped).

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
        merged: dict[tuple[str, ...], ParamDecl] = {}
        for s in siblings:
            theirs = {p.path: p for p in s.params}
            if any((p.shape, p.dtype) != (theirs[k].shape, theirs[k].dtype)
                   for k, p in {**own, **merged}.items() if k in theirs):
                continue
            for k, p in theirs.items():
                merged.setdefault(k, p)
        for k, p in own.items():
            merged.setdefault(k, p)
        if len(merged) <= len(own):
            out.append(t)
            continue
        # the sibling whose tree is the whole merged tree gives `init` its variable tree
        whole = next((s.name for s in siblings
                      if set(merged) == {p.path for p in s.params}), None)
        out.append(replace(t, params=tuple(merged.values()), variables_of=whole))
    return out
