"""Elementwise functions and operators, with JAX's dtype rules.

Every elementwise entry states in a *kind spec* what it does to the dtype of
its (promoted) operands: five tokens, one per dtype kind in the order bool,
signed integer, unsigned integer, floating, complex.  A token is one of

    =   the same dtype            F   float32 for bool and integers, else the same
    I   int32 for bool, else the same
    B   bool                      R   the real dtype for complex (complex64 -> float32)
    -   not accepted (jnp raises a TypeError)

followed by what happens to the weak type (the type of a Python scalar, which
adopts the other operand's dtype): nothing keeps it, `s` makes the result
strong, `w` weak.  So `jnp.exp` is "F F F = =" (`promote_args_inexact`) and
`jnp.bitwise_and` is "= = = - -".  The specs restate what jax does, token by
token; `tests/test_ops_dtypes.py` checks each against `jax.eval_shape` for
every mix of bool, integer, float, bf16, complex and weak operands.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from .. import dtypes as dt
from .. import shapes as sh
from ..program import Code, Tensor
from .arrays import emit_same, matmul_dtype, register, shape_rule
from .calls import FnCall, aval_of, value_code
from .registry import REGISTRY, CallError, Entry, Signature

_KINDS = "biufc"
_KIND_NAMES = {"b": "bool", "i": "integer", "u": "unsigned integer", "f": "floating",
               "c": "complex"}


@dataclass(frozen=True, slots=True)
class KindSpec:
    """What an elementwise op does to each dtype kind (see the module docstring)."""

    tokens: tuple[str, ...]

    @staticmethod
    def parse(text: str) -> "KindSpec":
        tokens = tuple(text.split())
        assert len(tokens) == 5 and all(t[0] in "=FIBR-" and t[1:] in ("", "s", "w")
                                        for t in tokens), text
        return KindSpec(tokens)

    def accepts(self, dtype: str) -> bool:
        return self._token(dtype) != "-"

    def accepted(self) -> str:
        """The accepted kinds, for messages: "integer or bool"."""
        names = [_KIND_NAMES[k] for k, t in zip(_KINDS, self.tokens) if t != "-"]
        if "integer" in names and "unsigned integer" in names:
            names.remove("unsigned integer")
        return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]

    def apply(self, dtype: str, weak: bool) -> tuple[str, bool]:
        """(dtype, weak) of the result for an operand (or promoted operands) of this type."""
        token = self._token(dtype)
        kind = token[0]
        if kind == "F" and not dt.is_inexact(dtype):
            dtype = "float32"
        elif kind == "I" and dt.is_bool(dtype):
            dtype = "int32"
        elif kind == "B":
            dtype = "bool"
        elif kind == "R" and dt.is_complex(dtype):
            dtype = {"complex64": "float32", "complex128": "float64"}[dtype]
        weak = {"": weak, "s": False, "w": True}[token[1:]]
        return dt.canonicalize(dtype), weak and dtype != "bool"

    def _token(self, dtype: str) -> str:
        return self.tokens[_KINDS.index(dt.kind(dtype))]


def reject(call: FnCall, spec: KindSpec, described: str) -> CallError:
    """The error for an operand dtype the op does not accept."""
    want = spec.accepted()
    cast = "jnp.float32" if spec.accepts("float32") else "jnp.int32"
    return call.fail(f"{call.written} does not accept {described}: it takes {want} arrays",
                     hint=f"cast first, e.g. x.astype({cast})")


def _describe_aval(aval: tuple[tuple[int, ...], str, bool], value: object) -> str:
    if isinstance(value, Tensor):
        return value.describe()
    return f"the Python scalar {value!r}" if not isinstance(value, (list, tuple)) else \
        f"a {dt.short_name(aval[1])} list"


def result_type(call: FnCall, spec: KindSpec, names: list[str]) -> tuple[tuple[int, ...], str,
                                                                        bool]:
    """Broadcast shape and result dtype of the operands `names` under `spec`."""
    avals = [call.aval(n) for n in names]
    shape = shape_rule(call, sh.broadcast_shapes, *[a[0] for a in avals])
    dtype, weak = dt.promote(*[(a[1], a[2]) for a in avals])
    if not spec.accepts(dtype):
        what = " and ".join(_describe_aval(a, call.args[n]) for a, n in zip(avals, names))
        raise reject(call, spec, what)
    dtype, weak = spec.apply(dtype, weak)
    return shape, dtype, weak


def elementwise(spec_text: str, arity: int, *, weak_if_scalar_first: bool = False
                ) -> Callable[[FnCall], Tensor]:
    """The rule of an elementwise function of `arity` array operands.

    `weak_if_scalar_first`: the result is weak only when the first operand is a
    Python scalar (functions that build their result with `where` on constants of
    the first operand's type, such as `jnp.heaviside`).
    """
    spec = KindSpec.parse(spec_text)

    def rule(call: FnCall) -> Tensor:
        names = [p.name for p in call.entry.signature.params[:arity]]
        shape, dtype, weak = result_type(call, spec, names)
        if weak_if_scalar_first and isinstance(call.args[names[0]], Tensor):
            weak = False
        return emit_same(call, shape, dtype, weak)

    return rule


# ------------------------------------------------------------- jnp, unary

#: name -> kind spec (b i u f c), as jax.numpy computes them.
JNP_UNARY = {
    "negative": "- = = = =", "positive": "= = = = =", "sign": "- = = = =",
    "square": "Is = = = =", "floor": "= = = = -", "ceil": "= = = = -", "trunc": "= = = = -",
    "round": "- = = = =", "rint": "Fs Fs Fs = =", "conjugate": "= = = = =",
    "conj": "= = = = =",
    "abs": "= = = = R", "absolute": "= = = = R", "real": "= = = = R", "imag": "= = = = R",
    "angle": "Fs Fs Fs = Rs",
    "isnan": "B B B B B", "isinf": "B B B B B", "isfinite": "B B B B B",
    "logical_not": "B B B B B", "signbit": "B B B B -",
    "invert": "= = = - -", "bitwise_not": "= = = - -",
    "cbrt": "F F F = -", "i0": "F F F = -",
    "log2": "Fs Fs Fs =s =s", "log10": "Fs Fs Fs =s =s", "deg2rad": "Fs Fs Fs =s =s",
    "rad2deg": "Fs Fs Fs =s =s", "sinc": "Fs Fs Fs =s =s",
    "radians": "Fs Fs Fs =s =s", "degrees": "Fs Fs Fs =s =s",
}
for _n in ("exp", "exp2", "expm1", "log", "log1p", "sqrt", "sin", "cos", "tan", "arcsin",
           "arccos", "arctan", "sinh", "cosh", "tanh", "arcsinh", "arccosh", "arctanh",
           "reciprocal"):
    JNP_UNARY[_n] = "F F F = ="
for _n, _spec in JNP_UNARY.items():
    register(_n, ("jnp",), "x, decimals=0" if _n == "round" else "x", elementwise(_spec, 1),
             doc=f"elementwise jnp.{_n}", kind_spec=_spec)
# removed from jax.numpy in JAX 0.10 (deprecated since 0.9): the same function as trunc
register("fix", ("jnp",), "x", elementwise("= = = = -", 1), code="jnp.trunc",
         doc="elementwise jnp.fix (emitted as jnp.trunc, which JAX 0.10 kept)",
         kind_spec="= = = = -")

# ------------------------------------------------------------- jnp, binary

JNP_BINARY = {
    "add": "= = = = =", "multiply": "= = = = =", "maximum": "= = = = =",
    "minimum": "= = = = =", "fmax": "= = = = =", "fmin": "= = = = =",
    "subtract": "- = = = =",
    "divide": "F F F = =", "true_divide": "F F F = =", "arctan2": "F F F = =",
    "logaddexp": "F F F = =", "logaddexp2": "Fs Fs Fs =s =s", "float_power": "F F F = =",
    "bitwise_and": "= = = - -", "bitwise_or": "= = = - -", "bitwise_xor": "= = = - -",
    "left_shift": "I = = - -", "right_shift": "I = = - -",
    "copysign": "F F F = -", "nextafter": "F F F = -",
    "floor_divide": "Is = = = -", "mod": "Is = = = -", "remainder": "Is = = = -",
    "fmod": "Is = = = -",
    "hypot": "Fs Fs Fs =s -",
    "logical_and": "B B B B B", "logical_or": "B B B B B", "logical_xor": "B B B B B",
    "equal": "B B B B B", "not_equal": "B B B B B", "less": "B B B B B",
    "less_equal": "B B B B B", "greater": "B B B B B", "greater_equal": "B B B B B",
}
for _n, _spec in JNP_BINARY.items():
    register(_n, ("jnp",), "x, y", elementwise(_spec, 2), doc=f"elementwise jnp.{_n}",
             kind_spec=_spec)
register("isclose", ("jnp",), "a, b, rtol=1e-05, atol=1e-08, equal_nan=False",
         elementwise("B B B B B", 2), doc="elementwise jnp.isclose", kind_spec="B B B B B")


_POWER = KindSpec.parse("I = = = =")


def power_dtype(call: FnCall, base: str, exponent: str) -> tuple[tuple[int, ...], str, bool]:
    """`jnp.power`: bool counts as int32; an array exponent makes integer results strong,
    and so does a strong integer exponent a float result (a static exponent keeps both weak).
    """
    shape, dtype, weak = result_type(call, _POWER, [base, exponent])
    e = call.aval(exponent)
    if isinstance(call.args[exponent], int):  # a static integer power: lax.integer_pow
        weak = call.aval(base)[2] and weak
    elif isinstance(call.args[exponent], Tensor) and (
            not dt.is_inexact(dtype) or (not e[2] and dt.is_integer(e[1]))):
        weak = False
    return shape, dtype, weak


def _power(call: FnCall) -> Tensor:
    shape, dtype, weak = power_dtype(call, "x", "y")
    return emit_same(call, shape, dtype, weak)


register("power", ("jnp",), "x, y", _power, doc="elementwise jnp.power", kind_spec=None)
register("pow", ("jnp",), "x, y", _power, doc="elementwise jnp.pow (power)", kind_spec=None)
register("heaviside", ("jnp",), "x, y", elementwise("F F F = -", 2, weak_if_scalar_first=True),
         doc="elementwise jnp.heaviside", kind_spec="F F F = -")


# ------------------------------------------------------------- lax

LAX_UNARY = {
    "rsqrt": "- - - = =", "exp": "- - - = =", "log": "- - - = =", "tanh": "- - - = =",
    "logistic": "- - - = =", "sqrt": "- - - = =", "sin": "- - - = =", "cos": "- - - = =",
    "exp2": "- - - = =", "log1p": "- - - = =", "expm1": "- - - = =", "cbrt": "- - - = -",
    "erf": "- - - = -", "erfc": "- - - = -", "erf_inv": "- - - = -", "lgamma": "- - - = -",
    "digamma": "- - - = -", "floor": "- - - = -", "ceil": "- - - = -",
    "round": "- - - = -", "is_finite": "- - - B -",
    "abs": "- = - = R", "neg": "- = = = =", "sign": "- = = = =", "square": "- = = = =",
    "stop_gradient": "= = = = =", "reciprocal": "- - - = =",
    "bitwise_not": "= = = - -", "population_count": "- = = - -",
}
for _n, _spec in LAX_UNARY.items():
    register(_n, ("lax",), "x", elementwise(_spec, 1), doc=f"elementwise jax.lax.{_n}",
             kind_spec=_spec)


def _lax_binary(spec_text: str) -> Callable[[FnCall], Tensor]:
    """lax is strict: both operands have one dtype; a Python scalar takes the other's."""
    spec = KindSpec.parse(spec_text)

    def rule(call: FnCall) -> Tensor:
        values = [call.args["x"], call.args["y"]]
        avals = [call.aval("x"), call.aval("y")]
        shape = shape_rule(call, sh.broadcast_shapes, *[a[0] for a in avals])
        arrays = [a for a, v in zip(avals, values) if isinstance(v, Tensor)] or avals
        dtypes = {a[1] for a in arrays}
        if len(dtypes) > 1 or not all(_scalar_fits(v, arrays[0][1]) for v in values
                                      if not isinstance(v, Tensor)):
            got = " and ".join(_describe_aval(a, v) for a, v in zip(avals, values))
            raise call.fail(f"{call.written} needs operands of one dtype, got {got}",
                            hint="cast one operand, or use the jnp function, which promotes")
        dtype = dtypes.pop()
        if not spec.accepts(dtype):
            raise reject(call, spec, " and ".join(_describe_aval(a, v)
                                                  for a, v in zip(avals, values)))
        dtype, weak = spec.apply(dtype, all(a[2] for a in avals))
        return emit_same(call, shape, dtype, weak)

    return rule


def _scalar_fits(value: object, dtype: str) -> bool:
    """Whether lax takes this Python scalar with a `dtype` operand: only of that very dtype."""
    aval = aval_of(value)
    return aval is not None and aval[1] == dtype


for _n, _spec in [("add", "- = = = ="), ("sub", "- = = = ="), ("mul", "- = = = ="),
                  ("div", "- = = = ="), ("rem", "- = = = -"), ("max", "= = = = ="),
                  ("min", "= = = = ="), ("atan2", "- - - = ="), ("nextafter", "- - - = -"),
                  ("bitwise_and", "= = = - -"), ("bitwise_or", "= = = - -"),
                  ("bitwise_xor", "= = = - -"), ("eq", "B B B B B"), ("ne", "B B B B B"),
                  ("lt", "B B B B -"), ("le", "B B B B -"), ("gt", "B B B B -"),
                  ("ge", "B B B B -")]:
    register(_n, ("lax",), "x, y", _lax_binary(_spec), doc=f"elementwise jax.lax.{_n}",
             kind_spec=_spec)


def _lax_pow(call: FnCall) -> Tensor:
    """`lax.pow(x, y)`: a float or complex base; the exponent of its dtype or an integer."""
    x, y = call.aval("x"), call.aval("y")
    shape = shape_rule(call, sh.broadcast_shapes, x[0], y[0])
    if not (dt.is_inexact(x[1]) and (y[1] == x[1] or dt.is_integer(y[1]))):
        raise call.fail(f"{call.written} needs a float or complex base and an exponent of its "
                        f"dtype or an integer dtype, got {_describe_aval(x, call.args['x'])} "
                        f"and {_describe_aval(y, call.args['y'])}",
                        hint="use jnp.power, which promotes")
    return emit_same(call, shape, x[1], x[2] and y[2])


register("pow", ("lax",), "x, y", _lax_pow, doc="elementwise jax.lax.pow", kind_spec=None)

# ------------------------------------------------------------- jax.nn activations

#: jax.nn activations: name -> (signature, kind spec).
ACTIVATIONS = {
    "relu": ("x", "Iw = = = ="), "hard_tanh": ("x", "Iw = = = ="),
    "relu6": ("x", "Fw Fw Fw = ="), "elu": ("x, alpha=1.0", "Fw Fw Fw = ="),
    "celu": ("x, alpha=1.0", "Fw Fw Fw = ="), "selu": ("x", "Fw Fw Fw = ="),
    "hard_sigmoid": ("x", "Fw Fw Fw = ="), "hard_silu": ("x", "Fw Fw Fw = ="),
    "hard_swish": ("x", "Fw Fw Fw = ="), "sparse_plus": ("x", "Fw Fw Fw = ="),
    "leaky_relu": ("x, negative_slope=0.01", "Fw Fw Fw = ="),
    "sparse_sigmoid": ("x", "Fw Fw Fw = -"),
    "gelu": ("x, approximate=True", "Fs Fs Fs =s =s"),
    "sigmoid": ("x", "- - - = ="), "silu": ("x", "- - - = ="), "swish": ("x", "- - - = ="),
    "log_sigmoid": ("x", "- F F = ="),
    "soft_sign": ("x", "Fw F F = ="), "softplus": ("x", "Fw F F = ="),
    "mish": ("x", "Fw F F = ="), "squareplus": ("x, b=4", "F F F = ="),
}
for _n, (_sig, _spec) in ACTIVATIONS.items():
    register(_n, ("nn", "jax.nn"), _sig, elementwise(_spec, 1), code=f"jax.nn.{_n}",
             doc=f"activation jax.nn.{_n}", kind_spec=_spec)
register("tanh", ("nn",), "x", elementwise("F F F = =", 1), code="jnp.tanh",
         doc="activation jnp.tanh", kind_spec="F F F = =")

# ------------------------------------------------------------- Python operators

#: operator symbol -> (entry name, the jnp function it calls).
BINOPS = {
    "+": ("add", "add"), "-": ("sub", "subtract"), "*": ("mul", "multiply"),
    "/": ("truediv", "true_divide"), "//": ("floordiv", "floor_divide"), "%": ("mod", "mod"),
    "**": ("pow", "power"), "@": ("matmul", "matmul"), "&": ("and", "bitwise_and"),
    "|": ("or", "bitwise_or"), "^": ("xor", "bitwise_xor"), "<<": ("lshift", "left_shift"),
    ">>": ("rshift", "right_shift"), "==": ("eq", "equal"), "!=": ("ne", "not_equal"),
    "<": ("lt", "less"), "<=": ("le", "less_equal"), ">": ("gt", "greater"),
    ">=": ("ge", "greater_equal"),
}
_STEMS = {"==": "mask", "!=": "mask", "<": "mask", "<=": "mask", ">": "mask", ">=": "mask"}


def _binop_rule(symbol: str, function: str) -> Callable[[FnCall], Tensor]:
    spec = KindSpec.parse(JNP_BINARY[function]) if function in JNP_BINARY else None

    def rule(call: FnCall) -> Tensor:
        if symbol == "@":
            a, b = call.aval("left"), call.aval("right")
            shape = shape_rule(call, sh.matmul, a[0], b[0])
            dtype, weak = matmul_dtype(call, a, b)
        elif symbol == "**":
            shape, dtype, weak = power_dtype(call, "left", "right")
        else:
            assert spec is not None
            shape, dtype, weak = result_type(call, spec, ["left", "right"])
        out = call.out(shape, dtype, weak)
        code = Code.of(value_code(call.args["left"]), f" {symbol} ",
                       value_code(call.args["right"]))
        call.emit_call([out], stem=_STEMS.get(symbol, "y"), code=code)
        return out

    return rule


for _sym, (_name, _fn) in BINOPS.items():
    REGISTRY.add(Entry(_name, ("operator",), "function", Signature.parse("left, right"),
                       _binop_rule(_sym, _fn), "ops/call.j2", doc=f"x {_sym} y",
                       extra={"symbol": _sym, "kind_spec": JNP_BINARY.get(_fn)}))


def _unop_rule(symbol: str, function: str) -> Callable[[FnCall], Tensor]:
    spec = KindSpec.parse(JNP_UNARY[function])

    def rule(call: FnCall) -> Tensor:
        shape, dtype, weak = result_type(call, spec, ["operand"])
        out = call.out(shape, dtype, weak)
        call.emit_call([out], stem="y", code=Code.of(symbol, value_code(call.args["operand"])))
        return out

    return rule


for _sym, _name, _fn in (("-", "neg", "negative"), ("+", "pos", "positive"),
                         ("~", "invert", "invert")):
    REGISTRY.add(Entry(_name, ("operator",), "function", Signature.parse("operand"),
                       _unop_rule(_sym, _fn), "ops/call.j2", doc=f"{_sym}x",
                       extra={"symbol": _sym, "kind_spec": JNP_UNARY[_fn]}))
