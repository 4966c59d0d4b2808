"""One process of a multi-process compile: `python -m aotflax.compile_worker ...`.

`aotflax.compile` starts `processes` of these on the loopback address (see
`aotflax.cluster`) to compile a target whose devices span several processes:
each joins the `jax.distributed` run, imports the generated module (generated
code, never a model file), and compiles the target over every process's
devices; process 0 writes the executable and its manifest fields.

Arguments: `ROOT MODULE TARGET VIEW OUT ISA`: the generated package's folder,
the module in it ("models.cnn"), the target, "apply" or "train_step", the
folder for the results, and "portable" (AVX2-capped XLA:CPU) or "native".
"""

from __future__ import annotations

import hashlib
import importlib
import json
import sys
from pathlib import Path

from . import cluster


def main(argv: list[str]) -> int:
    root, module, name, view, out, isa = argv
    rank, _ = cluster.initialize()
    import jax

    from .compile import compile_distributed
    from .verify import load_package

    package = "_aotflax_worker_" + hashlib.sha256(root.encode()).hexdigest()[:12]
    load_package(Path(root), package)
    target = importlib.import_module(f"{package}.{module}").TARGETS[name]
    if view == "train_step":
        target = target.train_view()
    payload, info = compile_distributed(target, xla_portable=isa == "portable")
    if rank == 0:
        (Path(out) / "executable").write_bytes(payload)
        (Path(out) / "info.json").write_text(json.dumps(info), encoding="utf-8")
    jax.distributed.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
