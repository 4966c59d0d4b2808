"""The names a generated module's target templates bind.

`templates/target.py.j2` and `templates/train.py.j2` bind module-level helpers per
target and locals inside their functions.  Resolve keeps emitted functions from
taking these names and emit renames inputs around them; both read them here.
Nothing here imports the rest of aotflax.
"""

from __future__ import annotations

#: Names the target templates (target.py.j2, train.py.j2, train_step*.py.j2) bind or
#: read inside their functions: no emitted function is named like one, and inputs are
#: renamed around them.
TARGET_LOCALS = frozenset({
    "params", "state", "rng", "opt_state", "outputs", "loss", "metrics", "grads", "updates",
    "grad_fn", "new_state", "optax", "jax", "jnp", "np", "_runtime"})
#: What the microbatch step's scan body binds besides (train_step_microbatches.py.j2):
#: only a target with microbatches renames its inputs around these (`inputs` is the
#: usual name of a flax.nn model's input).
MICROBATCH_LOCALS = frozenset({
    "microbatch", "carry", "inputs", "index", "key", "step_grads", "slices", "zeros"})
TEMPLATE_LOCALS = TARGET_LOCALS | MICROBATCH_LOCALS

#: Module-level helpers emitted for a target `t`, as `_{t}_{suffix}` (templates/*.j2).
TARGET_HELPERS = ("apply", "init", "loss", "optimizer", "init_opt", "train_step", "labels",
                  "variables")


def target_globals(target: str) -> tuple[str, ...]:
    """The names a target binds in its generated module: itself and its helpers."""
    return (target, *(f"_{target}_{suffix}" for suffix in TARGET_HELPERS))


def labels_variable(target: str) -> str:
    """The module-level dict of a target's parameter-group labels (multi_transform's)."""
    return f"_{target}_labels"


def variables_variable(target: str) -> str:
    """The module-level `_runtime.Variables` of a target (shared by targets with its tree)."""
    return f"_{target}_variables"


__all__ = ["MICROBATCH_LOCALS", "TARGET_HELPERS", "TARGET_LOCALS", "TEMPLATE_LOCALS",
           "labels_variable", "target_globals", "variables_variable"]
