"""Compiled peak memory of the zoo's train steps against Linen's `jax.jit` train step.

For each training target of the zoo (`resnet18_train_step`, `lm_train`) and
N = 1, 2, 4 microbatches (`microbatches=N` on a copy of its declaration), the
table gives XLA's `memory_analysis()` of the train step as the build compiles
it: params, state and opt_state donated, and for N > 1 the gradients of N
slices of the batch added up in a `lax.scan`. Next to it, Linen's twin
(`bench/linen_zoo.py`) with the same loss and optax optimizer under `jax.jit`
on the whole batch, without and with `donate_argnums` on params, state and
opt_state.

Peak: arguments + outputs + temporaries, less the outputs that alias donated
arguments (what the build records in each manifest, see
`aotflax.compile.memory_stats`: XLA:CPU's own `peak_memory_in_bytes` leaves the
temporaries out). Compiled sizes are
deterministic, so each row is one compile, not a median.

Goal: ours at most Linen-with-donation's peak on every row.

Run: `python bench/memory.py` (CPU; a few minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import ast
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import optax  # noqa: E402

from aotflax.artifacts import render_runtime  # noqa: E402
from aotflax.compile import compiled_memory, memory_stats  # noqa: E402
from aotflax.driver import front_end  # noqa: E402
from aotflax.verify import import_generated  # noqa: E402

#: zoo file -> its training target.
CASES = {"resnet": "resnet18_train_step", "transformer": "lm_train"}
MICROBATCHES = (1, 2, 4)


def with_microbatches(source: str, name: str, counts: tuple[int, ...]) -> str:
    """The model file with copies of target `name`'s declaration, one per N > 1.

    The copy is the zoo's own call text with `microbatches=N` added (parsed with
    `ast` here, in the benchmark; the build itself never runs the file).
    """
    tree = ast.parse(source)
    for node in tree.body:
        call = node.value if isinstance(node, ast.Expr) else None
        if (isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute)
                and call.func.attr == "train_target" and call.args
                and isinstance(call.args[0], ast.Constant) and call.args[0].value == name):
            text = ast.get_source_segment(source, call)
            assert text is not None and text.endswith(")")
            copies = [text.replace(f'"{name}"', f'"{name}_mb{n}"', 1)[:-1].rstrip().rstrip(",")
                      + f", microbatches={n})" for n in counts if n > 1]
            return source + "\n" + "\n".join(copies) + "\n"
    raise SystemExit(f"no aot.train_target({name!r}, ...) in the model file")


def ours(module: str, name: str) -> dict[int, dict[str, int]]:
    """Memory of the generated train step for each N (compiled as the build does)."""
    path = ROOT / "models" / f"{module}.py"
    text = with_microbatches(path.read_text(), name, MICROBATCHES)
    with tempfile.TemporaryDirectory(prefix="aotflax-memory-") as tmp:
        folder = Path(tmp)
        (folder / path.name).write_text(text)
        report = front_end([folder / path.name], folder)
    assert not report.diagnostics, [d.render() for d in report.diagnostics]
    f = report.files[0]
    _, importer = import_generated({f.out_rel: f.text}, render_runtime())
    targets = importer(f.module).TARGETS
    out = {}
    for n in MICROBATCHES:
        target = targets[name if n == 1 else f"{name}_mb{n}"]
        out[n] = compiled_memory(target.train_view())
    return out


def _resnet_linen() -> tuple[Any, Any, tuple[Any, ...]]:
    """Linen's ResNet-18 train step: (loss_fn, tx, (params, state, *batch) specs)."""
    import linen_zoo

    model = linen_zoo.ResNet18(train=True)
    x = jax.ShapeDtypeStruct((8, 64, 64, 3), jnp.float32)
    labels = jax.ShapeDtypeStruct((8,), jnp.int32)
    variables = jax.eval_shape(model.init, jax.random.key(0), x)

    def loss_fn(params, state, x, labels, key):
        logits, updates = model.apply({"params": params, **state}, x, mutable=["batch_stats"])
        logp = jax.nn.log_softmax(logits)
        loss = -jnp.mean(jnp.sum(jax.nn.one_hot(labels, logits.shape[-1]) * logp, axis=-1))
        accuracy = jnp.mean((jnp.argmax(logits, axis=-1) == labels).astype(jnp.float32))
        return loss, {**updates, "accuracy": accuracy}  # models/resnet.py's cross_entropy

    state = {"batch_stats": variables["batch_stats"]}
    return loss_fn, optax.sgd(0.1, momentum=0.9), (variables["params"], state, x, labels)


def _lm_linen() -> tuple[Any, Any, tuple[Any, ...]]:
    """Linen's LM train step: dropout 0.1, AdamW on matrices and Adam on vectors."""
    import linen_zoo

    model = linen_zoo.TransformerLM(dropout=0.1, train=True)
    tokens = jax.ShapeDtypeStruct((4, 32), jnp.int32)
    params = jax.eval_shape(model.init, jax.random.key(0), tokens)["params"]

    def loss_fn(params, state, tokens, key):
        logits = model.apply({"params": params}, tokens, rngs={"dropout": key})
        logp = jax.nn.log_softmax(logits[:, :-1])
        targets = jax.nn.one_hot(tokens[:, 1:], logits.shape[-1])
        loss = -jnp.mean(jnp.sum(targets * logp, axis=-1))
        accuracy = jnp.mean((jnp.argmax(logits[:, :-1], axis=-1) == tokens[:, 1:]).astype(
            jnp.float32))
        return loss, {"accuracy": accuracy}  # models/transformer.py's next_token_loss

    labels = jax.tree.map(lambda p: "decay" if p.ndim > 1 else "no_decay", params)
    tx = optax.multi_transform({"decay": optax.adamw(3e-4, weight_decay=0.1),
                                "no_decay": optax.adam(3e-4)}, labels)
    return loss_fn, tx, (params, {}, tokens)


def linen(module: str) -> dict[bool, dict[str, int]]:
    """Memory of Linen's jitted train step, without (False) and with (True) donation."""
    loss_fn, tx, (params, state, *batch) = (_resnet_linen if module == "resnet"
                                            else _lm_linen)()

    def step(params, state, opt_state, *batch_and_key):
        *batch, key = batch_and_key
        (loss, new_state), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            params, state, *batch, key)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), new_state, opt_state, loss

    opt_state = jax.eval_shape(tx.init, params)
    key = jax.eval_shape(lambda: jax.random.key(0))
    out = {}
    for donate in (False, True):
        jitted = jax.jit(step, donate_argnums=(0, 1, 2) if donate else ())
        out[donate] = memory_stats(jitted.lower(params, state, opt_state, *batch, key).compile())
    return out


def _mib(n: int) -> str:
    return f"{n / 2**20:,.2f} MiB"


def _delta(n: int) -> str:
    return f"{'+' if n > 0 else ''}{n:,} B" if abs(n) < 2**20 else f"{n / 2**20:+,.2f} MiB"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=sorted(CASES), action="append",
                        help="only this zoo file (repeatable)")
    args = parser.parse_args(argv)
    rows = []
    for module in args.model or list(CASES):
        theirs = linen(module)
        goal = theirs[True]["peak"]
        for n, memory in ours(module, CASES[module]).items():
            peak = memory["peak"]
            rows.append((CASES[module], str(n), _mib(peak), _mib(theirs[False]["peak"]),
                         _mib(goal), _delta(peak - goal), f"{peak / goal:.5f}",
                         "yes" if peak <= goal else "NO"))
    header = ("train step", "microbatches", "aotflax (donated)", "Linen jit",
              "Linen jit + donation", "aotflax - Linen+donation", "aotflax / Linen+donation",
              "goal met")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    print("| " + " | ".join(h.ljust(w) for h, w in zip(header, widths)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in rows:
        print("| " + " | ".join(c.ljust(w) for c, w in zip(row, widths)) + " |")
    return 0 if all(r[-1] == "yes" for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
