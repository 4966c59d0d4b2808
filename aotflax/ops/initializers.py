"""`nn.initializers`: mapped one to one onto `jax.nn.initializers`.

An initializer is only ever *named* by the build: the generated `init` calls
`jax.nn.initializers.<name>(...)` with the same arguments.  Nothing here runs
JAX.
"""

from __future__ import annotations

from ..values import Initializer, InitializerFactory, to_code

#: Factories: name -> signature text (for binding and messages).
FACTORIES: dict[str, str] = {
    "constant": "value, dtype=None",
    "normal": "stddev=0.01, dtype=None",
    "truncated_normal": "stddev=0.01, dtype=None, lower=-2.0, upper=2.0",
    "uniform": "scale=0.01, dtype=None",
    "variance_scaling": "scale, mode, distribution, in_axis=-2, out_axis=-1, batch_axis=(), "
                        "dtype=None",
    "glorot_normal": "in_axis=-2, out_axis=-1, batch_axis=(), dtype=None",
    "glorot_uniform": "in_axis=-2, out_axis=-1, batch_axis=(), dtype=None",
    "xavier_normal": "in_axis=-2, out_axis=-1, batch_axis=(), dtype=None",
    "xavier_uniform": "in_axis=-2, out_axis=-1, batch_axis=(), dtype=None",
    "he_normal": "in_axis=-2, out_axis=-1, batch_axis=(), dtype=None",
    "he_uniform": "in_axis=-2, out_axis=-1, batch_axis=(), dtype=None",
    "kaiming_normal": "in_axis=-2, out_axis=-1, batch_axis=(), dtype=None",
    "kaiming_uniform": "in_axis=-2, out_axis=-1, batch_axis=(), dtype=None",
    "lecun_normal": "in_axis=-2, out_axis=-1, batch_axis=(), dtype=None",
    "lecun_uniform": "in_axis=-2, out_axis=-1, batch_axis=(), dtype=None",
    "orthogonal": "scale=1.0, column_axis=-1, dtype=None",
    "delta_orthogonal": "scale=1.0, column_axis=-1, dtype=None",
    "zeros_init": "",
    "ones_init": "",
}

#: Initializers usable without calling (as in jax.nn.initializers).
PLAIN: dict[str, str] = {"zeros": "jax.nn.initializers.zeros", "ones": "jax.nn.initializers.ones"}


def factory(name: str) -> InitializerFactory:
    return InitializerFactory(name, f"jax.nn.initializers.{name}", False)


def plain(name: str) -> Initializer:
    return Initializer(PLAIN[name], f"nn.initializers.{name}")


def make(name: str, positional: list, keywords: dict) -> Initializer:
    """The initializer `jax.nn.initializers.name(*positional, **keywords)` as code."""
    args = [to_code(a) for a in positional] + [f"{k}={to_code(v)}" for k, v in keywords.items()]
    code = f"jax.nn.initializers.{name}({', '.join(args)})"
    return Initializer(code, f"nn.initializers.{name}({', '.join(args)})")


LECUN_NORMAL = Initializer("jax.nn.initializers.lecun_normal()", "nn.initializers.lecun_normal()")
ZEROS = plain("zeros")
ONES = plain("ones")
#: Linen's `default_embed_init`.
EMBED_INIT = Initializer(
    'jax.nn.initializers.variance_scaling(1.0, "fan_in", "normal", out_axis=0)',
    "variance_scaling(1.0, 'fan_in', 'normal', out_axis=0)",
)
