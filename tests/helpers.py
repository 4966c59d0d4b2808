"""Shared test helpers: build DSL source text into an imported generated module.

`build(source)` runs the real pipeline (parse -> resolve -> emit -> verify) on a
model file written to a temporary folder and imports the generated module, so
tests exercise exactly what `aot_build.py` produces.  `build_errors(source)`
returns the rendered diagnostics of a model that must fail.
"""

from __future__ import annotations

import atexit
import itertools
import shutil
import tempfile
import textwrap
from pathlib import Path
from types import ModuleType

from aotflax.artifacts import render_runtime
from aotflax.diagnostics import BuildError
from aotflax.driver import front_end
from aotflax.verify import import_generated, verify_module

HEADER = "from aotflax import nn, aot\nimport jax\nimport jax.numpy as jnp\n\n"
_counter = itertools.count()
_scratch: list[Path] = []


def scratch_folder() -> Path:
    """A new empty folder below this test process's scratch root, which is removed when
    the process exits (tests build thousands of models: none may stay in /tmp)."""
    if not _scratch:
        _scratch.append(Path(tempfile.mkdtemp(prefix="aotflax-test-")))
        atexit.register(shutil.rmtree, _scratch[0], True)
    return Path(tempfile.mkdtemp(dir=_scratch[0]))


def write_model(source: str, name: str | None = None, header: bool = True) -> Path:
    folder = scratch_folder()
    path = folder / f"{name or 'model_%d' % next(_counter)}.py"
    text = textwrap.dedent(source)
    path.write_text((HEADER if header else "") + text)
    return path


def emit(source: str, header: bool = True) -> tuple[str, object]:
    """Generated text and FileProgram for a model source; raises BuildError."""
    path = write_model(source, header=header)
    report = front_end([path], path.parent)
    if report.diagnostics:
        raise BuildError(report.diagnostics)
    f = report.files[0]
    return f.text, f.program


def build(source: str, header: bool = True, verify: bool = True) -> ModuleType:
    """Build a model source into an imported generated module (verified by default)."""
    path = write_model(source, header=header)
    report = front_end([path], path.parent)
    if report.diagnostics:
        raise BuildError(report.diagnostics)
    f = report.files[0]
    _, importer = import_generated({f.out_rel: f.text}, render_runtime())
    module = importer(f.module)
    if verify:
        verify_module(module, f.program)
    module.__aotflax_text__ = f.text
    module.__aotflax_program__ = f.program
    return module


def build_errors(source: str, header: bool = True) -> str:
    """Rendered diagnostics of a model that must fail to build."""
    try:
        build(source, header=header, verify=False)
    except BuildError as e:
        return "\n".join(d.render() for d in e.diagnostics)
    raise AssertionError("the model built without errors")


def perturbed(tree: object, seed: int, scale: float = 0.1) -> object:
    """Linen variables with random noise added to every floating leaf.

    Linen initializes biases to zeros and norm scales to ones, so a parity test fed
    them could not see a missing bias or scale term; noise keeps every leaf near its
    initial magnitude (activations stay in range) while making each one count.
    """
    import jax
    import numpy as np

    rng = np.random.default_rng(seed)

    def leaf(a: object) -> object:
        a = np.asarray(a)
        if not np.issubdtype(a.dtype, np.floating) and a.dtype.name != "bfloat16":
            return a
        noise = rng.standard_normal(a.shape).astype(np.float32) * scale
        return (a.astype(np.float32) + noise).astype(a.dtype)

    return jax.tree_util.tree_map(leaf, _plain(tree))


def _plain(tree: object) -> object:
    """Linen's FrozenDicts as plain dicts."""
    if hasattr(tree, "items"):
        return {k: _plain(v) for k, v in tree.items()}
    return tree


def scope_hash(name: str) -> int:
    """The number a module's scope name folds into rng keys, by the documented rule
    (aotflax/README.md, "Random keys": `crc32(name) & 0x7FFFFFFF`), computed here from
    zlib rather than taken from the compiler, so a changed rule fails the tests."""
    import zlib

    return zlib.crc32(name.encode()) & 0x7FFFFFFF
