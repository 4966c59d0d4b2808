"""Front-end speed: parse -> resolve -> emit, without jax.

Times the three static stages per model file under `models/` and for synthetic
models of 250 to 2,000 layers (a CNN-and-MLP stack, written out line by line so
every stage sees all of it, and the same stack from a static loop), and prints the median of several runs per
stage.  Goals: <= 50 ms per zoo file, <= 2 s for 2,000 layers, and growth
linear in the number of layers (the per-layer time must stay flat).

    python bench/static_stages.py [--runs 5] [--sizes 250 500 1000 2000] [--instructions]

CPU time on a shared or virtual machine varies by a third from run to run; with
`--instructions` the zoo files are also measured in instructions per front-end run
(valgrind's cachegrind on a child process: 11 runs less 1 run, so start-up, imports and
the warm-up cancel). A process's count still varies by some 25 M instructions (what
the collector and id-keyed dicts do depends on addresses), a few percent of resnet.py's
count, a fifth of a small file's: compare versions of the code by it, repeated.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from aotflax import driver  # noqa: E402

ZOO_GOAL_MS = 50.0
SYNTHETIC_GOAL_S = 2.0  # for 2,000 layers
#: Per-layer time at the largest size over the smallest; above this, growth is superlinear.
LINEAR_SLACK = 1.5

#: One block of the synthetic stack: four layers that keep the shape (2, 8, 8, 8).
_BLOCK = (
    'x = nn.relu(nn.Conv(x, 8, (3, 3), name="conv_{i}"))',
    "x = nn.LayerNorm(x)",
    "x = x + nn.gelu(nn.Dense(x, 8))",
    "x = nn.Conv(x, 8, (1, 1), bias=False)",
)


def synthetic_source(layers: int, looped: bool = False) -> str:
    """A model file with `layers` layer calls, ending in a small head.

    Written out line by line (every stage sees every layer), or `looped`: the same
    layers from a static `for` loop, so the source stays small and resolve unrolls it.
    """
    if looped:
        lines = [f"for i in range({layers // len(_BLOCK)}):"] + [
            "    " + b.replace('"conv_{i}"', 'f"conv_{i}"') for b in _BLOCK]
    else:
        lines = [_BLOCK[i % len(_BLOCK)].format(i=i) for i in range(layers)]
    body = "".join(f"        {line}\n" for line in lines)
    return ("from aotflax import aot, nn\nimport jax.numpy as jnp\n\n\n"
            "class Deep(nn.Module):\n    def apply(self, x):\n" + body +
            "        return nn.log_softmax(nn.Dense(jnp.mean(x, axis=(1, 2)), 10))\n\n\n"
            'aot.target("deep", Deep, x=aot.f32[2, 8, 8, 8])\n')


class _Timed:
    """Wraps a stage function the driver calls, adding up the seconds spent in it."""

    def __init__(self, fn: Callable[..., Any]):
        self.fn, self.seconds = fn, 0.0

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        t = time.process_time()
        try:
            return self.fn(*args, **kwargs)
        finally:
            self.seconds += time.process_time() - t


def _stages(path: Path) -> dict[str, float]:
    """CPU seconds per stage for one run of the driver's front end on `path` (a file with
    symbolic dimensions is resolved and emitted more than once, then reconciled)."""
    stages = {"parse": ("parse_model",), "resolve": ("resolve",),
              "emit": ("emit_file", "emit_module")}
    timed = {name: _Timed(getattr(driver, name)) for names in stages.values() for name in names
             if hasattr(driver, name)}
    for name, t in timed.items():
        setattr(driver, name, t)
    try:
        t0 = time.process_time()
        report = driver.front_end([path], path.parent)
        total = time.process_time() - t0
    finally:
        for name, t in timed.items():
            setattr(driver, name, t.fn)
    if report.diagnostics:
        raise SystemExit("\n".join(d.render() for d in report.diagnostics))
    seconds = {k: sum(timed[n].seconds for n in names if n in timed) for k, names in stages.items()}
    return {**seconds, "total": total}


def measure(path: Path, runs: int) -> dict[str, float]:
    """Median CPU seconds per stage over `runs` runs (after one warm-up run)."""
    _stages(path)
    samples = [_stages(path) for _ in range(runs)]
    return {k: statistics.median(s[k] for s in samples) for k in samples[0]}


_CHILD = """
import sys
from pathlib import Path
sys.path.insert(0, {root!r})
from aotflax import driver
path = Path({path!r})
for _ in range({runs}):
    driver.front_end([path], path.parent)
"""


def instructions(path: Path, runs: int = 10) -> float | None:
    """Instructions of one front-end run on `path` (None without valgrind)."""
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        return None

    def count(n: int) -> int:
        code = _CHILD.format(root=str(ROOT), path=str(path), runs=n)
        proc = subprocess.run([valgrind, "--tool=cachegrind", "--cache-sim=no",
                               "--cachegrind-out-file=/dev/null", sys.executable, "-c", code],
                              capture_output=True, text=True, timeout=600,
                              env={**os.environ, "PYTHONHASHSEED": "0"})
        found = re.search(r"I\s+refs:\s+([\d,]+)", proc.stderr)
        if proc.returncode != 0 or found is None:
            raise SystemExit(f"valgrind failed on {path}:\n{proc.stderr[-2000:]}")
        return int(found.group(1).replace(",", ""))

    # one warm-up run in both, as `measure` does
    return (count(runs + 1) - count(1)) / runs


def _row(name: str, size: str, lines: int, t: dict[str, float], extra: str) -> str:
    ms = {k: v * 1000 for k, v in t.items()}
    return (f"{name:<18} {size:>6} {lines:>6} {ms['parse']:>9.1f} {ms['resolve']:>9.1f} "
            f"{ms['emit']:>9.1f} {ms['total']:>9.1f}  {extra}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="runs per case (median)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[250, 500, 1000, 2000])
    parser.add_argument("--models", default=str(ROOT / "models"))
    parser.add_argument("--instructions", action="store_true",
                        help="also count instructions per run of each zoo file (valgrind)")
    args = parser.parse_args(argv)

    print(f"median of {args.runs} runs, CPU milliseconds of this process (a busy machine "
          "does not skew them);\nfront end only: parse -> resolve -> emit, no jax\n")
    print(f"{'case':<18} {'layers':>6} {'lines':>6} {'parse':>9} {'resolve':>9} {'emit':>9} "
          f"{'total':>9}  goal")
    ok = True
    for path in sorted(Path(args.models).glob("*.py")):
        data = path.read_bytes()
        t = measure(path, args.runs)
        good = t["total"] * 1000 <= ZOO_GOAL_MS
        ok &= good
        _print(_row(path.name, "-", data.count(b"\n"), t,
                    f"{'ok' if good else 'SLOW'} (<= {ZOO_GOAL_MS:.0f} ms)"))

    with tempfile.TemporaryDirectory(prefix="aotflax-bench-") as tmp_name:
        tmp = Path(tmp_name)
        for looped in (False, True):
            kind = "looped" if looped else "written out"
            per_layer: dict[int, float] = {}
            for n in args.sizes:
                source = synthetic_source(n, looped).encode()
                path = tmp / f"deep_{n}_{'looped' if looped else 'written'}.py"
                path.write_bytes(source)
                t = measure(path, args.runs)
                per_layer[n] = t["total"] / n
                note = f"{per_layer[n] * 1e6:.0f} us/layer"
                if n == 2000:
                    good = t["total"] <= SYNTHETIC_GOAL_S
                    ok &= good
                    note += f", {'ok' if good else 'SLOW'} (<= {SYNTHETIC_GOAL_S:.0f} s)"
                _print(_row(kind, str(n), source.count(b"\n"), t, note))
            if len(per_layer) >= 2:
                lo, hi = min(per_layer), max(per_layer)
                ratio = per_layer[hi] / per_layer[lo]
                linear = ratio <= LINEAR_SLACK
                ok &= linear
                print(f"  growth ({kind}): per-layer time at {hi} layers is {ratio:.2f}x that at "
                      f"{lo}: {'linear' if linear else 'SUPERLINEAR'} (limit {LINEAR_SLACK}x)")
    print(f"jax imported by the front end: {'yes' if 'jax' in sys.modules else 'no'}")
    if args.instructions:
        print("\ninstructions per front-end run (cachegrind, 11 runs less 1; a process varies "
              "by ~25 M)")
        for path in sorted(Path(args.models).glob("*.py")):
            n = instructions(path)
            print(f"{path.name:<18} {'valgrind not found' if n is None else f'{n / 1e6:8.1f} M'}",
                  flush=True)
    return 0 if ok else 1


def _print(line: str) -> None:
    print(line, flush=True)


if __name__ == "__main__":
    sys.exit(main())
