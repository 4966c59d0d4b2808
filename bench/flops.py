"""FLOPs of the zoo: aotflax's static count against XLA's and Flax Linen's.

    python bench/flops.py [--targets resnet50_b1,lm_eval] [--no-linen]

For every fixed-shape target of `models/` (the forward pass, `apply`), the
table shows

- ours: `aotflax summary`'s total, counted at build time from the resolved
  program with the rules of `aotflax/ops/flops.py` (nothing runs);
- XLA: `cost_analysis()` of the generated `apply`, lowered (the HLO the
  generated code gives XLA) and compiled (after XLA's optimizations), as
  `flops` plus `transcendentals` (which XLA counts apart and we count as 1
  FLOP each), and the ratio ours / compiled;
- Linen: `flax.linen.tabulate(..., compute_flops=True)`'s count for the top
  module, for targets with a twin in `bench/linen_zoo.py` (XLA's analysis of
  the unoptimized lowering, without transcendentals).

`--by-op TARGET` explains one target's difference op by op: for each HLO
opcode, how many output elements (elementwise ops) or instructions
(convolutions, dots, reductions) the lowered and the compiled programs have.

Counts are deterministic, so one run is the measurement (no medians needed).
"""

from __future__ import annotations

import argparse
import collections
import math
import re
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from aotflax.artifacts import render_runtime  # noqa: E402
from aotflax.driver import front_end  # noqa: E402
from aotflax.summary import summarize_target  # noqa: E402
from aotflax.verify import import_generated  # noqa: E402

#: Linen twins (bench/linen_zoo.py) by target: (class, constructor kwargs).
TWINS: dict[str, tuple[str, dict[str, Any]]] = {
    "mlp_b8": ("MLP", {}),
    "cnn_b4": ("CNN", {}),
    "resnet18_eval": ("ResNet18", {"num_filters": 8, "num_classes": 10}),
    "resnet50_b1": ("ResNet50", {}),
    "resnet50_b8": ("ResNet50", {}),
    "lm_eval": ("TransformerLM", {}),
    "seq2seq": ("Seq2Seq", {}),
}


def build_zoo() -> tuple[list[Any], Any]:
    """Front end on models/ and the imported generated package."""
    report = front_end(sorted((ROOT / "models").glob("*.py")), ROOT / "models")
    if report.diagnostics:
        raise SystemExit("\n".join(d.render() for d in report.diagnostics))
    _, importer = import_generated({f.out_rel: f.text for f in report.files}, render_runtime())
    return report.files, importer


def lower(target: Any) -> Any:
    """The generated `apply` lowered for the target's shapes (a key argument if stochastic)."""
    specs = [target.param_shapes, target.state_shapes, *target.inputs.values()]
    if target.stochastic:
        def fn(params, state, key, *inputs):
            return target.apply_fn(params, state, *inputs, rng=key)
        specs.insert(2, jax.eval_shape(lambda: jax.random.key(0)))
    else:
        def fn(params, state, *inputs):
            return target.apply_fn(params, state, *inputs)
    return jax.jit(fn).lower(*specs)


def xla_flops(target: Any) -> tuple[float, float]:
    """flops + transcendentals of the generated `apply`, lowered and compiled."""
    lowered = lower(target)
    return _total(lowered.cost_analysis()), _total(lowered.compile().cost_analysis())


def _total(cost: Any) -> float:
    if isinstance(cost, list):  # older jax returned one dict per device
        cost = cost[0]
    return float(cost.get("flops", 0)) + float(cost.get("transcendentals", 0))


_ELEMENTWISE = {"add", "subtract", "multiply", "divide", "maximum", "minimum", "rsqrt",
                "compare", "select", "negate", "exponential", "log", "tanh", "logistic",
                "sqrt", "power", "convert", "and", "or", "not", "abs", "clamp"}
_COUNTED = {"convolution", "dot", "reduce", "reduce-window", "while", "sort", "gather"}
_INSTRUCTION = re.compile(r"=\s*\w+\[([\d,]*)\][^ ]*\s+([\w-]+)\(")


def census(hlo: str) -> collections.Counter:
    """Output elements of elementwise instructions and the number of others, by opcode."""
    counts: collections.Counter = collections.Counter()
    for line in hlo.splitlines():
        match = _INSTRUCTION.search(line)
        if match is None:
            continue
        dims, op = match.groups()
        if op in _ELEMENTWISE:
            counts[op] += math.prod(int(d) for d in dims.split(",") if d)
        elif op in _COUNTED:
            counts[f"{op} (instructions)"] += 1
    return counts


def by_op(target: Any) -> None:
    lowered = lower(target)
    before, after = census(lowered.as_text(dialect="hlo")), census(lowered.compile().as_text())
    print("| opcode | lowered | compiled | compiled - lowered |")
    print("| --- | --- | --- | --- |")
    for op in sorted(set(before) | set(after)):
        print(f"| {op} | {before[op]:,} | {after[op]:,} | {after[op] - before[op]:+,} |")


def linen_flops(name: str, target: Any) -> float | None:
    """The flops `flax.linen.tabulate(compute_flops=True)` reports for the top module."""
    if name not in TWINS:
        return None
    import flax.linen as nn
    import linen_zoo

    cls, kwargs = TWINS[name]
    model = getattr(linen_zoo, cls)(**kwargs)
    inputs = [jnp.zeros(s.shape, s.dtype) for s in target.inputs.values()]
    table = nn.tabulate(model, jax.random.key(0), compute_flops=True,
                        console_kwargs={"width": 1000, "force_terminal": False},
                        depth=1)(*inputs)
    return _top_flops(table)


def _top_flops(table: str) -> float | None:
    """The flops cell of the first body row of a tabulate table (the top module)."""
    header_line = next(line for line in table.splitlines() if "┃" in line and "flops" in line)
    header = [c.strip() for c in header_line.strip().strip("┃").split("┃")]
    column = header.index("flops")
    for line in (line for line in table.splitlines() if "│" in line):
        cells = [c.strip() for c in line.strip().strip("│").split("│")]
        if len(cells) > column and re.fullmatch(r"[\d,]+", cells[column]):
            return float(cells[column].replace(",", ""))
    return None


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--targets", help="comma-separated target names (default: all fixed-shape)")
    p.add_argument("--no-linen", action="store_true", help="skip Linen's tabulate")
    p.add_argument("--by-op", metavar="TARGET", help="explain one target op by op")
    args = p.parse_args()
    wanted = set(args.targets.split(",")) if args.targets else None
    files, importer = build_zoo()
    if args.by_op:
        f = next(f for f in files if any(t.name == args.by_op for t in f.program.targets))
        return by_op(importer(f.module).TARGETS[args.by_op])
    header = ("target", "ours", "XLA lowered", "XLA compiled", "ours / compiled",
              "Linen tabulate")
    rows = []
    for f in files:
        module = importer(f.module)
        for t in f.program.targets:
            if t.symbolic or (wanted and t.name not in wanted):
                continue
            ours = summarize_target([t], f.relpath).total.flops.const
            lowered, compiled = xla_flops(module.TARGETS[t.name])
            linen = None if args.no_linen else linen_flops(t.name, module.TARGETS[t.name])
            rows.append((t.name, f"{ours:,}", f"{lowered:,.0f}", f"{compiled:,.0f}",
                         f"{ours / compiled:.4f}", "-" if linen is None else f"{linen:,.0f}"))
            print(f"  measured {t.name}", file=sys.stderr, flush=True)
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    print("| " + " | ".join(h.ljust(w) for h, w in zip(header, widths)) + " |")
    print("| " + " | ".join("-" * w for w in widths) + " |")
    for r in rows:
        print("| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |")


if __name__ == "__main__":
    main()
