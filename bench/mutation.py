"""Mutation score of the test suite: seeds one-line bugs and reports which tests catch.

Each mutant is one small change to one line of `templates/`, `aotflax/ops/`, the
runtime (`templates/runtime.py.j2`) or the naming rules (`aotflax/scopes.py`): a
dropped term, a swapped operand, a changed default, a skipped check.  For each, the
script copies the repository (tracked and untracked files, not `generated/`'s
freshness), applies the change in the copy, runs the behavioural tests that cover
that code, and records

    killed     a test failed (an assertion, or a build the test makes refused the change),
    survived   every test passed (the bug walks through),
    timed out  the tests ran past the limit,
    broken     the tests could not be collected (the mutant broke an import; such a
               mutant measures nothing and counts in no score).

The three bugs of issue 11 are marked `seeded`: a train step that drops the updated
optimizer state, lecun_normal replaced by he_normal as the default kernel
initializer, an explicit `name=` that advances Linen's automatic counter.  None of the
runs includes `tests/test_golden.py`: snapshots and the freshness of `generated/`
notice every change of emitted text, which is not what this measures.

Usage (not in CI: about 10-20 minutes on 2 cores):

    PYTHONPATH=$PWD .venv/bin/python bench/mutation.py            # all mutants
    PYTHONPATH=$PWD .venv/bin/python bench/mutation.py --area ops --jobs 2
    PYTHONPATH=$PWD .venv/bin/python bench/mutation.py --check    # do they all apply?

It prints one line per mutant, then killed / survived / timed out per area, and the
survivors with what they changed.  Exit status 0 when every area reaches `--goal`
(default 90 %), 1 otherwise.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Mutant:
    """One one-line bug: `old` (which must occur exactly once in `path`) becomes `new`."""

    area: str
    path: str
    old: str
    new: str
    tests: tuple[str, ...]
    what: str
    seeded: bool = False

    @property
    def name(self) -> str:
        return f"{self.path}: {self.what}"


def _m(area: str, path: str, old: str, new: str, tests: str, what: str,
       seeded: bool = False) -> Mutant:
    return Mutant(area, path, old, new, tuple(tests.split()), what, seeded)


PARITY = "tests/test_linen_parity.py"
TRAIN = "tests/test_training.py"
STATE = "tests/test_state_rng.py"
LAYERS = "tests/test_layers_more.py"
INIT = "tests/test_init_values.py"
ATTN = f"{PARITY} tests/test_old_attention.py {LAYERS}"
ART = "tests/test_artifacts.py"

MUTANTS: tuple[Mutant, ...] = (
    # ------------------------------------------------------------------ templates
    _m("templates", "templates/train_step.py.j2",
       "updates, opt_state = _{{ name }}_optimizer().update(",
       "updates, _ = _{{ name }}_optimizer().update(",
       TRAIN, "train step drops the updated optimizer state", seeded=True),
    _m("templates", "templates/train_step.py.j2",
       "return params, new_state, opt_state, {",
       "return params, state, opt_state, {",
       TRAIN,
       "train step returns the old model state (batch_stats never move)"),
    _m("templates", "templates/train.py.j2",
       "return loss, ({{ new_state }}, {{ metrics }})",
       "return loss, ({{ new_state }}, {})",
       TRAIN, "train step drops the loss's metrics"),
    _m("templates", "templates/layers/dense.j2",
       "{{ x }} @ {{ kernel }}{{ bias }}", "{{ x }} @ {{ kernel }}",
       PARITY, "Dense without its bias"),
    _m("templates", "templates/layers/conv.j2",
       "padding={{ padding }}{{ extra }}", "padding={{ padding }}",
       f"{PARITY} {LAYERS}", "Conv ignores dilation and feature groups"),
    # the normalization layers' code is the runtime's layer helpers (section "layers")
    _m("templates", "templates/runtime.py.j2",
       'new_mean = momentum * batch_stats["mean"] + (1 - momentum) * mean',
       'new_mean = (1 - momentum) * batch_stats["mean"] + momentum * mean',
       f"{STATE} {PARITY}", "BatchNorm running mean with momentum and 1-momentum swapped"),
    _m("templates", "templates/runtime.py.j2",
       'y = _normalize(x, batch_stats["mean"], batch_stats["var"], params, epsilon, view, expand)',
       'y = _normalize(x, batch_stats["mean"], batch_stats["var"], params, 0.0, view, expand)',
       f"{STATE} {PARITY} tests/test_resnet.py", "BatchNorm (running average) without epsilon"),
    _m("templates", "templates/runtime.py.j2",
       "y = _normalize(xf, mean, var, params,", "y = _normalize(xf, 0.0, var, params,",
       f"{PARITY} {STATE}", "LayerNorm does not subtract the mean"),
    _m("templates", "templates/runtime.py.j2",
       "mean, var = per_channel(stats[0]), per_channel(stats[1])",
       "mean, var = per_channel(stats[0]), per_channel(stats[1] * 0 + 1)",
       f"{PARITY} {STATE}", "GroupNorm divides by 1 instead of the group's deviation"),
    _m("templates", "templates/runtime.py.j2",
       "    if flat == shape or init in (jax.nn.initializers.zeros, jax.nn.initializers.ones):",
       "    if True:",
       f"{INIT} tests/test_layer_helpers.py",
       "attention's DenseGeneral kernels drawn on their 3-D shape, not Linen's flattened one"),
    _m("templates", "templates/runtime.py.j2",
       "hidden = param(recurrent_kernel_init,", "hidden = param(kernel_init,",
       f"{INIT} tests/test_layer_helpers.py", "LSTMCell's recurrent kernels lecun_normal"),
    _m("templates", "templates/layers/rms_norm.j2",
       "jnp.mean(jnp.square({{ xf }}), axis=-1)", "jnp.mean(jnp.abs({{ xf }}), axis=-1)",
       f"{PARITY} {STATE}", "RMSNorm takes the mean absolute value"),
    _m("templates", "templates/layers/attention_weights.j2",
       "{{ query }} / jnp.sqrt({{ depth }}).astype(jnp.{{ dtype }})", "{{ query }}",
       ATTN, "attention without the 1/sqrt(depth) scale"),
    _m("templates", "templates/layers/attention_mask.j2",
       "jnp.finfo(jnp.{{ dtype }}).min", "0.0",
       ATTN, "masked attention logits set to 0 instead of -inf"),
    _m("templates", "templates/layers/causal_mask.j2", "jnp.tril(", "jnp.triu(",
       ATTN, "the causal mask looks ahead"),
    _m("templates", "templates/layers/dropout.j2",
       "{{ x }} / {{ keep_prob }}", "{{ x }}",
       f"{LAYERS} {STATE} {PARITY}", "dropout does not rescale what it keeps"),
    _m("templates", "templates/layers/avg_pool.j2", ") / {{ size }}", ")",
       PARITY, "avg_pool sums"),
    _m("templates", "templates/layers/max_pool.j2", "-jnp.inf", "0.0",
       PARITY, "max_pool pads (and starts) with 0 instead of -inf"),
    _m("templates", "templates/layers/lstm_memory.j2",
       "{{ f }} * {{ c }} + {{ i }} * {{ g }}", "{{ i }} * {{ c }} + {{ f }} * {{ g }}",
       f"{PARITY} {LAYERS}", "LSTM forget and input gates swapped"),
    _m("templates", "templates/layers/gru_hidden.j2",
       "(1.0 - {{ z }}) * {{ n }} + {{ z }} * {{ h }}",
       "{{ z }} * {{ n }} + (1.0 - {{ z }}) * {{ h }}",
       f"{PARITY} {LAYERS}", "GRU update gate inverted"),
    _m("templates", "templates/layers/conv_lstm_memory.j2",
       "jax.nn.sigmoid({{ f }} + 1)", "jax.nn.sigmoid({{ f }})",
       f"{PARITY} {LAYERS}", "ConvLSTM without its forget bias of 1"),
    _m("templates", "templates/layers/embed_attend.j2", "{{ table }}.T)", "{{ table }}.T * 2)",
       "tests/test_dsl_features.py tests/test_sequence_models.py",
       "Embed.attend scales the logits"),
    # ------------------------------------------------------------------ ops
    _m("ops", "aotflax/ops/initializers.py",
       'LECUN_NORMAL = Initializer("jax.nn.initializers.lecun_normal()"',
       'LECUN_NORMAL = Initializer("jax.nn.initializers.he_normal()"',
       INIT, "default kernel initializer he_normal instead of lecun_normal", seeded=True),
    _m("ops", "aotflax/ops/normalization.py",
       '@layer("BatchNorm", "x, use_running_average=False, axis=-1, momentum=0.99,',
       '@layer("BatchNorm", "x, use_running_average=False, axis=-1, momentum=0.9,',
       f"{STATE} {PARITY}", "BatchNorm's default momentum 0.9 instead of 0.99"),
    _m("ops", "aotflax/ops/normalization.py",
       '"x, use_running_average=False, axis=-1, momentum=0.99, epsilon=1e-05, "',
       '"x, use_running_average=False, axis=-1, momentum=0.99, epsilon=1e-03, "',
       f"{STATE} {PARITY}", "BatchNorm's default epsilon 1e-3 instead of 1e-5"),
    _m("ops", "aotflax/ops/layers.py",
       '@layer("LayerNorm", "x, epsilon=1e-06,', '@layer("LayerNorm", "x, epsilon=1e-03,',
       f"{PARITY} {STATE}", "LayerNorm's default epsilon 1e-3 instead of 1e-6"),
    _m("ops", "aotflax/ops/normalization.py",
       'ra_var = call.state(BATCH_STATS, "var", fs, "float32", inits.ONES)',
       'ra_var = call.state(BATCH_STATS, "var", fs, "float32", inits.ZEROS)',
       f"{INIT} {STATE}", "BatchNorm's running variance starts at 0"),
    _m("ops", "aotflax/ops/recurrent.py",
       '"recurrent_kernel_init=orthogonal, bias_init=zeros, features=None, dtype=None, "\n'
       '          "param_dtype=float32", gru_cell,',
       '"recurrent_kernel_init=lecun_normal, bias_init=zeros, features=None, dtype=None, "\n'
       '          "param_dtype=float32", gru_cell,',
       INIT, "GRU's default recurrent kernel lecun_normal instead of orthogonal"),
    _m("ops", "aotflax/ops/elementwise.py",
       '"divide": "F F F = =",', '"divide": "= = = = =",',
       "tests/test_ops_dtypes.py tests/test_ops_coverage.py",
       "integer division keeps the integer dtype"),
    _m("ops", "aotflax/ops/elementwise.py",
       '"floor_divide": "Is = = = -",', '"floor_divide": "F F F = -",',
       "tests/test_ops_dtypes.py tests/test_ops_coverage.py",
       "floor_divide promotes integers to float"),
    _m("ops", "aotflax/ops/attention.py",
       '    "lecun_normal": inits.LECUN_NORMAL,',
       '    "lecun_normal": inits.Initializer("jax.nn.initializers.xavier_uniform()", "x"),',
       f"{INIT} {PARITY}", "attention's default kernel initializer xavier_uniform"),
    _m("ops", "aotflax/ops/recurrent.py",
       'kernel = sub.param("kernel", kshape, pdt, inits.LECUN_NORMAL)',
       'kernel = sub.param("kernel", kshape, pdt, inits.ZEROS)',
       INIT, "ConvLSTM's kernels start at 0"),
    # ------------------------------------------------------------------ runtime
    _m("runtime", "templates/runtime.py.j2",
       "    if digest != entry[\"sha256\"]:", "    if False:",
       f"{ART} tests/test_loader_security.py", "a loaded file's sha256 is not checked"),
    _m("runtime", "templates/runtime.py.j2",
       "    if manifest[\"source_sha256\"] != target.source_sha256:", "    if False:",
       f"{ART} tests/test_loader_security.py",
       "artifacts built from other generated code are loaded"),
    _m("runtime", "templates/runtime.py.j2",
       "    return np.dtype(jax.dtypes.canonicalize_dtype(got)) == np.dtype(want)",
       "    return got is not None",
       f"{ART} tests/test_loader_security.py", "a loaded executable takes a wrong dtype"),
    _m("runtime", "templates/runtime.py.j2",
       "            if self.stochastic:\n                raise TypeError(_missing_rng(self.name))",
       "            if False:\n                raise TypeError(_missing_rng(self.name))",
       f"{STATE} tests/test_scan_random.py {LAYERS}",
       "a stochastic target runs without its rng"),
    _m("runtime", "templates/runtime.py.j2",
       "        if len(batch) != expected:", "        if False:",
       TRAIN, "train_step accepts a wrong number of batch arrays"),
    _m("runtime", "templates/runtime.py.j2",
       "        if size is not None and info.st_size != size:", "        if False:",
       f"{ART} tests/test_loader_security.py", "a file of the wrong size is read whole"),
    # ------------------------------------------------------------------ naming
    _m("naming", "aotflax/scopes.py",
       "            name = explicit\n",
       "            name = explicit\n            self.counters[class_name] = "
       "self.counters.get(class_name, 0) + 1\n",
       PARITY, "an explicit name= advances the automatic counter", seeded=True),
    _m("naming", "aotflax/scopes.py",
       '            name = f"{class_name}_{n}"', '            name = f"{class_name}{n}"',
       f"{PARITY} {INIT}", "automatic names without the underscore"),
    _m("naming", "aotflax/scopes.py",
       "            self.counters[class_name] = n + 1", "            self.counters[class_name] = n",
       f"{PARITY} tests/test_messages.py", "the automatic counter never advances"),
)


def apply(text: str, mutant: Mutant) -> str:
    """The mutated text; ValueError when `old` does not occur exactly once."""
    count = text.count(mutant.old)
    if count != 1:
        raise ValueError(f"{mutant.name}: the original text occurs {count} times, not once")
    return text.replace(mutant.old, mutant.new)


def _copy_repo(dest: Path) -> None:
    """Tracked and untracked (not ignored) files of the repository, and its venv link."""
    files = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT, check=True, capture_output=True).stdout.decode().split("\0")
    for rel in filter(None, files):
        src = ROOT / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    venv = ROOT / ".venv"
    (dest / ".venv").symlink_to(venv.resolve() if venv.exists() else Path(sys.prefix))


def run_mutant(copy: Path, mutant: Mutant, timeout: float) -> tuple[str, float, str]:
    """(outcome, seconds, first failing test) of the tests of `mutant` in `copy`."""
    path = copy / mutant.path
    original = path.read_text()
    path.write_text(apply(original, mutant))
    env = dict(os.environ, PYTHONPATH=str(copy), JAX_PLATFORMS="cpu")
    command = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider",
               "--no-header", "-rfE", *mutant.tests]
    start = time.perf_counter()
    try:
        done = subprocess.run(command, cwd=copy, env=env, capture_output=True, text=True,
                              timeout=timeout)
        # pytest exits 1 when tests failed, 2 when collection failed (the mutant broke
        # an import: not a bug the tests caught, the mutant is reported as broken)
        outcome = {0: "survived", 1: "killed"}.get(done.returncode, "broken")
        failed = next((line.split(" ")[1] for line in done.stdout.splitlines()
                       if line.startswith(("FAILED ", "ERROR "))), "")
    except subprocess.TimeoutExpired:
        outcome, failed = "timed out", ""
    finally:
        path.write_text(original)
    return outcome, time.perf_counter() - start, failed


def check() -> int:
    """Every mutant applies to the current tree and names test files that exist."""
    bad = 0
    for mutant in MUTANTS:
        try:
            apply((ROOT / mutant.path).read_text(), mutant)
            missing = [t for t in mutant.tests if not (ROOT / t.split("::")[0]).exists()]
            if missing:
                raise ValueError(f"{mutant.name}: no test file {', '.join(missing)}")
        except ValueError as error:
            print(error)
            bad += 1
    print(f"{len(MUTANTS) - bad} of {len(MUTANTS)} mutants apply")
    return 1 if bad else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--area", action="append", help="only these areas (repeatable)")
    parser.add_argument("--jobs", type=int, default=1, help="mutants run at once")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per mutant")
    parser.add_argument("--goal", type=float, default=90.0, help="percent killed per area")
    parser.add_argument("--check", action="store_true", help="only check that mutants apply")
    parser.add_argument("--only", action="append", metavar="TEXT",
                        help="only mutants whose description contains TEXT (repeatable)")
    args = parser.parse_args(argv)
    if args.check:
        return check()
    mutants = [m for m in MUTANTS if (not args.area or m.area in args.area)
               and (not args.only or any(text in m.what for text in args.only))]
    for mutant in mutants:  # fail before copying anything when a mutant went stale
        apply((ROOT / mutant.path).read_text(), mutant)
    with tempfile.TemporaryDirectory(prefix="aotflax-mutation-") as tmp:
        copies = [Path(tmp) / f"copy{i}" for i in range(max(1, args.jobs))]
        for copy in copies:
            _copy_repo(copy)
        free = list(copies)
        results: dict[Mutant, tuple[str, float, str]] = {}

        def one(mutant: Mutant) -> None:
            copy = free.pop()
            try:
                results[mutant] = run_mutant(copy, mutant, args.timeout)
            finally:
                free.append(copy)
            outcome, seconds, failed = results[mutant]
            mark = " [seeded]" if mutant.seeded else ""
            print(f"{outcome:>9}  {seconds:6.1f} s  {mutant.name}{mark}"
                  + (f"  <- {failed}" if failed else ""), flush=True)

        with ThreadPoolExecutor(len(copies)) as pool:
            list(pool.map(one, mutants))
    return report(mutants, results, args.goal)


def report(mutants: list[Mutant], results: dict, goal: float) -> int:
    """The table per area and the survivors; 0 when every area reaches `goal`."""
    print(f"\n{'area':<10} {'killed':>6} {'survived':>8} {'timed out':>9} {'broken':>6} "
          f"{'score':>6}")
    ok = True
    for area in dict.fromkeys(m.area for m in mutants):
        outcomes = [results[m][0] for m in mutants if m.area == area]
        killed, counted = outcomes.count("killed"), len(outcomes) - outcomes.count("broken")
        score = 100.0 * killed / max(1, counted)
        ok &= score >= goal
        print(f"{area:<10} {killed:>6} {outcomes.count('survived'):>8} "
              f"{outcomes.count('timed out'):>9} {outcomes.count('broken'):>6} {score:5.0f}%")
    total = sum(results[m][0] == "killed" for m in mutants)
    counted = sum(results[m][0] != "broken" for m in mutants)
    print(f"{'all':<10} {total:>6} of {counted}")
    seeded = [m for m in mutants if m.seeded]
    print(f"seeded bugs of issue 11 caught: {sum(results[m][0] == 'killed' for m in seeded)}"
          f" of {len(seeded)}")
    survivors = [m for m in mutants if results[m][0] != "killed"]
    if survivors:
        print("\nsurvivors:")
        for m in survivors:
            print(f"  {results[m][0]}: {m.name} (tests: {' '.join(m.tests)})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
