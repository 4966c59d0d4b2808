"""Steady state: median step time of generated ResNet `apply` against Flax Linen, both jitted.

    python bench/steady_state.py [--models resnet18,resnet50] [--modes train,eval]
                                 [--batch 8] [--image 64] [--iters 15] [--filters 64]

For each model and mode, the model file `models/resnet.py` is built through
the real front end (parse, resolve, emit) with one extra target of the
requested shape, and the generated module is imported.  Its `apply_fn` and the
Linen twin in `bench/linen_zoo.py` (same structure and names, so the same
variables) are jitted, compiled, checked to agree, then timed alternately,
one call each per round, so load on the machine affects both alike.  The
table reports medians and the ratio generated / Linen (goal: <= 1.00, since
the same computation should give the same HLO and the same speed).

`train` runs the training forward pass (batch statistics computed and
`batch_stats` returned updated); `eval` reads the running statistics (and,
as every generated `apply`, returns them in `new_state`: XLA copies those few
vectors, which Linen's `apply` without `mutable` does not return).  "same ops"
says whether both lowerings contain the same StableHLO operations, counted
by kind; "flops" is XLA's cost analysis of the compiled executables.
"""

from __future__ import annotations

import argparse
import itertools
import re
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import linen_zoo  # noqa: E402
import numpy as np  # noqa: E402

from aotflax.artifacts import render_runtime  # noqa: E402
from aotflax.driver import front_end  # noqa: E402
from aotflax.verify import import_generated  # noqa: E402

MODEL = ROOT / "models" / "resnet.py"
DSL_NAMES = {"resnet18": "ResNet18", "resnet50": "ResNet50"}
#: Sequence models of the zoo: generated target and its Linen twin (inference).
SEQUENCE = {"lm": ("transformer.py", "lm_eval", "TransformerLM"),
            "lstm": ("seq2seq.py", "seq2seq", "Seq2Seq")}


def build_targets(cases: list[tuple[str, str]], batch: int, image: int, filters: int) -> Any:
    """The generated module of models/resnet.py plus one bench target per (model, mode)."""
    lines = [MODEL.read_text(), "", "# bench/steady_state.py targets"]
    for model, mode in cases:
        lines.append(
            f'aot.target("bench_{model}_{mode}", {DSL_NAMES[model]}.partial('
            f"train={mode == 'train'}, num_filters={filters}), "
            f"x=aot.f32[{batch}, {image}, {image}, 3])")
    with tempfile.TemporaryDirectory(prefix="aotflax-bench-") as folder:
        path = Path(folder) / "resnet_bench.py"
        path.write_text("\n".join(lines) + "\n")
        report = front_end([path], Path(folder))
    if report.diagnostics:
        sys.exit("\n".join(d.render() for d in report.diagnostics))
    result = report.files[0]
    _, importer = import_generated({result.out_rel: result.text}, render_runtime())
    return importer(result.module)


def _variables(target: Any) -> tuple[Any, Any]:
    """Random parameters and statistics shaped like `init`'s (numpy: nothing to compile)."""
    rng = np.random.default_rng(0)

    def draw(path: Any, s: Any) -> Any:
        if path[-1].key == "var":
            return jnp.asarray(rng.uniform(0.5, 1.5, s.shape), s.dtype)
        return jnp.asarray(rng.normal(0.0, 0.05, s.shape), s.dtype)

    shapes = jax.eval_shape(target.init_fn, jax.random.key(0))
    return jax.tree_util.tree_map_with_path(draw, shapes)


def _flops(compiled: Any) -> float:
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    return float((cost or {}).get("flops", float("nan")))


def _compiled(fn: Callable, *args: Any) -> tuple[Any, float, Counter]:
    """The compiled function, its compile time and its StableHLO operation counts."""
    start = time.perf_counter()
    lowered = jax.jit(fn).lower(*args)
    compiled = lowered.compile()
    ops = Counter(re.findall(r"\b(stablehlo\.[a-z_]+)", lowered.as_text()))
    return compiled, time.perf_counter() - start, ops


def _time(fn: Callable, *args: Any) -> float:
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    return time.perf_counter() - start


def bench_case(module: Any, model: str, mode: str, filters: int, iters: int,
               warmup: int) -> dict[str, Any]:
    target = module.TARGETS[f"bench_{model}_{mode}"]
    train = mode == "train"
    params, state = _variables(target)
    spec = next(iter(target.INPUTS.values()))
    x = jnp.asarray(np.random.default_rng(0).standard_normal(spec.shape), spec.dtype)
    linen = getattr(linen_zoo, DSL_NAMES[model])(train=train, num_filters=filters)
    variables = {"params": params, **state}

    def linen_apply(v, x):
        if train:
            return linen.apply(v, x, mutable=["batch_stats"])
        return linen.apply(v, x)

    gen_fn, gen_compile, gen_ops = _compiled(target.apply_fn, params, state, x)
    lin_fn, lin_compile, lin_ops = _compiled(linen_apply, variables, x)
    gen_out, lin_out = gen_fn(params, state, x), lin_fn(variables, x)
    gen_y = gen_out[0]
    lin_y = lin_out[0] if train else lin_out
    diff = float(jnp.max(jnp.abs(gen_y - lin_y)) / (jnp.max(jnp.abs(lin_y)) + 1e-30))
    if train:
        stats = jax.tree_util.tree_map(lambda a, b: float(jnp.max(jnp.abs(a - b))),
                                       gen_out[1]["batch_stats"], lin_out[1]["batch_stats"])
        diff = max([diff, *jax.tree_util.tree_leaves(stats)])
    for _ in range(warmup):
        _time(gen_fn, params, state, x)
        _time(lin_fn, variables, x)
    gen_t, lin_t = [], []
    for i in range(iters):  # alternate, and alternate who goes first
        pair = [(gen_t, gen_fn, (params, state, x)), (lin_t, lin_fn, (variables, x))]
        for times, fn, args in pair if i % 2 == 0 else pair[::-1]:
            times.append(_time(fn, *args))
    gen_med, lin_med = statistics.median(gen_t), statistics.median(lin_t)
    return {"model": model, "mode": mode, "gen_ms": 1e3 * gen_med, "linen_ms": 1e3 * lin_med,
            "ratio": gen_med / lin_med, "gen_compile": gen_compile, "linen_compile": lin_compile,
            "max_rel_diff": diff, "flops_ratio": _flops(gen_fn) / _flops(lin_fn),
            "same_ops": "yes" if gen_ops == lin_ops else "no"}


def bench_sequence(name: str, iters: int, warmup: int) -> dict[str, Any]:
    """A zoo sequence model's generated `apply` against its Linen twin."""
    file, target_name, twin = SEQUENCE[name]
    path = ROOT / "models" / file
    report = front_end([path], path.parent)
    result = report.files[0]
    _, importer = import_generated({result.out_rel: result.text}, render_runtime())
    target = importer(result.module).TARGETS[target_name]
    params, state = _variables(target)
    rng = np.random.default_rng(0)
    inputs = [jnp.asarray(rng.integers(0, 32, s.shape), s.dtype) for s in target.INPUTS.values()]
    linen = getattr(linen_zoo, twin)()
    variables = {"params": params}

    def gen(p, s, *x):
        return target.apply_fn(p, s, *x)[0]

    gen_fn, gen_compile, _ = _compiled(gen, params, state, *inputs)
    lin_fn, lin_compile, _ = _compiled(linen.apply, variables, *inputs)
    gen_y, lin_y = gen_fn(params, state, *inputs), lin_fn(variables, *inputs)
    diff = float(jnp.max(jnp.abs(gen_y - lin_y)) / (jnp.max(jnp.abs(lin_y)) + 1e-30))
    for _ in range(warmup):
        _time(gen_fn, params, state, *inputs)
        _time(lin_fn, variables, *inputs)
    gen_t, lin_t = [], []
    for i in range(iters):
        pair = [(gen_t, gen_fn, (params, state, *inputs)), (lin_t, lin_fn, (variables, *inputs))]
        for times, fn, args in pair if i % 2 == 0 else pair[::-1]:
            times.append(_time(fn, *args))
    gen_med, lin_med = statistics.median(gen_t), statistics.median(lin_t)
    return {"model": name, "mode": "eval", "gen_ms": 1e3 * gen_med, "linen_ms": 1e3 * lin_med,
            "ratio": gen_med / lin_med, "gen_compile": gen_compile, "linen_compile": lin_compile,
            "max_rel_diff": diff, "flops_ratio": _flops(gen_fn) / _flops(lin_fn),
            "same_ops": "n/a"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default="resnet18,resnet50,lm,lstm")
    parser.add_argument("--modes", default="train,eval")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--image", type=int, default=64, help="image height and width")
    parser.add_argument("--filters", type=int, default=64, help="num_filters (64: full width)")
    parser.add_argument("--iters", type=int, default=21, help="timed calls per side")
    parser.add_argument("--warmup", type=int, default=2)
    args = parser.parse_args(argv)
    models = [m for m in args.models.split(",") if m]
    modes = [m for m in args.modes.split(",") if m]
    bad = [m for m in models if m not in DSL_NAMES and m not in SEQUENCE] + [m for m in modes
                                                       if m not in ("train", "eval")]
    if bad:
        parser.error(f"unknown model or mode {bad[0]!r}")
    cases = [(m, mode) for m in models if m in DSL_NAMES for mode in modes]
    start = time.perf_counter()
    module = build_targets(cases, args.batch, args.image, args.filters)
    print(f"built {len(cases)} bench target(s) in {time.perf_counter() - start:.1f} s; "
          f"jax {jax.__version__} on {jax.devices()[0].device_kind}, batch {args.batch}, "
          f"{args.image}x{args.image} images, num_filters {args.filters}, "
          f"median of {args.iters} calls", flush=True)
    header = (f"{'model':<10} {'mode':<6} {'generated ms':>13} {'linen ms':>10} {'ratio':>7} "
              f"{'compile gen/linen s':>20} {'flops gen/linen':>16} {'same ops':>9} "
              f"{'max rel diff':>13}")
    print(header)
    print("-" * len(header))
    results = (bench_case(module, model, mode, args.filters, args.iters, args.warmup)
               for model, mode in cases)
    sequence = (bench_sequence(m, args.iters, args.warmup) for m in models if m in SEQUENCE)
    for r in itertools.chain(results, sequence):
        print(f"{r['model']:<10} {r['mode']:<6} {r['gen_ms']:>13.2f} {r['linen_ms']:>10.2f} "
              f"{r['ratio']:>7.3f} {r['gen_compile']:>9.1f} / {r['linen_compile']:<8.1f} "
              f"{r['flops_ratio']:>16.3f} {r['same_ops']:>9} {r['max_rel_diff']:>13.1e}",
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
