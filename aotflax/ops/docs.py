"""The operation table as a reference page: `aotflax --list-ops`, `docs/operations.md`.

Generated from the registry, so it cannot drift: every entry with its
signature, what it does and what it costs (`flops.py`), grouped by the module
of `ops/` that defines it.  `tests/test_ops_reference.py` checks that the
committed page is this text.
"""

from __future__ import annotations

import sys

from . import flops
from .registry import REGISTRY, Entry, qualname

#: Modules of ops/ in the order the page lists them.
_GROUPS = ("elementwise", "arrays", "operators", "slicing", "special", "convolution",
           "layers", "linear", "normalization", "attention", "recurrent", "stochastic")

COMMAND = "aotflax --list-ops > docs/operations.md"


def group_of(entry: Entry) -> str:
    """The ops/ module an entry belongs to (methods on arrays live with the operators)."""
    if entry.kind == "method":
        return "operators"
    return entry.rule.__module__.rsplit(".", 1)[-1]


def reference() -> str:
    """The whole page (Markdown)."""
    lines = [
        "# Operation table",
        "",
        f"Generated from the registry of `aotflax/ops/` by `{COMMAND}`; a test keeps it "
        "fresh. Every name below is what a model file may call (`nn.Dense`, `jnp.mean`, "
        "`x.reshape`, `x + y`); anything else is a located error. The FLOPs column is the "
        "rule `aotflax summary` counts with (`aotflax/ops/flops.py`: a multiply-add is 2 "
        "FLOPs; n input and m output elements).",
        "",
    ]
    entries = REGISTRY.unique()
    unknown = sorted({group_of(e) for e in entries} - set(_GROUPS))
    for group in (*_GROUPS, *unknown):
        members = [e for e in entries if group_of(e) == group]
        if not members:
            continue
        module = sys.modules.get(f"{__package__}.{group}")
        title = (module.__doc__ or group).strip().splitlines()[0] if module else group
        lines += [f"## `ops/{group}.py`", "", title, "",
                  "| operation | signature | FLOPs | what it does |", "| --- | --- | --- | --- |"]
        lines += [_row(e) for e in members]
        lines.append("")
    lines += ["## Layer statements", "",
              "Layers (and the functions with templates of their own) count each statement they "
              "emit by its template under `templates/`:", "",
              "| template | FLOPs |", "| --- | --- |"]
    lines += [f"| `{name}` | {_cell(rule.text)} |" for name, rule in flops.TEMPLATES.items()]
    lines += ["", f"{len(entries)} operations."]
    return "\n".join(lines) + "\n"


def _row(entry: Entry) -> str:
    names = [_spelled(entry, ns) for ns in entry.namespaces]
    signature = entry.signature.describe()
    rule = flops.RULES.get(qualname(entry))
    cost = rule.text if rule is not None else "(no rule)"
    if rule is flops.BY_TEMPLATE and entry.template in flops.TEMPLATES:
        cost = f"per statement (below); `{entry.template}`: {flops.TEMPLATES[entry.template].text}"
    doc = entry.doc + (f" (Linen: `{entry.linen_name}_N`)" if entry.kind == "layer"
                       and entry.linen_name else "")
    return "| " + " | ".join(_cell(c) for c in (
        ", ".join(f"`{n}`" for n in names), f"`({signature})`" if signature else "`()`", cost,
        doc)) + " |"


def _spelled(entry: Entry, namespace: str) -> str:
    """How a model writes the call: `jnp.mean`, `x.reshape`, `operator.add`."""
    if namespace == "array":
        return f"x.{entry.name}"
    return f"{namespace}.{entry.name}"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


__all__ = ["COMMAND", "group_of", "reference"]
