"""Per-call cost: median microseconds per call of small models, five ways, one process.

    python bench/per_call.py [--rounds 101] [--calls 50]

For the batch-1 and batch-8 MLP, the CNN (batch 4) and the LM decode step
(one token, Linen's `cache` collection as state), each on the same device
arguments:

- Linen `jax.jit` (the twin in `bench/linen_zoo.py`, same variables);
- the generated `apply` under `jax.jit`: "jit", the reference of the ratios;
- `T.load()` of the fixed-shape target;
- `T.load()` of a bucketed target (`buckets={"batch": (1, 4, 8, 32)}`) called at
  a bucket's exact size (the LM decode step keeps a cache that carries the batch,
  so it has no bucketed twin);
- the raw deserialized executable (`jax.stages.Compiled.__call__`).

One more row, "mlp batch 3 (padded to 4)", is a request between bucket sizes: the
bucketed `load()` pads it on the host, runs the batch-4 executable and slices the
outputs back (jit there is the bucketed target's `apply` at batch 3; there is no
fixed-shape target, so its `load()` and raw columns are empty).

The targets are the zoo's modules (`models/mlp.py`, `models/cnn.py`,
`models/transformer.py`) with bench targets added, built through the real
pipeline into a temporary folder. Calls are timed in rounds of `--calls` calls
per way, the ways alternating within a round (and the first way rotating), so
load on the machine hits every way alike; the table shows medians over rounds,
and each ratio is the median over rounds of the ratio within a round.
Goal (README, "Serving"): load() / jit <= 1.0 on every row, bucketed within
10 % of fixed.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import linen_zoo  # noqa: E402
import numpy as np  # noqa: E402

from aotflax.driver import main as build_main  # noqa: E402

#: Bench targets appended to copies of the zoo's model files.
EXTRA = {
    "mlp.py": [
        'aot.target("pc_mlp_b1", MLP, x=aot.f32[1, 28, 28, 1])',
        'aot.target("pc_mlp_b8", MLP, x=aot.f32[8, 28, 28, 1])',
        'aot.target("pc_mlp_buckets", MLP, x=aot.f32["batch", 28, 28, 1], '
        'buckets={"batch": (1, 4, 8, 32)})',
    ],
    "cnn.py": [
        'aot.target("pc_cnn_buckets", CNN, x=aot.f32["batch", 28, 28, 1], '
        'buckets={"batch": (1, 4, 8, 32)})',
    ],
    "transformer.py": [],
}

#: row -> (module, fixed target or None, bucketed target or None, Linen twin, batch)
CASES = {
    "mlp batch 1": ("mlp", "pc_mlp_b1", "pc_mlp_buckets", "MLP", 1),
    "mlp batch 8": ("mlp", "pc_mlp_b8", "pc_mlp_buckets", "MLP", 8),
    "mlp batch 3 (padded to 4)": ("mlp", None, "pc_mlp_buckets", "MLP", 3),
    "cnn batch 4": ("cnn", "cnn_b4", "pc_cnn_buckets", "CNN", 4),
    "lm decode step": ("transformer", "lm_decode", None, "LM", 1),
}


def build(folder: Path) -> Any:
    """The zoo plus bench targets, built (source and artifacts) under `folder`; the package."""
    models = folder / "models"
    models.mkdir()
    for name, extra in EXTRA.items():
        text = (ROOT / "models" / name).read_text()
        (models / name).write_text(text + "\n# bench/per_call.py\n" + "\n".join(extra) + "\n")
    out = folder / "pc_generated"
    wanted = {t for case in CASES.values() for t in case[1:3] if t}
    args = [str(models), "-o", str(out)] + [a for t in sorted(wanted) for a in ("--target", t)]
    if build_main(args) != 0:
        sys.exit("the bench targets did not build")
    sys.path.insert(0, str(folder))
    import importlib

    return importlib.import_module("pc_generated")


def _raw(target: Any, folder: Path) -> Callable[..., Any]:
    """The fixed target's CPU executable, deserialized with jax's API and nothing else."""
    import json

    from jax.experimental import serialize_executable

    manifest = json.loads((folder / "manifest.json").read_text())
    payload = (folder / manifest["executables"]["cpu"]["file"]).read_bytes()
    args = (target.PARAM_SHAPES, target.STATE_SHAPES, *target.INPUTS.values())
    out = jax.eval_shape(target.apply_fn, *args)
    return serialize_executable.deserialize_and_load(
        payload, jax.tree_util.tree_structure((args, {})), jax.tree_util.tree_structure(out))


def _linen(kind: str, params: Any, state: Any) -> tuple[Callable[..., Any], Any]:
    """Linen's jitted apply and its variables (the generated target's, unchanged)."""
    if kind == "LM":
        model = linen_zoo.TransformerLM(decode=True)

        def step(variables: Any, tokens: Any) -> Any:
            return model.apply(variables, tokens, mutable=["cache"])

        return jax.jit(step), {"params": params, **state}
    model = getattr(linen_zoo, kind)()
    return jax.jit(lambda v, x: model.apply(v, x)), {"params": params}


def case(pkg: Any, out: Path, name: str) -> dict[str, tuple[Callable[..., Any], tuple]]:
    module, fixed_name, bucket_name, kind, batch = CASES[name]
    mod = getattr(__import__(f"{pkg.__name__}.{module}"), module)
    fixed = mod.TARGETS[fixed_name or bucket_name]
    params, state = fixed.init(jax.random.key(0))
    params, state = jax.device_put((params, state))
    spec = next(iter(fixed.INPUTS.values()))
    shape = (batch, *spec.shape[1:]) if fixed_name is None else spec.shape
    rng = np.random.default_rng(0)
    if np.issubdtype(spec.dtype, np.integer):
        x = jnp.asarray(rng.integers(0, 100, shape), spec.dtype)
    else:
        x = jnp.asarray(rng.standard_normal(shape), spec.dtype)
    artifacts = out / "artifacts"
    linen_fn, variables = _linen(kind, params, state)
    ways: dict[str, tuple[Callable[..., Any], tuple]] = {
        "linen jit": (linen_fn, (variables, x)),
        "apply jit": (jax.jit(fixed.apply), (params, state, x)),
    }
    if fixed_name is not None:
        ways["load fixed"] = (fixed.load(artifact_dir=artifacts), (params, state, x))
        ways["raw executable"] = (_raw(fixed, artifacts / module / fixed_name),
                                  (params, state, x))
    if bucket_name is not None:
        bucketed = mod.TARGETS[bucket_name]
        assert fixed_name is None or batch in bucketed.buckets["batch"]
        ways["load bucketed"] = (bucketed.load(artifact_dir=artifacts), (params, state, x))
    reference = ways["apply jit"][0](*ways["apply jit"][1])
    for way, (fn, args) in ways.items():  # warm up, and check every way agrees
        got = fn(*args)
        if way != "linen jit":
            np.testing.assert_allclose(np.asarray(got[0]), np.asarray(reference[0]),
                                       rtol=2e-5, atol=2e-5, err_msg=f"{name}: {way}")
    return ways


def time_ways(ways: dict[str, tuple[Callable[..., Any], tuple]], rounds: int,
              calls: int) -> tuple[dict[str, float], dict[str, float]]:
    """Microseconds per call, in `rounds` rounds of `calls` calls per way.

    **Returns:** `(medians, ratios)`: each way's median, and the median over rounds
    of its time over jit's in the same round (paired, so drift cancels).
    """
    names = list(ways)
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(rounds):
        order = names[r % len(names):] + names[:r % len(names)]
        for n in order:
            fn, args = ways[n]
            out = fn(*args)
            jax.block_until_ready(out)
            start = time.perf_counter()
            for _ in range(calls):
                out = fn(*args)
            jax.block_until_ready(out)
            times[n].append((time.perf_counter() - start) / calls * 1e6)
    medians = {n: statistics.median(ts) for n, ts in times.items()}
    jit = times["apply jit"]
    ratios = {n: statistics.median(a / b for a, b in zip(ts, jit)) for n, ts in times.items()}
    if "load bucketed" in times and "load fixed" in times:
        ratios["bucketed/fixed"] = statistics.median(
            a / b for a, b in zip(times["load bucketed"], times["load fixed"]))
    return medians, ratios


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rounds", type=int, default=101)
    p.add_argument("--calls", type=int, default=50)
    p.add_argument("cases", nargs="*", default=list(CASES))
    args = p.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="aotflax-per-call-"))
    try:
        pkg = build(folder)
        out = folder / "pc_generated"
        rows = []
        for name in args.cases:
            m, q = time_ways(case(pkg, out, name), args.rounds, args.calls)

            def cell(table: dict[str, float], way: str, digits: int) -> str:
                return f"{table[way]:.{digits}f}" if way in table else "-"

            rows.append((name, cell(m, "linen jit", 1), cell(m, "apply jit", 1),
                         cell(m, "load fixed", 1), cell(m, "load bucketed", 1),
                         cell(m, "raw executable", 1), cell(q, "load fixed", 2),
                         cell(q, "load bucketed", 2), cell(q, "bucketed/fixed", 2),
                         cell(q, "raw executable", 2), cell(q, "linen jit", 2)))
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    print(f"per call, microseconds (median of {args.rounds} rounds of {args.calls} calls; "
          "ratios: median over rounds of the ratio within a round; "
          f"jax {jax.__version__}, {jax.devices()[0].device_kind})")
    header = ("case", "linen jit", "apply jit", "load()", "load() bucketed", "raw executable",
              "load()/jit", "bucketed/jit", "bucketed/load()", "raw/jit", "linen/jit")
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for r in [header, *rows]:
        print("| " + " | ".join(str(x).ljust(w) for x, w in zip(r, widths)) + " |")


if __name__ == "__main__":
    main()
