"""`jax.scipy.special` (and `jax.nn.logsumexp`): special functions, elementwise or reducing;
`jax.scipy.stats.norm`'s functions of the normal distribution.

The elementwise ones carry kind specs like `elementwise.py`'s, restating what
jax computes (`erf` of an int array is float32; `logit` drops weak types).
"""

from __future__ import annotations

from collections.abc import Callable

from .. import dtypes as dt
from .. import shapes as sh
from ..program import Tensor
from .arrays import emit_same, register, shape_rule
from .calls import FnCall
from .elementwise import KindSpec, elementwise, result_type

NS = ("jax.scipy.special",)

#: name -> kind spec (bool, int, uint, float, complex) of the one-operand functions.
UNARY = {
    "erf": "F F F = -", "erfc": "F F F = -", "erfinv": "F F F = -", "gammaln": "F F F = -",
    "digamma": "F F F = -", "expit": "F F F = =", "logit": "F Fs Fs =s =s",
    "i0": "F F F = -", "i0e": "F F F = -", "i1": "F F F = -", "i1e": "F F F = -",
    "entr": "F F F = -", "gamma": "F Fs Fs =s =s",
}
#: name -> kind spec of the two-operand functions.
BINARY = {
    "xlogy": "F F F = =", "xlog1py": "F F F = =", "betaln": "F F F = -",
    "gammainc": "F F F = -", "gammaincc": "F F F = -", "zeta": "F F F = -",
}
#: Weak only when the first operand is a Python scalar (see `elementwise`).
SCALAR_FIRST = {"rel_entr": "F F F = -", "kl_div": "F F F = -"}
#: These compute in float32 (or float64) only: jax rejects bf16, f16 and integers.
FLOAT32_ONLY = ("ndtr", "ndtri", "log_ndtr", "spence")

for _n, _spec in UNARY.items():
    register(_n, NS, "x", elementwise(_spec, 1), doc=f"jax.scipy.special.{_n}",
             kind_spec=_spec)
for _n, _spec in BINARY.items():
    register(_n, NS, "x, y", elementwise(_spec, 2), doc=f"jax.scipy.special.{_n}",
             kind_spec=_spec)
for _n, _spec in SCALAR_FIRST.items():
    register(_n, NS, "x, y", elementwise(_spec, 2, weak_if_scalar_first=True),
             doc=f"jax.scipy.special.{_n}", kind_spec=_spec)


def _float32_only(call: FnCall) -> Tensor:
    spec = KindSpec.parse("- - - = -")
    shape, dtype, _ = result_type(call, spec, ["x"])
    if dtype not in ("float32", "float64"):
        raise call.fail(f"{call.written} does not accept {call.tensor('x').describe()}: it "
                        "takes float32 arrays", hint="cast first, e.g. x.astype(jnp.float32)")
    return emit_same(call, shape, dtype)


for _n in FLOAT32_ONLY:
    register(_n, NS, "x", _float32_only, doc=f"jax.scipy.special.{_n} (float32 only)",
             kind_spec=None)


def _logsumexp(call: FnCall) -> Tensor | tuple[Tensor, Tensor]:
    """`logsumexp(a, axis, b, keepdims, return_sign)`: weights `b` broadcast against `a`."""
    names = ["a"] + (["b"] if call.args["b"] is not None else [])
    shape, dtype, _ = result_type(call, KindSpec.parse("Fs Fs Fs =s =s"), names)
    out_shape = shape_rule(call, sh.reduce_shape, shape, call.args["axis"],
                           call.bool("keepdims"))
    if not call.bool("return_sign"):
        return emit_same(call, out_shape, dtype)
    real = {"complex64": "float32", "complex128": "float64"}.get(dtype, dtype)
    value, sign = call.out(out_shape, dt.canonicalize(real)), call.out(out_shape, dtype)
    call.emit_call([value, sign], stem="lse")
    return value, sign


_LSE = "a, axis=None, b=None, keepdims=False, return_sign=False, where=None"
register("logsumexp", ("jax.nn",), _LSE, _logsumexp, doc="log of the sum of exponentials")
register("logsumexp", NS, _LSE, _logsumexp, doc="log of the sum of exponentials")


# ------------------------------------------------------------- jax.scipy.stats.norm

NORM = ("jax.scipy.stats.norm",)
#: The density and its log: `promote_args_inexact` of (x, loc, scale), any float dtype.
NORM_DENSITY = ("pdf", "logpdf")
#: These go through `ndtr` / `log_ndtr` (the distribution function) or `ndtri` (its
#: inverse): float32 (or float64) only, as those compute; the inverse takes no integers.
NORM_CDF = ("cdf", "logcdf", "sf", "logsf")
NORM_INVERSE = ("ppf", "isf")


def _norm(spec_text: str, first: str, float32_only: bool) -> Callable[[FnCall], Tensor]:
    spec = KindSpec.parse(spec_text)

    def rule(call: FnCall) -> Tensor:
        names = [first, "loc", "scale"]
        shape, dtype, weak = result_type(call, spec, names)
        # weak only for Python scalars alone (jax's result of an array is strong, weak or not)
        weak = weak and not any(isinstance(call.args[n], Tensor) for n in names)
        if float32_only and dtype not in ("float32", "float64"):
            raise call.fail(f"{call.written} computes in float32: it does not accept "
                            f"{dt.short_name(dtype)} operands",
                            hint="cast first, e.g. x.astype(jnp.float32)")
        return emit_same(call, shape, dtype, weak)

    return rule


for _n in NORM_DENSITY:
    register(_n, NORM, "x, loc=0, scale=1", _norm("F F F = =", "x", False),
             doc=f"jax.scipy.stats.norm.{_n}: the normal distribution's density",
             kind_spec=None)
for _n in NORM_CDF:
    register(_n, NORM, "x, loc=0, scale=1", _norm("Fs Fs Fs =s -", "x", True),
             doc=f"jax.scipy.stats.norm.{_n} (float32 only)", kind_spec=None)
for _n in NORM_INVERSE:
    register(_n, NORM, "q, loc=0, scale=1", _norm("- - - =s -", "q", True),
             doc=f"jax.scipy.stats.norm.{_n} (float32 only)", kind_spec=None)
