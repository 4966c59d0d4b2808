"""aotflax: an ahead-of-time compiler from a Flax-style DSL to plain JAX and XLA executables.

Model files say `from aotflax import nn, aot`, but the compiler never imports or
runs them: `nn` and `aot` below exist so editors and type checkers resolve those
names.  The pipeline lives in one module per stage: parse -> resolve -> emit ->
verify -> compile, driven by `driver`.
"""

__version__ = "0.1.0"

from . import dsl as _dsl  # noqa: E402

nn = _dsl.nn
aot = _dsl.aot
jax_utils = _dsl.jax_utils

__all__ = ["__version__", "nn", "aot", "jax_utils"]
