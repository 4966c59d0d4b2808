"""Numerical parity of real flax.nn files, built unchanged, with Linen twins.

    python bench/corpus_parity.py CORPUS_DIR [--only imagenet,wmt] [--keep]

CORPUS_DIR holds the Flax v0.2 example files as cases (`../shared/corpus`, or
its `cases/` folder).  Each case is copied into a temporary folder with only
its import lines rewritten (the same mechanical rewrite as the corpus's
`check.py`: `from flax import X` -> `from aotflax import X`, `import flax` ->
`import aotflax as flax`), the targets of its `_targets.json` are appended,
and the folder is built with `aot_build.py --no-compile`.  Nothing under
CORPUS_DIR is imported or executed; the model files are never copied into
this repository.  If the whole folder does not build, each file declaring
compared targets is built on its own, so one unsupported file does not hide
the others; the build errors are listed under the table.

For every compared target: the generated `init` gives the parameters and
state; every leaf is perturbed with N(0, 0.1) noise from a fixed key (running
variances scaled by exp(N(0, 0.1))), so zero biases and unit scales cannot
hide a missing term; the Linen twin in `bench/linen_corpus.py` must have
exactly the same tree (paths, shapes, dtypes); then the generated `apply` and
the twin's `apply` run on the same random inputs (token ids in range, a padded
tail on one row so that padding masks matter), both jitted, and every output
and every updated state leaf is compared.

A row passes when every element satisfies |ours - linen| <= atol + rtol *
|linen| with rtol 1e-5, atol 1e-6 (atol only matters for |linen| < 0.1);
"max rel" is taken over the elements with |linen| >= 0.1.

Training targets with dropout compare their tree, and their numerics through a
target this script appends next to the corpus's: the same partial with every
dropout rate 0 (old flax.nn's dropout is the identity at rate 0), marked
"rates 0".  The corpus's own stochastic target then gets a "tree ok" row: its
tree matches, and `apply` gives finite values that change with the rng.  The vae
target takes its random key as an input, so it is compared exactly.

Prints one row per target and exits 1 if any row fails.  Not part of CI.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

import flax.linen as nn  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import linen_corpus as lc  # noqa: E402
import numpy as np  # noqa: E402

RTOL, ATOL = 1e-5, 1e-6
VOCAB = 32  # every token input of the compared targets indexes a 32-entry table
DIAG = re.compile(r"^\S[^\n]*?\.py:\d+:\d+:\s*(?:error|internal error)[^\n]*$", re.M)

warnings.filterwarnings("ignore", message="SelfAttention will be deprecated")


@dataclass(frozen=True)
class Row:
    """One generated target and the Linen twin it is compared with."""

    target: str
    twin: Callable[[], nn.Module]
    method: str | None = None
    #: For a method target: the apply target of the same module whose inputs initialize
    #: the twin (a method target takes the module's whole tree, as Linen's `init` gives it).
    tree_of: str | None = None
    #: Dropout is active: compare the tree only (numerics on the "rates 0" row).
    tree_only: bool = False
    note: str = ""


@dataclass(frozen=True)
class Case:
    """A corpus case: targets the bench appends (file -> lines) and the rows compared."""

    name: str
    rows: tuple[Row, ...]
    extra: dict[str, str] = field(default_factory=dict)


RATES0 = "rates 0"
DROPOUT = "dropout on: tree; finite, rng-dependent"


def _wrn(**kw: Any) -> Callable[[], nn.Module]:
    return lambda: lc.WideResnet(blocks_per_group=1, channel_multiplier=1, num_outputs=10, **kw)


def _lm(**kw: Any) -> Callable[[], nn.Module]:
    return lambda: lc.TransformerLM(vocab_size=32, emb_dim=16, num_heads=2, num_layers=1,
                                    qkv_dim=16, mlp_dim=32, max_len=16, **kw)


def _wmt(**kw: Any) -> Callable[[], nn.Module]:
    return lambda: lc.Transformer(vocab_size=32, output_vocab_size=32, emb_dim=16, num_heads=2,
                                  num_layers=1, qkv_dim=16, mlp_dim=32, max_len=16, **kw)


def _sst2(**kw: Any) -> Callable[[], nn.Module]:
    return lambda: lc.TextClassifier(vocab_size=32, embedding_size=8, hidden_size=16,
                                     output_size=1, freeze_embeddings=False, **kw)


def _resnet(train: bool) -> Callable[[], nn.Module]:
    return lambda: lc.ResNet(num_classes=10, num_filters=8, num_layers=18, train=train)


WMT_TRAIN = dict(train=True, share_embeddings=True, logits_via_embedding=True)

CASES = (
    Case("imagenet", (Row("resnet_small_train", _resnet(True)),
                      Row("resnet_small_eval", _resnet(False)))),
    Case("cifar10", (
        Row("wrn_train", _wrn(dropout_rate=0.3, train=True), tree_only=True, note=DROPOUT),
        Row("wrn_train_rates0", _wrn(dropout_rate=0.0, train=True), note=RATES0),
        Row("wrn_eval", _wrn(dropout_rate=0.3, train=False))),
        {"models/wideresnet.py": 'aot.target("wrn_train_rates0", WRN.partial(dropout_rate=0.0, '
                                 'train=True), x=aot.f32[2, 32, 32, 3])\n'}),
    Case("lm1b", (
        Row("lm1b_train", _lm(train=True), tree_only=True, note=DROPOUT),
        Row("lm1b_train_rates0", _lm(train=True, dropout_rate=0.0, attention_dropout_rate=0.0),
            note=RATES0),
        Row("lm1b_eval", _lm(train=False))),
        {"models.py": 'aot.target("lm1b_train_rates0", LM.partial(train=True, dropout_rate=0.0, '
                      'attention_dropout_rate=0.0), inputs=aot.i32[2, 8])\n'}),
    Case("wmt", (
        Row("wmt_train", _wmt(**WMT_TRAIN), tree_only=True, note=DROPOUT),
        Row("wmt_train_rates0", _wmt(**WMT_TRAIN, dropout_rate=0.0, attention_dropout_rate=0.0),
            note=RATES0),
        Row("wmt_eval", _wmt(train=False)),
        Row("wmt_encode", _wmt(train=False), method="encode", tree_of="wmt_eval"),
        Row("wmt_decode", _wmt(train=False), method="decode", tree_of="wmt_eval")),
        {"models.py": 'aot.target("wmt_train_rates0", T.partial(train=True, share_embeddings=True, '
                      'logits_via_embedding=True, dropout_rate=0.0, attention_dropout_rate=0.0), '
                      'inputs=aot.i32[2, 8], targets=aot.i32[2, 6])\n'}),
    Case("sst2", (
        Row("sst2_train", _sst2(train=True), tree_only=True, note=DROPOUT),
        Row("sst2_train_rates0", _sst2(train=True), note=RATES0),
        Row("sst2_eval", _sst2(train=False))),
        {"model.py": 'aot.target("sst2_train_rates0", SST2.partial(train=True, '
                     'word_dropout_rate=0.0, dropout=0.0, emb_dropout=0.0), '
                     'inputs=aot.i32[2, 7], lengths=aot.i32[2])\n'}),
    Case("vae", (Row("vae", lambda: lc.VAE(latents=4), note="z_rng input"),
                 Row("vae_generate", lambda: lc.VAE(latents=4), method="generate", tree_of="vae"))),
)


# ----------------------------------------------------------------------------- building


def rewrite_imports(text: str) -> str:
    """The corpus checker's rewrite of import lines, and nothing else."""
    out = []
    for line in text.splitlines(keepends=True):
        s = line.lstrip()
        indent = line[: len(line) - len(s)]
        if re.match(r"import flax(\.nn)?\s*$", s):
            line = f"{indent}import aotflax as flax\n"
        elif re.match(r"import flax\.", s):
            line = indent + s.replace("import flax.", "import aotflax.", 1)
        elif re.match(r"from flax(\.| )", s):
            line = indent + s.replace("from flax", "from aotflax", 1)
        out.append(line)
    return "".join(out)


def prepare(case_dir: Path, dest: Path, extra: dict[str, str]) -> dict[str, Any]:
    """Copy a case with rewritten imports, append its targets (the corpus's, then ours)."""
    spec = json.loads((case_dir / "_targets.json").read_text())
    for src in sorted(case_dir.rglob("*")):
        rel = src.relative_to(case_dir)
        if src.is_symlink() or src.is_dir() or rel.name == "_targets.json":
            continue
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        text = src.read_text()
        target.write_text(rewrite_imports(text) if src.suffix == ".py" else text)
    appended = dict(spec.get("append", {}))
    for rel, lines in extra.items():
        appended[rel] = appended.get(rel, "").rstrip("\n") + "\n" + lines
    for rel, lines in appended.items():
        path = dest / rel
        path.write_text(path.read_text().rstrip("\n") + "\n\n\n" + lines.rstrip("\n") + "\n")
    for rel, text in spec.get("files", {}).items():
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        (dest / rel).write_text(text)
    return {"spec": spec, "files": sorted(appended), "appended": appended}


def _build(path: Path, out: Path) -> str | None:
    """Runs `aot_build.py PATH -o OUT --no-compile`; None, or the first error line."""
    proc = subprocess.run([sys.executable, str(ROOT / "aot_build.py"), str(path), "-o", str(out),
                           "--no-compile"], capture_output=True, text=True, timeout=900,
                          cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    if proc.returncode == 0:
        return None
    text = proc.stdout + proc.stderr
    first = DIAG.search(text)
    lines = text.strip().splitlines() or ["(no output)"]
    return f"exit {proc.returncode}: " + (first.group(0) if first else lines[-1])


def build_case(case: Case, corpus: Path, work: Path) -> tuple[dict[str, Any], list[str]]:
    """Builds a case; returns its generated targets by name and the build errors."""
    src, pkgs = work / case.name / "src", work / "pkgs"
    info = prepare(corpus / case.name, src, case.extra)
    units = [(src, f"corpus_{case.name}")]
    errors: list[str] = []
    error = _build(src, pkgs / units[0][1])
    if error is not None:
        errors.append(f"{case.name}: {_short(error, work)}")
        units = []
        if len(list(src.rglob("*.py"))) == 1:
            info["files"] = []  # the folder was that one file
        compared = {f'"{row.target}"' for row in case.rows}
        for rel in info["files"]:
            if not any(name in info["appended"][rel] for name in compared):
                continue
            name = f"corpus_{case.name}_{Path(rel).stem}"
            err = _build(src / rel, pkgs / name)
            if err is None:
                units.append((src / rel, name))
            else:
                errors.append(f"{case.name}/{rel}: {_short(err, work)}")
    if str(pkgs) not in sys.path:
        sys.path.insert(0, str(pkgs))
    targets: dict[str, Any] = {}
    for _, package in units:
        for f in sorted((pkgs / package).rglob("*.py")):
            rel = f.relative_to(pkgs / package).with_suffix("")
            if any(part.startswith("_") for part in rel.parts) or "artifacts" in rel.parts:
                continue
            module = importlib.import_module(".".join((package, *rel.parts)))
            targets.update(getattr(module, "TARGETS", {}))
    return targets, errors


def _short(error: str, work: Path) -> str:
    return re.sub(r"\S*" + re.escape(work.name) + r"/[^/\s]+/src/", "", error)[:300]


# ----------------------------------------------------------------------------- comparing


def perturb(tree: Any, seed: int) -> Any:
    """Every leaf plus N(0, 0.1) noise; leaves named `var` scaled by exp(N(0, 0.1))."""
    leaves, treedef = jax.tree_util.tree_flatten_with_path(tree)
    key = jax.random.key(seed)
    out = []
    for i, (path, leaf) in enumerate(leaves):
        noise = 0.1 * jax.random.normal(jax.random.fold_in(key, i), leaf.shape, leaf.dtype)
        name = getattr(path[-1], "key", None)
        out.append(leaf * jnp.exp(noise) if name == "var" else leaf + noise)
    return jax.tree_util.tree_unflatten(treedef, out)


def make_inputs(target: Any, seed: int) -> list[Any]:
    """Random inputs of the target's shapes: tokens in range with a padded tail, floats, keys."""
    rng = np.random.default_rng(seed)
    specs = list(target.INPUTS.items())
    lengths = {n: s.shape for n, s in specs if len(s.shape) == 2 and s.dtype == np.int32}
    out: list[Any] = []
    for name, spec in specs:
        dtype, shape = spec.dtype, tuple(spec.shape)
        if jnp.issubdtype(dtype, jax.dtypes.prng_key):
            out.append(jax.random.key(seed))
        elif dtype == np.bool_:
            out.append(_tokens(rng, shape[:-1]).reshape(shape) > 0)
        elif name == "lengths":
            width = max((s[1] for s in lengths.values()), default=1)
            out.append(jnp.asarray(rng.integers(1, width + 1, shape), dtype))
        elif jnp.issubdtype(dtype, jnp.integer):
            out.append(jnp.asarray(_tokens(rng, shape), dtype))
        else:
            out.append(jnp.asarray(rng.standard_normal(shape), dtype))
    return out


def _tokens(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Ids in [1, VOCAB), the last row's final third set to 0 (padding)."""
    ids = rng.integers(1, VOCAB, shape)
    if len(shape) == 2:
        ids[-1, shape[1] - max(1, shape[1] // 3):] = 0
    return ids


def _paths(tree: Any) -> dict[str, tuple[tuple[int, ...], str]]:
    return {jax.tree_util.keystr(p): (tuple(leaf.shape), str(leaf.dtype))
            for p, leaf in jax.tree_util.tree_leaves_with_path(tree)}


def tree_difference(ours: Any, twin: Any) -> str | None:
    """How two variable trees differ (paths, shapes, dtypes), or None."""
    a, b = _paths(ours), _paths(twin)
    missing, extra = sorted(set(b) - set(a)), sorted(set(a) - set(b))
    if missing or extra:
        return (f"tree: ours lacks {missing[:3]}{'...' if len(missing) > 3 else ''}, "
                f"twin lacks {extra[:3]}{'...' if len(extra) > 3 else ''}")
    for path in sorted(a):
        if a[path] != b[path]:
            return f"tree: {path} is {a[path]} here, {b[path]} in the twin"
    return None


def diffs(ours: list[np.ndarray], ref: list[np.ndarray]) -> tuple[float, float, bool]:
    """Max abs diff, max rel diff (where |ref| >= atol/rtol) and the allclose verdict."""
    worst_abs = worst_rel = 0.0
    ok = True
    for a, b in zip(ours, ref):
        a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
        d = np.abs(a - b)
        worst_abs = max(worst_abs, float(d.max(initial=0.0)))
        big = np.abs(b) >= ATOL / RTOL
        if big.any():
            worst_rel = max(worst_rel, float((d[big] / np.abs(b[big])).max()))
        ok = ok and bool(np.all(d <= ATOL + RTOL * np.abs(b))) and bool(np.isfinite(a).all())
    return worst_abs, worst_rel, ok


def compare(row: Row, target: Any, targets: dict[str, Any]) -> dict[str, Any]:
    """One table row: the tree check, then (unless tree_only) the numerical comparison."""
    params, state = target.init(jax.random.key(0))
    params, state = perturb(params, 1), perturb(state, 2)
    n = sum(int(np.prod(leaf.shape)) for leaf in jax.tree_util.tree_leaves(params))
    result = {"params": n, "abs": None, "rel": None}
    inputs = make_inputs(target, 3)
    twin = row.twin()
    method = getattr(type(twin), row.method) if row.method else None
    # a method target's tree is the module's whole tree: Linen's init through __call__
    init_inputs = make_inputs(targets[row.tree_of], 3) if row.tree_of else inputs
    twin_init = jax.eval_shape(lambda: twin.init(
        {"params": jax.random.key(0), "dropout": jax.random.key(1)}, *init_inputs))
    problem = tree_difference({"params": params, **state}, dict(twin_init))
    if problem:
        return {**result, "result": "FAIL", "why": problem}
    rng = jax.random.key(4) if target.stochastic else None
    ours = jax.jit(lambda p, s, *x: target.apply(p, s, *x, rng=rng))
    out, new_state = ours(params, state, *inputs)
    out_leaves = jax.tree_util.tree_leaves(out)
    if row.tree_only:
        return {**result, **_stochastic_check(target, params, state, inputs, out_leaves)}
    linen = jax.jit(lambda v, *x: twin.apply(v, *x, method=method, mutable=True))
    ref, variables = linen({"params": params, **state}, *inputs)
    ref_state = {k: v for k, v in variables.items() if k != "params"}
    ref_leaves = jax.tree_util.tree_leaves(ref)
    if len(out_leaves) != len(ref_leaves) or tree_difference(new_state, ref_state):
        return {**result, "result": "FAIL",
                "why": f"{len(out_leaves)} outputs vs {len(ref_leaves)}; state: "
                       f"{tree_difference(new_state, ref_state)}"}
    for a, b in zip(out_leaves, ref_leaves):
        if a.shape != b.shape:
            return {**result, "result": "FAIL", "why": f"output {a.shape} vs {b.shape}"}
    worst_abs, worst_rel, ok = diffs(
        out_leaves + jax.tree_util.tree_leaves(new_state),
        ref_leaves + jax.tree_util.tree_leaves(ref_state))
    return {**result, "abs": worst_abs, "rel": worst_rel, "result": "PASS" if ok else "FAIL",
            "why": ""}


def _stochastic_check(target: Any, params: Any, state: Any, inputs: list[Any],
                      out_leaves: list[Any]) -> dict[str, str]:
    """A target with dropout on: finite outputs that depend on the rng."""
    if not all(bool(jnp.isfinite(x).all()) for x in out_leaves):
        return {"result": "FAIL", "why": "non-finite output"}
    if not target.stochastic:
        return {"result": "FAIL", "why": "dropout on, but the target takes no rng"}
    other, _ = jax.jit(lambda p, s, *x: target.apply(p, s, *x, rng=jax.random.key(5)))(
        params, state, *inputs)
    if all(np.array_equal(a, b) for a, b in zip(out_leaves, jax.tree_util.tree_leaves(other))):
        return {"result": "FAIL", "why": "dropout on, but another rng gives the same output"}
    return {"result": "tree ok", "why": ""}


# ----------------------------------------------------------------------------- driver


def _cases_folder(path: Path) -> Path:
    return path / "cases" if (path / "cases").is_dir() else path


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.1e}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("corpus", type=Path, help="the corpus folder (or its cases/ folder)")
    ap.add_argument("--only", default="", help="comma-separated case names")
    ap.add_argument("--keep", action="store_true", help="keep (and print) the work folder")
    args = ap.parse_args()
    corpus = _cases_folder(args.corpus.resolve())
    only = {c for c in args.only.split(",") if c}
    cases = [c for c in CASES if not only or c.name in only]
    missing = [c.name for c in cases if not (corpus / c.name / "_targets.json").is_file()]
    if missing:
        print(f"{corpus}: no case {', '.join(missing)} (expected CASE/_targets.json)")
        return 2
    work = Path(tempfile.mkdtemp(prefix="aotflax-parity-"))
    rows, errors = [], []
    try:
        for case in cases:
            targets, errs = build_case(case, corpus, work)
            errors += errs
            for row in case.rows:
                if row.target not in targets:
                    rows.append((case.name, row, {"params": None, "abs": None, "rel": None,
                                                  "result": "NO BUILD", "why": ""}))
                    continue
                try:
                    res = compare(row, targets[row.target], targets)
                except Exception as e:  # a crash in one row is that row's result
                    res = {"params": None, "abs": None, "rel": None, "result": "FAIL",
                           "why": f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"}
                rows.append((case.name, row, res))
                print(f"  {case.name}/{row.target}: {res['result']}", file=sys.stderr, flush=True)
    finally:
        if args.keep:
            print(f"work folder: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    print_table(rows, errors)
    return 0 if all(r[2]["result"] in ("PASS", "tree ok") for r in rows) else 1


def print_table(rows: list[tuple[str, Row, dict[str, Any]]], errors: list[str]) -> None:
    print(f"jax {jax.__version__}, flax {_flax_version()}; perturbed parameters, "
          f"rtol {RTOL:g}, atol {ATOL:g}; max rel over |linen| >= {ATOL / RTOL:g}")
    cols = ("case", "target", "parameters", "max abs diff", "max rel diff", "result", "note")
    body = []
    for case, row, r in rows:
        params = "-" if r["params"] is None else f"{r['params']:,}"
        note = "; ".join(x for x in (row.note, r["why"]) if x)
        body.append((case, row.target, params, _fmt(r["abs"]), _fmt(r["rel"]), r["result"], note))
    widths = [max(len(c), *(len(b[i]) for b in body)) if body else len(c)
              for i, c in enumerate(cols)]
    right = {2, 3, 4}

    def line(cells: tuple[str, ...]) -> str:
        return "| " + " | ".join(c.rjust(w) if i in right else c.ljust(w)
                                 for i, (c, w) in enumerate(zip(cells, widths))) + " |"

    print(line(cols))
    print("|" + "|".join(("-" * (w + 1) + ":") if i in right else "-" * (w + 2)
                         for i, w in enumerate(widths)) + "|")
    for b in body:
        print(line(b))
    passed = sum(r["result"] in ("PASS", "tree ok") for _, _, r in rows)
    print(f"{passed} of {len(rows)} rows pass")
    for e in errors:
        print(f"build: {e}")


def _flax_version() -> str:
    import flax
    return flax.__version__


if __name__ == "__main__":
    sys.exit(main())
