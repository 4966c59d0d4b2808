"""Cold start: time to first output in a fresh process, four ways, for zoo targets.

(a) Flax Linen, `jax.jit` (trace + compile in the process);
(b) Flax Linen, `jax.jit` with a warm persistent compilation cache;
(c) the generated module + `T.load()` (validated executable);
(d) the floor: a process that imports jax, deserializes the same executable
    bytes and runs it, with no flax and no aotflax.

Every process loads the same parameters from one .npz file, so only start-up
differs. Prints the median of several runs per way and each way's overhead
over the floor (median minus the floor's median).

Run after building the zoo: `python aot_build.py models/ && python bench/cold_start.py`.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

#: name -> (generated module, target, Linen model expression in bench/linen_zoo.py, kind).
#: kind "apply" runs inference; "train" runs one optimizer step (loss, grads, update).
CASES = {
    "mlp_b8": ("mlp", "mlp_b8", "linen_zoo.MLP()", "apply"),
    "cnn_b4": ("cnn", "cnn_b4", "linen_zoo.CNN()", "apply"),
    "resnet50_b1": ("resnet", "resnet50_b1", "linen_zoo.ResNet50()", "apply"),
    "resnet18_train_step": ("resnet", "resnet18_train_step", "linen_zoo.ResNet18(train=True)",
                            "train"),
    "lm_eval": ("transformer", "lm_eval", "linen_zoo.TransformerLM()", "apply"),
}

_LOAD_PARAMS = """
import numpy as np
def _tree(path):
    data = np.load(path)
    out = {}
    for key in data.files:
        node = out
        parts = key.split("/")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = data[key]
    return out
bundle = _tree(PARAMS)
params, state, inputs = bundle["params"], bundle.get("state", {}), bundle["inputs"]
inputs = [inputs[k] for k in sorted(inputs)]
opt_flat = [bundle["opt"][k] for k in sorted(bundle.get("opt", {}))]
"""

# Linen's training step: the same loss and optimizer as models/resnet.py's train target.
_LINEN_TRAIN = """
import jax.numpy as jnp, optax
model = {factory}
tx = optax.sgd(0.1, momentum=0.9)
def loss_fn(params, batch_stats, x, labels):
    logits, updates = model.apply({{"params": params, "batch_stats": batch_stats}}, x,
                                  mutable=["batch_stats"])
    logp = jax.nn.log_softmax(logits)
    loss = -jnp.mean(jnp.sum(jax.nn.one_hot(labels, logits.shape[-1]) * logp, axis=-1))
    return loss, updates
@jax.jit
def step(params, batch_stats, opt_state, x, labels):
    (loss, upd), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, batch_stats, x,
                                                                  labels)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), upd, opt_state, loss
opt_state = jax.tree_util.tree_unflatten(
    jax.tree_util.tree_structure(jax.eval_shape(tx.init, params)), opt_flat)
y = step(params, state["batch_stats"], opt_state, *inputs)
"""
_LINEN_APPLY = """
model = {factory}
y = jax.jit(lambda v, *x: model.apply(v, *x))({{"params": params, **state}}, *inputs)
"""
_CACHE = """
jax.config.update("jax_compilation_cache_dir", CACHE)
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
"""

CHILD = {
    "a_linen_jit": """
import time; t0 = time.perf_counter()
import jax, sys
sys.path.insert(0, BENCH)
import linen_zoo
{load}
{linen}
jax.block_until_ready(y)
print("ELAPSED", time.perf_counter() - t0)
""",
    "b_linen_cache": """
import time; t0 = time.perf_counter()
import jax, sys
{cache}
sys.path.insert(0, BENCH)
import linen_zoo
{load}
{linen}
jax.block_until_ready(y)
print("ELAPSED", time.perf_counter() - t0)
""",
    "c_generated_load": """
import time; t0 = time.perf_counter()
import jax, sys
sys.path.insert(0, ROOT)
from generated import {module}
{load}
target = {module}.{target}
if KIND == "train":
    run = target.load_train_step()
    y = run(params, state, opt_flat, *inputs)  # a checkpoint's flat optimizer leaves
else:
    run = target.load()
    y = run(params, state, *inputs)
jax.block_until_ready(y)
assert "flax" not in sys.modules and "aotflax" not in sys.modules
print("ELAPSED", time.perf_counter() - t0)
""",
    "d_floor": """
import time; t0 = time.perf_counter()
import jax
from jax.experimental import serialize_executable
{load}
payload = open(EXE, "rb").read()
if KIND == "train":
    args = (params, {{"state": state, "opt_state": tuple(opt_flat)}}, *inputs)
else:
    args = (params, state, *inputs)
in_tree = jax.tree_util.tree_structure((args, {{}}))
out_tree = jax.tree_util.tree_structure(OUT_TEMPLATE)
run = serialize_executable.deserialize_and_load(payload, in_tree, out_tree)
y = run(*args)
jax.block_until_ready(y)
print("ELAPSED", time.perf_counter() - t0)
""",
}


def _save_bundle(module: str, target: str, kind: str, path: Path) -> dict:
    """Init the target's parameters once and save them with its inputs; facts for the floor."""
    import jax
    import numpy as np

    sys.path.insert(0, str(ROOT))
    mod = __import__(f"generated.{module}", fromlist=[target])
    t = getattr(mod, target)
    params, state = t.init(jax.random.key(0))
    specs = {**t.INPUTS, **(t.BATCH if kind == "train" else {})}
    rng = np.random.default_rng(0)
    inputs = {}
    for i, spec in enumerate(specs.values()):
        if np.issubdtype(spec.dtype, np.integer):
            inputs[f"{i:02d}"] = rng.integers(0, 10, spec.shape).astype(spec.dtype)
        else:
            inputs[f"{i:02d}"] = rng.standard_normal(spec.shape).astype(spec.dtype)
    opt = ({f"{i:03d}": leaf for i, leaf in enumerate(jax.tree_util.tree_leaves(
        t.init_opt(params)))} if kind == "train" else {})
    flat = {}
    for prefix, tree in (("params", params), ("state", state), ("inputs", inputs),
                         ("opt", opt)):
        for kp, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
            flat["/".join([prefix, *(str(k.key) for k in kp)])] = np.asarray(leaf)
    np.savez(path, **flat)
    view = t.train_view() if kind == "train" else t
    out = jax.eval_shape(view.apply_fn, view.PARAM_SHAPES, view.STATE_SHAPES,
                         *view.INPUTS.values())
    name = view.name
    manifest = json.loads((ROOT / "generated/artifacts" / module / name /
                           "manifest.json").read_text())
    exe = ROOT / "generated/artifacts" / module / name / manifest["executables"]["cpu"]["file"]
    return {"EXE": str(exe), "OUT_TEMPLATE": jax.tree_util.tree_map(lambda _: 0, out)}


def _run(code: str) -> float:
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, "JAX_PLATFORMS": "cpu"})
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-2000:])
    return wall


def bench_case(name: str, runs: int, ways: Sequence[str] = tuple(CHILD)) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="aotflax-cold-") as folder:
        return _bench_case(name, runs, ways, Path(folder))


def _bench_case(name: str, runs: int, ways: Sequence[str], tmp: Path) -> dict[str, float]:
    module, target, factory, kind = CASES[name]
    bundle = tmp / "bundle.npz"
    facts = _save_bundle(module, target, kind, bundle)
    consts = (f"ROOT = {str(ROOT)!r}\nBENCH = {str(ROOT / 'bench')!r}\n"
              f"PARAMS = {str(bundle)!r}\nCACHE = {str(tmp / 'cache')!r}\nKIND = {kind!r}\n"
              + "".join(f"{k} = {v!r}\n" for k, v in facts.items()))
    linen = (_LINEN_TRAIN if kind == "train" else _LINEN_APPLY).format(factory=factory)
    codes = {way: consts + body.format(load=_LOAD_PARAMS, linen=linen, cache=_CACHE,
                                       module=module, target=target)
             for way, body in CHILD.items() if way in ways}
    if "b_linen_cache" in codes:
        _run(codes["b_linen_cache"])  # populate the persistent cache once
    times: dict[str, list[float]] = {way: [] for way in codes}
    for _ in range(runs):
        for way, code in codes.items():  # interleaved, so drift hits every way alike
            times[way].append(_run(code))
    return {way: statistics.median(ts) for way, ts in times.items()}


def _ratio(num: float, den: float) -> str:
    """Overhead ratio; 'n/a' when the reference is not slower than the floor (noise)."""
    return f"{num / den:.3f}" if den > 0.01 else "n/a"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--floor-only", action="store_true",
                   help="time only (c) load() and (d) the floor: the (c)/(d) goal, quickly")
    p.add_argument("cases", nargs="*", default=[c for c in CASES])
    args = p.parse_args()
    print(f"cold start, fresh processes, median of {args.runs} (seconds; overhead = median "
          "minus the floor's median)")
    header = ("target", "(a) linen jit", "(b) linen cache", "(c) aotflax load", "(d) floor",
              "(c)/(d)", "(c)-(d) vs (a)-(d)", "(c)-(d) vs (b)-(d)")
    rows = []
    for name in args.cases:
        module = CASES[name][0]
        if not (ROOT / "generated" / f"{module}.py").exists():
            print(f"skipping {name}: generated/{module}.py missing (run aot_build.py)")
            continue
        ways = ("c_generated_load", "d_floor") if args.floor_only else tuple(CHILD)
        m = bench_case(name, args.runs, ways)
        nan = float("nan")
        a, b, c, d = (m.get("a_linen_jit", nan), m.get("b_linen_cache", nan),
                      m["c_generated_load"], m["d_floor"])
        rows.append((name, f"{a:.3f}", f"{b:.3f}", f"{c:.3f}", f"{d:.3f}", f"{c / d:.3f}",
                     _ratio(c - d, a - d), _ratio(c - d, b - d)))
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for r in [header, *rows]:
        print("| " + " | ".join(str(x).ljust(w) for x, w in zip(r, widths)) + " |")


if __name__ == "__main__":
    main()
