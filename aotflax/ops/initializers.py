"""`nn.initializers`: mapped one to one onto `jax.nn.initializers`.

An initializer is only ever *named* by the build: the generated `init` calls
`jax.nn.initializers.<name>(...)` with the same arguments.  Nothing here runs
JAX.
"""

from __future__ import annotations

from ..quoting import identifier
from ..values import DType, Initializer, InitializerFactory, StaticError, describe_value, to_code

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

#: Linen's factories that jax.nn.initializers lacks, and the jax initializer each returns.
_LINEN_ONLY = {"zeros_init": "zeros", "ones_init": "ones"}

#: Initializers usable without calling (as in jax.nn.initializers).
PLAIN: dict[str, str] = {"zeros": "jax.nn.initializers.zeros", "ones": "jax.nn.initializers.ones"}


def factory(name: str) -> InitializerFactory:
    return InitializerFactory(name, f"jax.nn.initializers.{name}", False)


def plain(name: str) -> Initializer:
    return Initializer(PLAIN[name], f"nn.initializers.{name}")


#: What each argument of a factory must be (JAX only checks when `init` runs).
_MODES = ("fan_in", "fan_out", "fan_avg", "fan_geo_avg")
_DISTRIBUTIONS = ("truncated_normal", "normal", "uniform")


def _check_argument(name: str, value: object) -> str | None:
    """Why `value` does not fit the factory argument `name`, else None."""
    def number(v: object) -> bool:
        return isinstance(v, (int, float)) and not isinstance(v, bool)

    def axes(v: object) -> bool:
        items = v if isinstance(v, (tuple, list)) else (v,)
        return all(isinstance(a, int) and not isinstance(a, bool) for a in items)

    def numbers(v: object) -> bool:
        return all(numbers(x) for x in v) if isinstance(v, (tuple, list)) else number(v)

    if name in ("stddev", "lower", "upper", "scale") and not number(value):
        return "a number"
    if name == "value" and not numbers(value):
        return "a number or a nested list of numbers"
    if name in ("in_axis", "out_axis", "column_axis", "batch_axis") and not axes(value):
        return "an int or a tuple of ints"
    if name == "mode" and value not in _MODES:
        return " or ".join(repr(m) for m in _MODES)
    if name == "distribution" and value not in _DISTRIBUTIONS:
        return " or ".join(repr(d) for d in _DISTRIBUTIONS)
    if name == "dtype" and value is not None and not isinstance(value, DType):
        return "a dtype such as jnp.float32"
    return None


def make(name: str, positional: list, keywords: dict) -> Initializer:
    """The initializer `jax.nn.initializers.name(*positional, **keywords)` as code."""
    names = [p.split("=")[0].strip() for p in FACTORIES[name].split(",") if p.strip()]
    for arg, value in [*zip(names, positional), *keywords.items()]:
        want = _check_argument(arg, value)
        if want:
            raise StaticError(f"nn.initializers.{name}: '{arg}' must be {want}, got "
                              f"{describe_value(value)}")
    if name in _LINEN_ONLY:  # Linen's zeros_init() / ones_init() are jax's zeros / ones
        return plain(_LINEN_ONLY[name])
    bound = dict(zip(names, positional)) | keywords
    value = bound.get("value")
    if name == "constant" and isinstance(value, (tuple, list)):
        # jax's constant fills with jnp.full, which takes arrays, not lists
        shape = _nested_shape(value)
        if shape is None:
            raise StaticError("nn.initializers.constant: 'value' must be a rectangular nested "
                              f"list of numbers, got {describe_value(value)}")
        rest = [f"{identifier(k, 'keyword argument name')}={to_code(v)}"
                for k, v in bound.items() if k != "value"]
        args = [f"jnp.asarray({to_code(value)})", *rest]
        code = f"jax.nn.initializers.constant({', '.join(args)})"
        return Initializer(code, f"nn.initializers.constant({to_code(value)})", shape)
    args = [to_code(a) for a in positional] + [
        f"{identifier(k, 'keyword argument name')}={to_code(v)}" for k, v in keywords.items()]
    code = f"jax.nn.initializers.{name}({', '.join(args)})"
    return Initializer(code, f"nn.initializers.{name}({', '.join(args)})")


def _nested_shape(value: object) -> tuple[int, ...] | None:
    """The shape of a nested list of numbers, None when it is ragged."""
    if not isinstance(value, (tuple, list)):
        return ()
    shapes = {_nested_shape(v) for v in value}
    if len(shapes) > 1 or None in shapes:
        return None
    inner = shapes.pop() if shapes else ()
    assert inner is not None  # None in shapes returned above
    return (len(value), *inner)


LECUN_NORMAL = Initializer("jax.nn.initializers.lecun_normal()", "nn.initializers.lecun_normal()")
ZEROS = plain("zeros")
ONES = plain("ones")
#: Linen's `default_embed_init`.
EMBED_INIT = Initializer(
    'jax.nn.initializers.variance_scaling(1.0, "fan_in", "normal", out_axis=0)',
    "variance_scaling(1.0, 'fan_in', 'normal', out_axis=0)",
)
