"""Shared test helpers: build DSL source text into an imported generated module.

`build(source)` runs the real pipeline (parse -> resolve -> emit -> verify) on a
model file written to a temporary folder and imports the generated module, so
tests exercise exactly what `aot_build.py` produces.  `build_errors(source)`
returns the rendered diagnostics of a model that must fail.
"""

from __future__ import annotations

import itertools
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


def write_model(source: str, name: str | None = None, header: bool = True) -> Path:
    folder = Path(tempfile.mkdtemp(prefix="aotflax-test-"))
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
