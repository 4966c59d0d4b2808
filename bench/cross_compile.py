"""Cross-compiling on the CPU build host: what a TPU (or GPU) executable costs to build here.

For each zoo target, the median of several runs of `jax.jit(...).lower(...).compile()`
of the target's artifact function (`aotflax.compile.boundary_function`), for
this host's CPU and for the compile-only devices of a TPU topology (libtpu,
`aotflax install-toolchain tpu`) or a GPU target (jax's CUDA plugin,
`aotflax install-toolchain cuda`), plus the serialized executable's size.
The last column is what the target host saves: its time to first output with
the executable; it needs that host, so here it says "not measured".

Run after building the zoo's sources:
`python aot_build.py models/ --no-compile && python bench/cross_compile.py --tpu v5e:2x2`.
"""

from __future__ import annotations

import argparse
import importlib
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import jax
from jax.experimental import serialize_executable

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from aotflax import compile as aot_compile  # noqa: E402
from aotflax import toolchains  # noqa: E402

CASES = [
    ("mlp", "mlp_b8"),
    ("cnn", "cnn_b4"),
    ("resnet", "resnet18_eval"),
    ("seq2seq", "seq2seq"),
    ("transformer", "lm_eval"),
    ("resnet", "resnet18_train_step"),
]


def _specs(target: Any, device: Any) -> list[Any]:
    """The artifact function's arguments as specs placed on one device."""
    impl = str(jax.config.jax_default_prng_impl)
    key = None
    if target.stochastic:
        data = jax.eval_shape(lambda: jax.random.key_data(jax.random.key(0, impl=impl)))
        key = jax.ShapeDtypeStruct(data.shape, data.dtype)
    specs = [target.param_shapes, target.state_shapes,
             *(jax.ShapeDtypeStruct(s.shape, s.dtype) for s in target.inputs.values())]
    specs += [key] if key is not None else []
    sharding = jax.sharding.SingleDeviceSharding(device)
    return jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sharding),
                        specs)


def _compile_seconds(target: Any, device: Any, runs: int) -> tuple[float, int]:
    """Median compile time (jax's caches cleared before each run) and payload size."""
    fn = aot_compile.boundary_function(target, str(jax.config.jax_default_prng_impl))
    times, size = [], 0
    for _ in range(runs):
        jax.clear_caches()  # else the second run is a hit of jax's in-memory compile cache
        start = time.perf_counter()
        compiled = jax.jit(fn).lower(*_specs(target, device)).compile()
        times.append(time.perf_counter() - start)
        size = len(serialize_executable.serialize(compiled)[0])
    return statistics.median(times), size


def _target(module: str, name: str) -> Any:
    target = importlib.import_module(f"generated.{module}").TARGETS[name]
    return target.train_view() if target.train_step_fn is not None else target


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tpu", default="v5e:2x2", help="TPU topology (default v5e:2x2)")
    p.add_argument("--gpu", help="also a GPU target (h100, h200, or a config path)")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--target", action="append", help="only these targets")
    args = p.parse_args()
    cpu = jax.devices("cpu")[0]
    hardware = [(f"tpu {args.tpu}", toolchains.load_libtpu(args.tpu)[0])]
    if args.gpu:
        _, config = toolchains.gpu_target_config(args.gpu)
        hardware.append((f"cuda {args.gpu}", toolchains.load_cuda_devices(config, 1)[0]))
    print(f"jax {jax.__version__}, {toolchains.version('tpu')}, median of {args.runs} runs")
    columns = ["target", "cpu compile (s)"]
    for label, _ in hardware:
        columns += [f"{label} compile (s)", f"{label} executable"]
    columns.append("first output on the target host")
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    for module, name in CASES:
        if args.target and name not in args.target:
            continue
        target = _target(module, name)
        row = [name, f"{_compile_seconds(target, cpu, args.runs)[0]:.2f}"]
        for _, device in hardware:
            seconds, size = _compile_seconds(target, device, args.runs)
            row += [f"{seconds:.2f}", f"{size / 1024:.0f} KiB"]
        row.append("not measured: no TPU or GPU host")
        print("| " + " | ".join(row) + " |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
