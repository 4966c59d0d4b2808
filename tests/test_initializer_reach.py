"""Initializers reach only the DSL: every attribute path from numpy/jax/math to Python's
internals is rejected.

numpy and jax lead back to `builtins`, `os`, `sys` through their own attributes
(`np.ma.core.builtins.exec`, `np._pytesttester.os.system`, ...).  Initializers of the
model file are interpreted like any model code, so none of these paths may resolve to
anything.  The paths are found by searching the real modules, not written by hand:
whatever a future numpy or jax exposes is checked too.
"""

from __future__ import annotations

import math
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import build, emit

from aotflax.diagnostics import BuildError

DANGEROUS = {"builtins", "os", "sys", "subprocess", "importlib", "ctypes", "posix", "shutil",
             "pickle", "io", "runpy"}


def _dangerous_paths(max_depth: int = 3, limit: int = 400) -> list[str]:
    """Attribute paths (through modules only) from np/jnp/jax/math to a dangerous module."""
    roots = {"np": np, "jnp": jnp, "jax": jax, "math": math}
    found: list[str] = []
    seen: set[int] = set()
    frontier = [(name, mod) for name, mod in roots.items()]
    for _ in range(max_depth):
        nxt = []
        for path, obj in frontier:
            if id(obj) in seen:
                continue
            seen.add(id(obj))
            for attr in sorted(vars(obj)) if hasattr(obj, "__dict__") else ():
                if attr.startswith("__"):
                    continue
                try:
                    value = getattr(obj, attr)
                except Exception:  # lazily failing attributes of third-party modules
                    continue
                if not isinstance(value, types.ModuleType):
                    continue
                here = f"{path}.{attr}"
                if value.__name__.split(".")[0] in DANGEROUS:
                    found.append(here)
                else:
                    nxt.append((here, value))
        frontier = nxt
    return sorted(set(found))[:limit]


PATHS = _dangerous_paths()


def test_the_search_finds_the_known_paths() -> None:
    assert len(PATHS) >= 10, PATHS
    assert any(p.startswith("np.") for p in PATHS) and any(p.startswith("jax.") for p in PATHS)


def test_every_path_to_python_internals_is_rejected_in_an_initializer() -> None:
    body = "\n".join(f"    v{i} = {p}.system" for i, p in enumerate(PATHS))
    source = f"""
import numpy as np
import math


def evil_init(key, shape, dtype):
{body}
    return jnp.zeros(shape, dtype)


class Net(nn.Module):
    def apply(self, x):
        return x * self.param("w", (2, 3), evil_init)


aot.target("net", Net, x=aot.f32[2, 3])
"""
    with pytest.raises(BuildError) as e:
        emit(source)
    lines = {d.span.line for d in e.value.diagnostics if d.span is not None}
    first = 11  # the line of `v0 = ...` in the file (after the test header)
    assert lines == set(range(first, first + len(PATHS))), [
        d.render() for d in e.value.diagnostics][:5]
    assert {d.code for d in e.value.diagnostics} <= {"AOT346", "AOT105"}


def test_an_initializer_computes_with_its_arguments_and_module_constants() -> None:
    m = build("""
    SCALE = 0.5


    def scaled(scale):
        def init(key, shape, dtype=jnp.float32):
            return SCALE * scale * jax.random.normal(key, shape, dtype)
        return init


    class Net(nn.Module):
        def apply(self, x):
            return x @ self.param("w", (3, 4), scaled(4.0))


    aot.target("net", Net, x=aot.f32[2, 3])
    """)
    params, _ = m.net.init(jax.random.key(0))
    import inspect

    text = m.__aotflax_text__
    assert "SCALE" not in text and "def scaled" not in text  # interpreted, never copied
    key = jax.random.fold_in(jax.random.key(0), _hash("w"))
    np.testing.assert_allclose(params["w"], 2.0 * jax.random.normal(key, (3, 4)), rtol=1e-6)
    assert inspect.isfunction(m.init)


def _hash(path: str) -> int:
    """The documented key rule: crc32 of the parameter path, 31 bits."""
    import zlib

    return zlib.crc32(path.encode()) & 0x7FFFFFFF
