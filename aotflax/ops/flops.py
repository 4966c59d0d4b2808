"""FLOP rules: what every operation of the table costs, counted at build time.

Each entry of the operation table has one rule here, keyed by its qualified
name (`registry.qualname`: "nn.Dense", "jnp.mean", "operator.add"); a test
fails when an entry has none.  `FnCall.emit` asks `count` for every op an entry
emits, with the call's bound arguments, the template's arguments and the
outputs, and records the number on the op (`program.OpInfo.flops`), where
`aotflax summary` adds them up per module instance.

The conventions (`docs/operations.md` lists every entry with its rule):

- A multiply-add is 2 FLOPs: a contraction costs `2 * output elements *
  contracted size` (matmuls, `dot_general`, einsum, Dense, attention).
- A convolution costs 2 FLOPs per multiply-add that touches real input:
  `2 * batch * out_features * in_features / groups * taps`, where `taps`
  counts, per spatial dim, the (output position, kernel position) pairs whose
  input index is inside the input and not a hole of `input_dilation` (taps on
  padding cost nothing).  This is XLA's own rule, so strides, dilation and
  groups come out exact.
- Elementwise functions cost a fixed number of FLOPs per output element: the
  elementwise operations of jax's definition as XLA receives it, each
  transcendental (exp, log, tanh, rsqrt, ...) counting 1 (XLA reports those as
  "transcendentals", apart from its "flops").  Most are 1; `sigmoid` is 4
  (`1 / (1 + exp(-x))`), approximate `gelu` 9, `softplus` 8 (see `_PER_ELEMENT`).
- A reduction of `n` elements to `m` costs `n - m` (one add or compare per
  element beyond the first of each output); a mean adds `m` divides (`n`).
- Moving or creating data costs 0: reshapes, transposes, slices, gathers,
  concatenation, padding, broadcasting, constants, dtype conversions
  (XLA counts a conversion as 1 FLOP per element) and random bits.
- Layers add up their statements (`TEMPLATES`, one rule per template, each
  counting the template's expression term by term).

`tests/test_flops.py` checks the rules on cases computed by hand and against
XLA's `cost_analysis()`; `bench/flops.py` compares whole models.
"""

from __future__ import annotations

import ast
import functools
import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from .. import shapes as sh
from ..program import Code, Tensor, Var
from .registry import Entry, qualname


class OpView:
    """One op an entry emits, as a FLOP rule sees it (made for every op: a plain class
    with slots, the cheapest to construct; rules only read it)."""

    __slots__ = ("call", "template", "args", "outputs")

    def __init__(self, call: Any, template: str, args: dict[str, Code],
                 outputs: tuple[Var, ...]):
        #: The call that emitted it (`FnCall` / `LayerCall`): its `entry` and bound `args`.
        self.call = call
        #: Template name ("ops/call.j2", "layers/dense.j2").
        self.template = template
        #: Template arguments.
        self.args = args
        self.outputs = outputs

    def tensors(self, name: str | None = None) -> list[Tensor]:
        """Tensors read by template argument `name` (all arguments when None), in order."""
        codes = [self.args[name]] if name is not None else list(self.args.values())
        return [v for c in codes for v in c.vars() if isinstance(v, Tensor)]

    def arg(self, name: str) -> Tensor:
        """The first tensor of template argument `name` (e.g. `x` in `x.astype(...)`)."""
        return self.tensors(name)[0]

    def has(self, name: str) -> bool:
        """Whether template argument `name` is present and not empty (an optional bias)."""
        code = self.args.get(name)
        return code is not None and any(p != "" for p in code.parts)

    def literal(self, name: str) -> Any:
        """Template argument `name` as the Python literal it was rendered from (a repr)."""
        return _literal("".join(p for p in self.args[name].parts if isinstance(p, str)))

    def bound(self, name: str, default: Any = None) -> Any:
        """The call's bound argument `name` (`default` when the entry has none)."""
        return self.call.args.get(name, default)

    def out(self, i: int = 0) -> Tensor:
        return [v for v in self.outputs if isinstance(v, Tensor)][i]

    def out_size(self) -> int:
        """Elements of all array outputs."""
        total = 0
        for v in self.outputs:
            if isinstance(v, Tensor):
                total += math.prod(v.shape)
        return total

    def first_input(self) -> Tensor | None:
        """The first array the op reads (the operand of a reduction or unary function)."""
        tensors = self.tensors()
        return tensors[0] if tensors else None


@functools.lru_cache(maxsize=1024)
def _literal(text: str) -> Any:
    """`ast.literal_eval`, once per text (the same axes and windows recur in every model);
    the rules only read what it returns."""
    return ast.literal_eval(text)


@dataclass(frozen=True)
class FlopRule:
    """How one entry (or template) counts; `text` is what the docs say."""

    text: str
    fn: Callable[[OpView], int]
    #: FLOPs per element, for elementwise rules (an activation passed as `gate_fn`).
    per_element: int | None = None


def count(call: Any, template: str, args: dict[str, Code], outputs: Sequence[Var]) -> int:
    """FLOPs of one op that `call` emits (see the module docstring for the rules)."""
    view = OpView(call, template, args, tuple(outputs))
    rule = RULES.get(call.entry.qualname) or rule_for(call.entry)
    return max(0, int(rule.fn(view)))


def rule_for(entry: Entry) -> FlopRule:
    """The rule of a table entry; a missing one is a compiler bug (the coverage test)."""
    name = entry.qualname
    rule = RULES.get(name)
    if rule is None:
        raise KeyError(f"no FLOP rule for operation {name} (add one to aotflax/ops/flops.py)")
    return rule


def _size(shape: Sequence[int]) -> int:
    return sh.size(tuple(shape))


def _shape_of(value: Any) -> tuple[int, ...]:
    """Shape of a bound argument: a tensor, a Python scalar or a nested list of numbers."""
    if isinstance(value, Tensor):
        return value.shape
    if isinstance(value, (list, tuple)) and value:
        return (len(value), *_shape_of(value[0]))
    return ()


def _first_param(view: OpView, i: int = 0) -> tuple[int, ...]:
    """Shape of the entry's `i`-th parameter as bound (the left or right operand)."""
    name = view.call.entry.signature.params[i].name
    return _shape_of(view.bound(name))


# ------------------------------------------------------------- families


ZERO = FlopRule("0 (moves, selects or creates data)", lambda v: 0)


def elementwise(k: int, text: str | None = None) -> FlopRule:
    """`k` FLOPs per output element."""
    return FlopRule(text or f"{k} per output element", lambda v: k * v.out_size(),
                    per_element=k)


def _reduced(view: OpView) -> tuple[int, int]:
    """(input elements, output elements) of a reduction."""
    x = view.first_input()
    n = sh.size(x.shape) if x is not None else 0
    return n, view.out_size()


def _on_reduced(rule: Callable[[int, int], int]) -> Callable[[OpView], int]:
    """A FLOP rule of (input elements n, output elements m) of a reduction."""
    return lambda view: rule(*_reduced(view))


REDUCE = FlopRule("n - m: one add or compare per element beyond the first of each of the "
                  "m outputs", _on_reduced(lambda n, m: n - m))
MEAN = FlopRule("n: n - m adds and m divides", lambda v: _reduced(v)[0])
VAR = FlopRule("4n + m: mean, subtract, square, sum, divide",
               _on_reduced(lambda n, m: 4 * n + m))
STD = FlopRule("4n + 2m: the variance and a square root per output",
               _on_reduced(lambda n, m: 4 * n + 2 * m))
ARG_REDUCE = FlopRule("9 (n - m): compare and select value and index pairs",
                      _on_reduced(lambda n, m: 9 * (n - m)))
NANSUM = FlopRule("3n - m: isnan and select, then the sum",
                  _on_reduced(lambda n, m: 3 * n - m))
NANMEAN = FlopRule("8n: masked sum, count and divide", lambda v: 8 * _reduced(v)[0])
PTP = FlopRule("2n - m: max, min, subtract", _on_reduced(lambda n, m: 2 * n - m))


def _log2ceil(n: int) -> int:
    return max(0, (n - 1).bit_length())


SORT = FlopRule("n * ceil(log2 n) comparisons (XLA's rule)",
                lambda v: (lambda n: n * _log2ceil(n))(_reduced(v)[0]))
MEDIAN = FlopRule("n * ceil(log2 n) + 3n: a sort, then the middle elements",
                  lambda v: (lambda n: n * _log2ceil(n) + 3 * n)(_reduced(v)[0]))


def _top_k(view: OpView) -> int:
    x = view.first_input()
    n = sh.size(x.shape) if x is not None else 0
    return n * max(1, _log2ceil(int(view.bound("k", 1))))


TOP_K = FlopRule("n * ceil(log2 k) comparisons (XLA reports 0)", _top_k)


def _qr(view: OpView) -> int:
    """LAPACK's counts per matrix: geqrf (the reflectors), then orgqr (Q from them)."""
    *batch, m, n = _first_param(view)
    big, small = max(m, n), min(m, n)
    total = 2 * big * small * small - 2 * small ** 3 // 3
    if view.bound("mode", "reduced") != "r":
        k = m if view.bound("mode", "reduced") == "complete" else small
        total += 4 * m * k * small - 2 * (m + k) * small * small + 4 * small ** 3 // 3
    return sh.size(tuple(batch)) * total


QR = FlopRule("LAPACK's counts per matrix: geqrf 2 M s^2 - 2 s^3 / 3 (M = max(m, n), s = "
              "min(m, n)), plus orgqr 4 m k s - 2 (m + k) s^2 + 4 s^3 / 3 to form Q (k its "
              "columns); XLA reports 0", _qr)


def _lapack(per_matrix: Callable[[int], int]) -> Callable[[OpView], int]:
    """A count per n x n matrix of the first argument, times the number of matrices."""
    def rule(view: OpView) -> int:
        *batch, _, n = _first_param(view)
        return sh.size(tuple(batch)) * per_matrix(n)

    return rule


INV = FlopRule("LAPACK's getrf + getri: 2 n^3 per n x n matrix; XLA reports ~0 (a library "
               "call)", _lapack(lambda n: 2 * n ** 3))
DET = FlopRule("LAPACK's getrf, 2 n^3 / 3, and the diagonal's product, n, per matrix; XLA "
               "reports ~0", _lapack(lambda n: 2 * n ** 3 // 3 + n))
SLOGDET = FlopRule("LAPACK's getrf, 2 n^3 / 3, and a log and an add per diagonal element, 2 n, "
                   "per matrix; XLA reports ~0", _lapack(lambda n: 2 * n ** 3 // 3 + 2 * n))
CHOLESKY = FlopRule("LAPACK's potrf: n^3 / 3 per matrix; XLA reports ~0",
                    _lapack(lambda n: n ** 3 // 3))
EIGH = FlopRule("the symmetric QR algorithm with eigenvectors (Golub and Van Loan): 9 n^3 per "
                "matrix; XLA reports ~0", _lapack(lambda n: 9 * n ** 3))


def _solve(view: OpView) -> int:
    *batch, _, n = _first_param(view)
    b = _first_param(view, 1)
    k = 1 if len(b) == 1 else b[-1]
    return sh.size(tuple(batch)) * (2 * n ** 3 // 3 + 2 * n * n * k)


def _lu_solve(view: OpView) -> int:
    lu = _shape_of(view.bound("lu_and_piv")[0])
    b = _first_param(view, 1)
    k = 1 if len(b) == 1 else b[-1]
    return sh.size(tuple(lu[:-2])) * 2 * lu[-1] ** 2 * k


LU_FACTOR = FlopRule("LAPACK's getrf: 2 n^3 / 3 per matrix; XLA reports ~0",
                     _lapack(lambda n: 2 * n ** 3 // 3))
LU_SOLVE = FlopRule("LAPACK's getrs: 2 n^2 k per matrix (k right-hand sides); XLA reports ~0",
                    _lu_solve)
SOLVE = FlopRule("LAPACK's getrf + getrs: 2 n^3 / 3 + 2 n^2 k per matrix (k right-hand "
                 "sides); XLA reports ~0", _solve)


def _svd(view: OpView) -> int:
    *batch, m, n = _first_param(view)
    big, small = max(m, n), min(m, n)
    if view.bound("compute_uv", True):
        return sh.size(tuple(batch)) * (4 * big * big * small + 8 * big * small * small
                                        + 9 * small ** 3)
    return sh.size(tuple(batch)) * (4 * big * small * small - 4 * small ** 3 // 3)


SVD = FlopRule("Golub and Van Loan's R-SVD per matrix (M = max(m, n), s = min(m, n)): "
               "4 M s^2 - 4 s^3 / 3 for the singular values, 4 M^2 s + 8 M s^2 + 9 s^3 with "
               "U and V; XLA reports ~0", _svd)


def _resize(view: OpView) -> int:
    """jax resizes one axis after another, each a contraction with an (in, out) matrix of
    weights: 2 in out per element of the other axes as they are then."""
    if view.bound("method") == "nearest":
        return 0
    current = list(_first_param(view))
    total = 0
    for axis, out in enumerate(view.bound("shape")):
        if out != current[axis]:
            rest = sh.size(tuple(current)) // max(current[axis], 1)
            total += 2 * current[axis] * out * rest
            current[axis] = out
    return total


RESIZE = FlopRule("0 for \"nearest\" (a gather); else, for each axis that changes size in "
                  "order, 2 in out per element of the other axes (jax's contraction with a "
                  "weight matrix; the weights themselves not counted)", _resize)


def _integer_pow_cost(y: Any) -> int:
    """Multiplications of `x ** y` by repeated squaring (as XLA expands integer_pow)."""
    if not isinstance(y, int) or y == 0:
        return 0
    n = abs(y)
    cost = n.bit_length() - 1 + bin(n).count("1") - 1
    return cost + (1 if y < 0 else 0)


def _index_elements(view: OpView, name: str) -> int:
    value = view.bound(name)
    return sh.size(value.shape) if isinstance(value, Tensor) else len(_flat(value))


def _flat(value: Any) -> list[Any]:
    if isinstance(value, (list, tuple)):
        return [x for v in value for x in _flat(v)]
    return [value]


def _take(view: OpView) -> int:
    if view.bound("mode") not in (None, "fill"):
        return 0
    return view.out_size() + 6 * _index_elements(view, "indices")


def _getitem(view: OpView) -> int:
    index = view.bound("index")
    items = index if isinstance(index, tuple) else (index,)
    return sum(3 * sh.size(i.shape) for i in items if isinstance(i, Tensor))


#: Gathers: the index arithmetic XLA counts (negative indices wrap, out-of-range fill).
TAKE = FlopRule("out + 6 per index (mode='fill', the default: bounds checks and the fill "
                "select); other modes 0", _take)
TAKE_ALONG_AXIS = elementwise(7, "7 per output element (index wrap, bounds checks, fill)")
GETITEM = FlopRule("3 per element of each integer-array index (negative indices wrap); "
                   "slices and ints 0", _getitem)

#: FLOPs per element of the default threefry2x32 samplers, as XLA counts them (bits and
#: their conversion to the distribution), for a 1-D shape; each further dimension of
#: size > 1 adds 2 (the counters' index arithmetic).
RANDOM_PER_ELEMENT = {"uniform": 36, "bernoulli": 37, "normal": 76}
#: `jax.random.fold_in(rng, path hash)`: one threefry block on the key.
FOLD_IN = 35


#: A sampler's own setup (splitting the key into counters), per call.
RANDOM_SETUP = 11


def random_bits(kind: str, shape: Sequence[int]) -> int:
    """FLOPs XLA counts to sample `shape` from `jax.random.<kind>`."""
    dims = [d for d in shape if d != 1]
    per = RANDOM_PER_ELEMENT[kind] + 2 * max(0, len(dims) - 1)
    return per * _size(shape) + RANDOM_SETUP


def _folds(view: OpView, name: str) -> int:
    return FOLD_IN * _text(view, name).count("jax.random.fold_in(")


def _random(kind: str) -> FlopRule:
    return FlopRule(f"{RANDOM_PER_ELEMENT[kind]} per element, + 2 per element for each "
                    "dimension of size > 1 after the first, + 11 per call (threefry2x32 bits "
                    "and their conversion, as XLA counts them)",
                    lambda v: random_bits(kind, v.out().shape))


def _axis_size(view: OpView, shape: tuple[int, ...], default: Any = -1) -> int:
    axis = view.bound("axis", default)
    if axis is None:
        return sh.size(shape)
    axes = sh.normalize_axes(axis, len(shape)) if shape else ()
    return math.prod(shape[a] for a in axes)


def _rows(view: OpView) -> tuple[int, int]:
    """(elements, rows) of a function over `axis` (softmax, cumsum, ...)."""
    x = view.first_input()
    shape = x.shape if x is not None else view.out().shape
    n = sh.size(shape)
    return n, n // max(1, _axis_size(view, shape))


def _on_rows(rule: Callable[[int, int], int]) -> Callable[[OpView], int]:
    """A FLOP rule of (elements n, rows m) of a function over an axis."""
    return lambda view: rule(*_rows(view))


SOFTMAX = FlopRule("5n - m: max, subtract, exp, sum, divide (m rows)",
                   _on_rows(lambda n, m: 5 * n - m))
LOG_SOFTMAX = FlopRule("5n: max, subtract, exp, sum, log, subtract",
                       lambda v: 5 * _rows(v)[0])
STANDARDIZE = FlopRule("5n + 5m: mean, mean of squares, subtract, rsqrt, multiply",
                       _on_rows(lambda n, m: 5 * n + 5 * m))
LOGSUMEXP = FlopRule("4n + 4m: max, subtract, exp, sum, log, add (m outputs)",
                     lambda v: 4 * _reduced(v)[0] + 4 * v.out_size())
CUMSUM = FlopRule("n - m: one add per element after the first of each of the m rows "
                  "(XLA:CPU counts its reduce-window lowering, window - 1 per element)",
                  _on_rows(lambda n, m: n - m))


def _clip(view: OpView) -> int:
    bounds = sum(view.bound(k) is not None for k in ("min", "max"))
    return bounds * view.out_size()


CLIP = FlopRule("1 per output element per bound given", _clip)


# ------------------------------------------------------------- contractions


def _contraction(view: OpView, contracted: int) -> int:
    """2 FLOPs per multiply-add (XLA's rule for a dot, whatever the contracted size)."""
    return 2 * contracted * view.out_size()


def _matmul(view: OpView) -> int:
    a = _first_param(view)
    return _contraction(view, a[-1] if a else 1)


def _dot(view: OpView) -> int:
    a, b = _first_param(view), _first_param(view, 1)
    if not a or not b:
        return view.out_size()  # a scalar scales
    return _contraction(view, a[-1])


def _tensordot(view: OpView) -> int:
    a = _first_param(view)
    axes = view.bound("axes", 2)
    contracted: Sequence[int]
    if isinstance(axes, int):
        contracted = range(len(a) - axes, len(a))
    else:
        contracted = (axes[0],) if isinstance(axes[0], int) else tuple(axes[0])
    return _contraction(view, math.prod(a[i] for i in contracted))


def _dot_general(view: OpView) -> int:
    a = _first_param(view)
    (contract, _), _ = view.bound("dimension_numbers")
    return _contraction(view, math.prod(a[i] for i in contract))


MATMUL = FlopRule("2 * output elements * contracted size", _matmul)
DOT = FlopRule("2 * output elements * contracted size (a scalar operand: 1 per element)", _dot)
TENSORDOT = FlopRule("2 * output elements * contracted size", _tensordot)
DOT_GENERAL = FlopRule("2 * output elements * contracted size", _dot_general)


def einsum_flops(subscripts: str, shapes: Sequence[tuple[int, ...]]) -> int:
    """FLOPs of `jnp.einsum(subscripts, *operands)`, contracting left to right.

    Labels that only one operand carries and nothing later needs are summed out
    first (a reduction); each pairwise product then costs 2 per multiply-add
    over the product of its labels' sizes (1 when nothing is contracted).
    """
    spec = subscripts.replace(" ", "")
    inputs, arrow, output = spec.partition("->")
    terms = inputs.split(",")
    n_ell = max((len(s) - len(t.replace("...", "")) for t, s in zip(terms, shapes)
                 if "..." in t), default=0)
    ell = "".join(chr(0x100 + i) for i in range(n_ell))  # one label per ellipsis dim

    def expand(term: str, rank: int) -> str:
        if "..." not in term:
            return term
        k = rank - len(term.replace("...", ""))
        return term.replace("...", ell[n_ell - k:] if k else "")

    ops = [expand(t, len(s)) for t, s in zip(terms, shapes)]
    sizes: dict[str, int] = {}
    for labels, shape in zip(ops, shapes):
        for c, d in zip(labels, shape):
            sizes[c] = max(sizes.get(c, 1), d)
    if arrow:
        out = expand(output, len(output.replace("...", "")) + n_ell)
    else:
        counts = {c: sum(op.count(c) for op in ops) for c in sizes}
        out = ell + "".join(sorted(c for c, k in counts.items() if k == 1 and c not in ell))

    def prod(labels: set[str]) -> int:
        return math.prod(sizes[c] for c in labels)

    def reduce(labels: set[str], keep: set[str]) -> tuple[set[str], int]:
        kept = labels & keep
        return kept, prod(labels) - prod(kept) if kept != labels else 0

    flops = 0
    cur, cost = reduce(set(ops[0]), set(out).union(*map(set, ops[1:])))
    flops += cost
    for i, term in enumerate(ops[1:], 1):
        later = set(out).union(*map(set, ops[i + 1:]))
        nxt, cost = reduce(set(term), later | cur)
        cur, cost2 = reduce(cur, later | nxt)
        union = cur | nxt
        kept = union & later
        flops += cost + cost2 + 2 * prod(union)  # a dot_general, contracted or not
        cur = kept
    return flops


def _einsum(view: OpView) -> int:
    return einsum_flops(view.bound("subscripts"), [_shape_of(o) for o in view.bound("operands")])


EINSUM = FlopRule("2 per multiply-add of each pairwise product, left to right; labels summed "
                  "out of one operand first cost n - m", _einsum)


# ------------------------------------------------------------- convolutions


@functools.lru_cache(maxsize=4096)
def conv_taps(in_size: int, window: int, out_size: int, stride: int, pad_low: int,
              lhs_dilation: int = 1, rhs_dilation: int = 1) -> int:
    """(output, kernel) position pairs of one spatial dim that read a real input element.

    XLA's `HloCostAnalysis::GetConvolutionFlops`: the input index of output `o`
    and kernel tap `k` is `o * stride - pad_low + k * rhs_dilation` in the
    `lhs_dilation`-dilated input; it counts when it lands on an element. The
    count never loops over a window a model file may make as large as it likes:
    outputs whose whole window lies on the input (most of them, without input
    dilation) read `window` elements each; the others are counted one by one
    (once per set of arguments: models repeat their convolutions).
    """
    last = (in_size - 1) * lhs_dilation  # last element of the dilated input
    lo, hi = out_size, out_size  # outputs lo..hi-1 read `window` elements each
    if lhs_dilation == 1 and stride >= 1 and rhs_dilation >= 1:
        first = -(-pad_low // stride) if pad_low > 0 else 0  # tap 0 on the input from here
        end = (last + pad_low - (window - 1) * rhs_dilation) // stride  # last tap, up to here
        lo = min(first, out_size)
        hi = max(min(end + 1, out_size), lo)
    total = (hi - lo) * window
    for o in (*range(lo), *range(hi, out_size)):
        total += _taps_at(o * stride - pad_low, window, last, lhs_dilation, rhs_dilation)
    return total


def _taps_at(base: int, window: int, last: int, lhs_dilation: int, rhs_dilation: int) -> int:
    """Taps of one output (`base`: the dilated input index of its tap 0) on an element."""
    step = lhs_dilation // math.gcd(rhs_dilation, lhs_dilation)  # taps between hits
    lo = max(0, -(base // rhs_dilation))  # first tap at index >= 0
    hi = min(window - 1, (last - base) // rhs_dilation) if last >= base else -1
    first = next((k for k in range(lo, min(hi, lo + step - 1) + 1)
                  if (base + k * rhs_dilation) % lhs_dilation == 0), None)
    return 0 if first is None else (hi - first) // step + 1


def conv_flops(x: tuple[int, ...], out: tuple[int, ...], window: Sequence[int],
               strides: Sequence[int], pads: Sequence[tuple[int, int]],
               lhs_dilation: Sequence[int], rhs_dilation: Sequence[int], groups: int) -> int:
    """2 * batch * out features * in features / groups * taps (channels-last shapes)."""
    taps = 1
    for i, w in enumerate(window):
        taps *= conv_taps(x[1 + i], w, out[1 + i], strides[i], pads[i][0], lhs_dilation[i],
                          rhs_dilation[i])
    return 2 * x[0] * out[-1] * (x[-1] // groups) * taps


def _per_dim(value: Any, n: int) -> tuple[int, ...]:
    if value is None:
        return (1,) * n
    if isinstance(value, int):
        return (value,) * n
    return tuple(value)


def _window(view: OpView) -> tuple[int, ...]:
    ks = view.bound("kernel_size")
    return (ks,) if isinstance(ks, int) else tuple(ks)


def _conv_pads(view: OpView, x: tuple[int, ...], window: tuple[int, ...],
               strides: tuple[int, ...], lhs: tuple[int, ...],
               rhs: tuple[int, ...]) -> list[tuple[int, int]]:
    padding = view.bound("padding", "SAME")
    n = len(window)
    if isinstance(padding, int):
        padding = ((padding, padding),) * n
    elif not isinstance(padding, str):
        padding = tuple((p, p) if isinstance(p, int) else tuple(p) for p in padding)
    return list(_pads(tuple(x[1:-1]), window, strides, padding, lhs, rhs))


@functools.lru_cache(maxsize=1024)
def _pads(spatial: tuple[int, ...], window: tuple[int, ...], strides: tuple[int, ...],
          padding: str | tuple[tuple[int, int], ...], lhs: tuple[int, ...],
          rhs: tuple[int, ...]) -> tuple[tuple[int, int], ...]:
    """`shapes.padtype_to_pads`, once per convolution geometry (models repeat theirs)."""
    return tuple(sh.padtype_to_pads(spatial, window, strides, padding, lhs, rhs))


def _conv(view: OpView) -> int:
    x, out = view.arg("x"), view.out()
    window = _window(view)
    n = len(window)
    strides = _per_dim(view.bound("strides"), n)
    lhs = _per_dim(view.bound("input_dilation"), n)
    rhs = _per_dim(view.bound("kernel_dilation"), n)
    groups = int(view.bound("feature_group_count", 1) or 1)
    pads = _conv_pads(view, x.shape, window, strides, lhs, rhs)
    flops = conv_flops(x.shape, out.shape, window, strides, pads, lhs, rhs, groups)
    return flops + (view.out_size() if view.has("bias") else 0)


def _conv_transpose(view: OpView) -> int:
    x, out = view.arg("x"), view.out()
    window = _window(view)
    n = len(window)
    strides = _per_dim(view.bound("strides"), n)
    rhs = _per_dim(view.bound("kernel_dilation"), n)
    padding = view.bound("padding", "SAME")
    if isinstance(padding, str):
        pads = sh.conv_transpose_pads(window, strides, padding, rhs)
    else:
        pads = [(p, p) if isinstance(p, int) else tuple(p) for p in padding]
    # lax.conv_transpose: a stride-1 convolution over the input dilated by `strides`
    flops = conv_flops(x.shape, out.shape, window, (1,) * n, pads, strides, rhs, 1)
    return flops + (view.out_size() if view.has("bias") else 0)


# ------------------------------------------------------------- layer templates


def _bias(view: OpView, name: str = "bias") -> int:
    return view.out_size() if view.has(name) else 0


def _dense(view: OpView) -> int:
    return 2 * view.out_size() * view.arg("x").shape[-1] + _bias(view)


def _dense_general(view: OpView) -> int:
    (contract, _), _ = view.literal("dims")
    x = view.arg("x")
    return 2 * view.out_size() * math.prod(x.shape[a] for a in contract) + _bias(view)


def _embed_attend(view: OpView) -> int:
    return 2 * view.out_size() * view.arg("q").shape[-1]


def _norm_stats(n: int, m: int, fast: bool) -> int:
    """mean (n) and variance: fast `E[x^2] - E[x]^2` (2n + 3m) or centered (3n)."""
    return n + (2 * n + 3 * m if fast else 3 * n)


def _bn_normalize(view: OpView, n: int, c: int) -> int:
    """`(x - mean) * (rsqrt(var + eps) * scale) + bias` with statistics of `c` elements."""
    return 2 * n + 2 * c + (c if view.has("scale") else 0) + (n if view.has("bias") else 0)


def _batch_norm(view: OpView, fast: bool = True) -> int:
    x = view.arg("x")
    reduced = view.literal("axes")
    n, c = sh.size(x.shape), math.prod(d for a, d in enumerate(x.shape) if a not in reduced)
    return _norm_stats(n, c, fast) + _bn_normalize(view, n, c) + 6 * c  # + running averages


def _batch_norm_eval(view: OpView) -> int:
    x = view.arg("x")
    axes = sh.normalize_axes(view.bound("axis", -1), x.ndim)
    return _bn_normalize(view, sh.size(x.shape), math.prod(x.shape[a] for a in axes))


def _layer_norm(view: OpView) -> int:
    n = view.out_size()
    m = n // max(1, view.out().shape[-1])
    # (x - mean) * (rsqrt(var + eps) * scale) + bias: the scale broadcasts to n
    normalize = 2 * n + 2 * m + (n if view.has("scale") else 0) + (n if view.has("bias") else 0)
    return _norm_stats(n, m, True) + normalize


def _group_norm(view: OpView, fast: bool = True) -> int:
    x, groups = view.arg("x"), view.literal("groups")
    n = sh.size(x.shape)
    m = n // (x.shape[-1] // groups * math.prod(x.shape[1:-1]))  # batch * groups
    bc = x.shape[0] * x.shape[-1]  # statistics repeated over channels
    normalize = 2 * n + 2 * bc + (bc if view.has("scale") else 0) + (
        n if view.has("bias") else 0)
    return _norm_stats(n, m, fast) + normalize


def _rms_norm(view: OpView) -> int:
    n = view.out_size()
    m = n // max(1, view.out().shape[-1])
    return 2 * n + 2 * m + n + (n if view.has("scale") else 0)


def _pool_window(view: OpView) -> int:
    return math.prod(view.literal("dims"))


def _max_pool(view: OpView) -> int:
    return (_pool_window(view) - 1) * view.out_size()


def _avg_pool(view: OpView) -> int:
    out = view.out_size()
    flops = (_pool_window(view) - 1) * out + out
    if "reduce_window" in "".join(p for p in view.args["size"].parts if isinstance(p, str)):
        # count_include_pad=False: the divisor is a window sum over ones of the spatial shape
        spatial = out // (view.out().shape[0] * view.out().shape[-1])
        flops += (_pool_window(view) - 1) * spatial
    return flops


def _attention_weights(view: OpView) -> int:
    q = view.arg("query")
    return sh.size(q.shape) + 2 * view.out_size() * q.shape[-1] + _bias(view)


def _attention_values(view: OpView) -> int:
    return 2 * view.out_size() * view.arg("weights").shape[-1]


def _attention_softmax(view: OpView) -> int:
    n = view.out_size()
    return 5 * n - n // max(1, view.out().shape[-1])


def _attention_dropout(view: OpView) -> int:
    weights = view.arg("weights").shape
    broadcast = view.bound("broadcast_dropout", True)
    shape = (1,) * (len(weights) - 2) + weights[-2:] if broadcast else weights
    # the keep mask is converted to the weights' dtype and scaled: 2 per mask element
    return (view.out_size() + 2 * _size(shape) + random_bits("bernoulli", shape)
            + _folds(view, "rng"))


def _dropout(view: OpView) -> int:
    x = view.arg("x")
    broadcast = {d % x.ndim for d in view.bound("broadcast_dims", ()) or ()}
    mask = tuple(1 if i in broadcast else d for i, d in enumerate(x.shape))
    return 2 * view.out_size() + random_bits("bernoulli", mask) + _folds(view, "key")


def _text(view: OpView, name: str) -> str:
    return "".join(p for p in view.args[name].parts if isinstance(p, str))


def _mask_terms(text: str, out: Tensor) -> int:
    """Masks attention builds inline (`attention._mask_components`), for weights-like `out`.

    A causal `jnp.tril(jnp.ones((q, k)))` is 2 per entry (compare, select); a
    padding pair `(q * k) > 0` multiplies and compares, a segmentation pair compares,
    per (batch, q, k) entry; `jnp.logical_and` combines whole masks.
    """
    if out.ndim < 2:
        return 0
    qk = out.shape[-1] * out.shape[-2]
    pair = sh.size(out.shape) // (out.shape[-3] if out.ndim >= 3 else 1)
    return (2 * qk * text.count("jnp.tril(") + 2 * pair * text.count(" > 0")
            + pair * text.count(" == ") + sh.size(out.shape) * text.count("jnp.logical_and("))


def _attention_mask(view: OpView) -> int:
    return view.out_size() + _mask_terms(_text(view, "mask"), view.out())


def _in_layer_call(view: OpView) -> int:
    """`ops/call.j2` inside a layer: casts and reshapes (0), attention's combined masks."""
    out = [v for v in view.outputs if isinstance(v, Tensor)]
    return _mask_terms(_text(view, "call"), out[0]) if out and out[0].dtype == "bool" else 0


def _cache_mask(view: OpView) -> int:
    lq, length = view.out().shape[-2:]
    return lq + lq * length


def _activation(view: OpView, name: str) -> int:
    """FLOPs per element of the activation in bound argument `name` (nn.sigmoid, ...)."""
    ref = view.bound(name)
    if ref is None:
        return 0
    return RULES[qualname(ref.entry)].per_element or 1


def _gate_function(view: OpView) -> int:
    """FLOPs per element of the function a gate template applies (its `fn` argument)."""
    code = _text(view, "fn")
    for name in ("gate_fn", "activation_fn"):
        ref = view.bound(name)
        if ref is not None and ref.entry.code == code:
            return RULES[qualname(ref.entry)].per_element or 1
    return 1


def _rnn_gate(view: OpView) -> int:
    """`fn(x @ Wx [+ bx] + (h @ Wh [+ bh]))` of an LSTM or GRU gate."""
    n = view.out_size()
    flops = n + _gate_function(view) * n
    for part in ("a", "b"):
        flops += 2 * n * view.arg(part).shape[-1]
        flops += n if '["bias"]' in "".join(p for p in view.args[part].parts
                                            if isinstance(p, str)) else 0
    return flops


def _gru_candidate(view: OpView) -> int:
    """`fn(x @ Wi + bi + r * (h @ Wh + bh))`."""
    n = view.out_size()
    x, h = view.arg("a"), view.tensors("b")[0]
    return 2 * n * (x.shape[-1] + h.shape[-1]) + 2 * n + 2 * n + _gate_function(view) * n


def _lstm_hidden(view: OpView) -> int:
    """`o * act(c)`; ConvLSTM writes `sigmoid(o) * tanh(c)` here."""
    n = view.out_size()
    if view.call.entry.name.startswith("ConvLSTM"):
        return n + (RULES["nn.sigmoid"].per_element or 0) * n + n
    return n + _activation(view, "activation_fn") * n


def _conv_lstm_memory(view: OpView) -> int:
    """`sigmoid(f + 1) * c + sigmoid(i) * tanh(g)`."""
    sig = RULES["nn.sigmoid"].per_element or 0
    return (4 + 2 * sig + 1) * view.out_size()


def _elementwise_template(k: int) -> Callable[[OpView], int]:
    return lambda v: k * v.out_size()


#: Template name -> FLOPs of one rendering (layers and the functions that use these templates).
TEMPLATES: dict[str, FlopRule] = {
    "ops/call.j2": FlopRule("casts and reshapes inside layers 0; attention's combined masks "
                            "as `layers/attention_mask.j2`", _in_layer_call),
    "layers/dense.j2": FlopRule("2 * out * in + out (bias)", _dense),
    "layers/dense_precise.j2": FlopRule("as Dense", _dense),
    "layers/dense_general.j2": FlopRule("2 * out * contracted + out (bias)", _dense_general),
    "layers/conv.j2": FlopRule("2 * batch * out features * in features / groups * taps + "
                               "out (bias)", _conv),
    "layers/conv_transpose.j2": FlopRule("as a stride-1 convolution over the input dilated "
                                         "by strides, + out (bias)", _conv_transpose),
    "layers/embed.j2": FlopRule("as `jnp.take`: out + 6 per index",
                                lambda v: v.out_size() + 6 * sh.size(v.arg("x").shape)),
    "layers/embed_attend.j2": FlopRule("2 * out * features", _embed_attend),
    "layers/batch_norm.j2": FlopRule("statistics 3n + 3c, normalize 2n + 2c (+ c scale, + n "
                                     "bias), running averages 6c", _batch_norm),
    "layers/batch_norm_centered.j2": FlopRule("statistics 4n, normalize 2n + 2c (+ c scale, "
                                              "+ n bias), running averages 6c",
                                              lambda v: _batch_norm(v, fast=False)),
    "layers/batch_norm_eval.j2": FlopRule("2n + 2c (+ c scale, + n bias)", _batch_norm_eval),
    "layers/layer_norm.j2": FlopRule("statistics 3n + 3m, normalize 2n + 2m (+ n scale, + n "
                                     "bias)", _layer_norm),
    "layers/group_norm.j2": FlopRule("statistics 3n + 3m, normalize 2n + 2bc (+ bc scale, + n "
                                     "bias)", _group_norm),
    "layers/group_norm_centered.j2": FlopRule("statistics 4n, normalize 2n + 2bc (+ bc scale, "
                                              "+ n bias)", lambda v: _group_norm(v, fast=False)),
    "layers/rms_norm.j2": FlopRule("3n + 2m (+ n scale)", _rms_norm),
    "layers/max_pool.j2": FlopRule("(window - 1) * out", _max_pool),
    "layers/avg_pool.j2": FlopRule("(window - 1) * out + out (divide)", _avg_pool),
    "layers/attention_weights.j2": FlopRule("q / sqrt(d): size(q); q.k: 2 * weights * depth; "
                                            "+ weights (bias)", _attention_weights),
    "layers/attention_mask.j2": FlopRule("1 per weight (select), + an inline mask: causal 2 "
                                         "per (q, k), padding 2 and segmentation 1 per "
                                         "(batch, q, k)", _attention_mask),
    "layers/attention_softmax.j2": FlopRule("5n - m", _attention_softmax),
    "layers/attention_dropout.j2": FlopRule("n (multiply) + 2 per mask element (to float, "
                                            "scale) + the mask's random bits (as "
                                            "`jax.random.bernoulli`)",
                                            _attention_dropout),
    "layers/attention_values.j2": FlopRule("2 * out * kv length", _attention_values),
    "layers/attention_cache.j2": FlopRule("0 (dynamic_update_slice)", lambda v: 0),
    "layers/attention_cache_mask.j2": FlopRule("q + q * length (add, compare)", _cache_mask),
    "layers/attention_mask_pairwise.j2": FlopRule("1 per output element",
                                                  _elementwise_template(1)),
    "layers/causal_mask.j2": FlopRule("2 per (q, k) entry, as `jnp.tril` (a constant: "
                                      "compiled, XLA folds it)",
                                      lambda v: 2 * v.out().shape[-1] ** 2),
    "layers/dropout.j2": FlopRule("2n (scale, select) + the mask's random bits (as "
                                  "`jax.random.bernoulli`)", _dropout),
    "layers/rnn_gate.j2": FlopRule("2 * out * (in + hidden) + biases + add + gate function",
                                   _rnn_gate),
    "layers/lstm_memory.j2": FlopRule("3n: f * c + i * g", _elementwise_template(3)),
    "layers/lstm_hidden.j2": FlopRule("n + activation: o * act(c)", _lstm_hidden),
    "layers/gru_candidate.j2": FlopRule("2 * out * (in + hidden) + 4n + activation",
                                        _gru_candidate),
    "layers/gru_hidden.j2": FlopRule("4n: (1 - z) * n + z * h", _elementwise_template(4)),
    "layers/conv_lstm_split.j2": FlopRule("1 per element (ih + hh)",
                                          lambda v: sh.size(v.arg("ih").shape)),
    "layers/conv_lstm_memory.j2": FlopRule("5n + 2 sigmoids", _conv_lstm_memory),
    "layers/zeros.j2": FlopRule("0", lambda v: 0),
}


def _by_template(view: OpView) -> int:
    rule = TEMPLATES.get(view.template)
    if rule is None:
        raise KeyError(f"no FLOP rule for template {view.template} (add one to TEMPLATES in "
                       "aotflax/ops/flops.py)")
    return rule.fn(view)


#: Layers and functions with templates of their own: each statement by `TEMPLATES`.
BY_TEMPLATE = FlopRule("the sum of its statements (by template, below)", _by_template)


# ------------------------------------------------------------- the table

#: FLOPs per element of elementwise functions whose jax definition is more than one
#: operation, measured as XLA receives them (`tests/test_flops.py` checks every entry).
_PER_ELEMENT: dict[str, int] = {
    "jnp.positive": 0, "jnp.conjugate": 0, "jnp.real": 0, "jnp.imag": 0,
    "jnp.trunc": 4, "jnp.fix": 4, "jnp.exp2": 2, "jnp.log2": 2, "jnp.log10": 2,
    "jnp.arcsin": 7, "jnp.arccos": 5, "jnp.sinh": 13, "jnp.cosh": 5, "jnp.arcsinh": 14,
    "jnp.arccosh": 11, "jnp.arctanh": 8, "jnp.sinc": 8, "jnp.i0": 87, "jnp.isinf": 2,
    "jnp.signbit": 3, "jnp.mod": 8, "jnp.remainder": 8, "jnp.floor_divide": 13,
    "jnp.fmax": 4, "jnp.fmin": 4, "jnp.copysign": 7, "jnp.hypot": 17, "jnp.heaviside": 6,
    "jnp.logaddexp": 10, "jnp.isclose": 10,
    "lax.logistic": 4, "lax.erf_inv": 39, "lax.stop_gradient": 0,
    "jnp.conj": 0, "jnp.logaddexp2": 12, "jnp.nextafter": 24, "lax.exp2": 2, "lax.erfc": 63,
    "lax.lgamma": 57, "lax.digamma": 76, "lax.nextafter": 24,
    # jax.scipy.special (most are polynomial or series approximations)
    "jax.scipy.special.erfc": 63, "jax.scipy.special.erfinv": 39,
    "jax.scipy.special.gammaln": 57, "jax.scipy.special.digamma": 76,
    "jax.scipy.special.expit": 4, "jax.scipy.special.logit": 3, "jax.scipy.special.i0": 87,
    "jax.scipy.special.i0e": 84, "jax.scipy.special.i1": 87, "jax.scipy.special.i1e": 84,
    "jax.scipy.special.entr": 9, "jax.scipy.special.gamma": 98, "jax.scipy.special.xlogy": 6,
    "jax.scipy.special.xlog1py": 6, "jax.scipy.special.betaln": 289,
    "jax.scipy.special.gammainc": 189, "jax.scipy.special.gammaincc": 189,
    "jax.scipy.special.zeta": 132, "jax.scipy.special.rel_entr": 23,
    "jax.scipy.special.kl_div": 25, "jax.scipy.special.ndtr": 136,
    "jax.scipy.special.ndtri": 139, "jax.scipy.special.log_ndtr": 163,
    "jax.scipy.special.spence": 169,
    # jax.scipy.stats.norm (through ndtr, log_ndtr, ndtri)
    "jax.scipy.stats.norm.pdf": 5, "jax.scipy.stats.norm.logpdf": 4,
    "jax.scipy.stats.norm.cdf": 137, "jax.scipy.stats.norm.logcdf": 164,
    "jax.scipy.stats.norm.sf": 138, "jax.scipy.stats.norm.logsf": 165,
    "jax.scipy.stats.norm.ppf": 139, "jax.scipy.stats.norm.isf": 140,
    "operator.pos": 0, "operator.floordiv": 13, "operator.mod": 8,
    # jax.nn activations
    "nn.relu": 1, "nn.relu6": 2, "nn.elu": 5, "nn.celu": 5, "nn.selu": 7, "nn.silu": 5,
    "nn.swish": 5, "nn.sigmoid": 4, "nn.log_sigmoid": 10, "nn.soft_sign": 3, "nn.softplus": 8,
    "nn.leaky_relu": 3, "nn.hard_tanh": 4, "nn.hard_sigmoid": 4, "nn.hard_silu": 5,
    "nn.hard_swish": 5, "nn.sparse_plus": 7, "nn.sparse_sigmoid": 4, "nn.squareplus": 5,
    "nn.mish": 10, "nn.tanh": 1,
}


def _gelu(view: OpView) -> int:
    return (9 if view.bound("approximate", True) else 67) * view.out_size()


def _names(prefix: str, names: str) -> list[str]:
    return [f"{prefix}.{n}" for n in names.split()]


#: Elementwise functions and operators (their costs per element: `_PER_ELEMENT`, else 1).
ELEMENTWISE = (
    _names("jnp", "negative positive square sign floor ceil round rint trunc conjugate fix exp "
           "exp2 expm1 log log1p log2 log10 sqrt cbrt sin cos tan arcsin arccos arctan sinh "
           "cosh tanh arcsinh arccosh arctanh reciprocal deg2rad rad2deg sinc i0 isnan isinf "
           "isfinite logical_not signbit abs absolute real imag angle invert bitwise_not add "
           "subtract multiply maximum minimum power mod remainder floor_divide fmax fmin "
           "logical_and logical_or logical_xor bitwise_and bitwise_or bitwise_xor left_shift "
           "right_shift copysign hypot heaviside fmod divide true_divide arctan2 logaddexp "
           "float_power equal not_equal less less_equal greater greater_equal isclose where")
    + _names("jnp", "conj radians degrees logaddexp2 nextafter pow")
    + _names("lax", "rsqrt exp log tanh logistic erf erf_inv abs neg sqrt square sign floor "
             "ceil stop_gradient add sub mul div max min pow sin cos exp2 log1p expm1 cbrt erfc "
             "lgamma digamma round is_finite reciprocal bitwise_not population_count rem atan2 "
             "nextafter bitwise_and bitwise_or bitwise_xor eq ne lt le gt ge select")
    + _names("jax.scipy.special", "erf erfc erfinv gammaln digamma expit logit i0 i0e i1 i1e "
             "entr gamma xlogy xlog1py betaln gammainc gammaincc zeta rel_entr kl_div ndtr "
             "ndtri log_ndtr spence")
    + _names("jax.scipy.stats.norm", "pdf logpdf cdf logcdf sf logsf ppf isf")
    + _names("operator", "add sub mul truediv floordiv mod pow and or xor lshift rshift eq ne "
             "lt le gt ge neg pos invert")
    + _names("nn", "relu relu6 elu celu selu silu swish sigmoid log_sigmoid soft_sign softplus "
             "leaky_relu hard_tanh hard_sigmoid hard_silu hard_swish sparse_plus "
             "sparse_sigmoid squareplus mish tanh")
)

_ZERO = (
    _names("jnp", "reshape transpose swapaxes moveaxis expand_dims squeeze ravel tile repeat "
           "pad flip roll broadcast_to concatenate stack vstack hstack diag diagonal meshgrid split "
           "array_split atleast_1d atleast_2d atleast_3d astype asarray "
           "array zeros ones "
           "empty full zeros_like ones_like full_like arange")
    + _names("lax", "reshape transpose squeeze expand_dims rev broadcast_in_dim full")
    + _names("lax", "broadcast concatenate convert_element_type pad slice slice_in_dim index_in_dim dynamic_slice "
             "dynamic_slice_in_dim dynamic_index_in_dim dynamic_update_slice "
             "dynamic_update_slice_in_dim dynamic_update_index_in_dim")
    + _names("array", "reshape transpose astype squeeze swapaxes flatten ravel repeat")
    + _names("jax.random", "key_data wrap_key_data")

)


# ------------------------------------------------------------- more functions


def _norm(view: OpView) -> int:
    n, m = _reduced(view)
    return 2 * n - m if view.bound("ord") == 1 else 2 * n


NORM = FlopRule("2n: square (abs for ord=1 / inf), sum or max, square root; 2n - m for ord=1 "
                "(matrix norms by singular values are counted as this estimate)", _norm)


def _fft_axes(view: OpView, ndim: int) -> list[int]:
    """The axes a `jnp.fft` transform runs over, as its rule resolved them."""
    name = view.call.entry.name
    if name in ("fft", "ifft", "rfft", "irfft"):
        return [int(view.bound("axis", -1)) % ndim]
    axes = view.bound("axes")
    if axes is None:
        s = view.bound("s")
        axes = (-2, -1) if name.endswith("2") else (
            range(ndim) if s is None else range(-len(s), 0))
    return [int(a) % ndim for a in axes]


def _fft(view: OpView) -> int:
    x, out = view.first_input(), view.out()
    if x is None or out.ndim == 0:
        return 0
    length = math.prod(max(x.shape[a], out.shape[a]) for a in _fft_axes(view, out.ndim))
    points = max(sh.size(x.shape), sh.size(out.shape))
    count = 5 * points * _log2ceil(length)
    return count // 2 if view.call.entry.name.startswith(("rfft", "irfft")) else count



FFT = FlopRule("5 P ceil(log2 L) (radix-2 Cooley-Tukey): P the points of the larger side, "
               "L the product of the transformed lengths; half for real transforms", _fft)


def _logsumexp_weighted(view: OpView) -> int:
    n, m = _reduced(view)
    extra = 3 * n + 3 * m if view.bound("b") is not None else 0
    return 4 * n + 4 * m + extra + (m if view.bound("return_sign") else 0)


LOGSUMEXP_B = FlopRule("4n + 4m, + 3n + 3m with weights b, + m with return_sign",
                       _logsumexp_weighted)


def _lax_conv(view: OpView) -> int:
    """`lax.conv_general_dilated` / `conv_transpose`: the layer rule on channels-last shapes."""
    lhs, rhs, out = view.bound("lhs"), view.bound("rhs"), view.out()
    numbers = view.bound("dimension_numbers")
    transpose = view.call.entry.name == "conv_transpose"
    if transpose and numbers is None:
        numbers = {2: ("NC", "IO", "NC"), 3: ("NHC", "HIO", "NHC"), 4: ("NHWC", "HWIO", "NHWC"),
                   5: ("NHWDC", "HWDIO", "NHWDC")}[lhs.ndim]
    default = tuple(range(lhs.ndim))  # the rule checked the layouts
    lp, rp, op = (default,) * 3 if numbers is None else sh.conv_permutations(lhs.ndim, tuple(numbers))
    n = lhs.ndim - 2
    x = (lhs.shape[lp[0]], *[lhs.shape[i] for i in lp[2:]], lhs.shape[lp[1]])
    y = (out.shape[op[0]], *[out.shape[i] for i in op[2:]], out.shape[op[1]])
    window = tuple(rhs.shape[i] for i in rp[2:])
    rhs_dilation = _per_dim(view.bound("rhs_dilation"), n)
    padding = view.bound("padding")
    if transpose:
        strides, lhs_dilation = (1,) * n, _per_dim(view.bound("strides"), n)
        if padding in ("SAME", "VALID"):
            pads = sh.conv_transpose_pads(window, lhs_dilation, padding, rhs_dilation)
        else:
            padding = padding.upper() if isinstance(padding, str) else padding
            pads = sh.padtype_to_pads(x[1:-1], window, strides, padding, lhs_dilation,
                                      rhs_dilation)
        groups = 1
    else:
        strides = _per_dim(view.bound("window_strides"), n)
        lhs_dilation = _per_dim(view.bound("lhs_dilation"), n)
        padding = padding.upper() if isinstance(padding, str) else padding
        pads = sh.padtype_to_pads(x[1:-1], window, strides, padding, lhs_dilation,
                                  rhs_dilation)
        groups = int(view.bound("feature_group_count", 1))
        x = (y[0],) + x[1:]  # batch groups: each output batch reads its share of the input
    return conv_flops(x, y, window, strides, pads, lhs_dilation, rhs_dilation, groups)


LAX_CONV = FlopRule("as `nn.Conv`: 2 * batch * out features * in features / groups * taps, "
                    "for any layout", _lax_conv)


def _index_update(k: int, whole: int = 0) -> FlopRule:
    """`x.at[index].method(values)`: `k` per updated element, the index arithmetic, and
    `whole` per element of x (divide and power: jax's lowering touches all of x)."""
    def rule(view: OpView) -> int:
        shape = view.out().shape if view.call.entry.name == "get" else None
        updated = sh.size(shape) if shape is not None else _updated(view)
        operand = sh.size(view.bound("operand").shape)
        return k * updated + _getitem(view) + whole * operand
    extra = f" + {whole} per element of x" if whole else ""
    return FlopRule(f"{k} per updated element + 3 per element of each integer-array index"
                    f"{extra}", rule)


def _updated(view: OpView) -> int:
    """Elements an `x.at[index]` update touches (the indexed shape)."""
    index = view.bound("index")
    items = index if isinstance(index, tuple) else (index,)
    # as the rule's `index_shape` reads an x.at index (checked there): a static int is a
    # 0-d index whatever its value (the update clips, drops or fills it)
    spec = tuple(sh.ArrayIndex(it.shape) if isinstance(it, Tensor)
                 else sh.ArrayIndex(()) if isinstance(it, int) else it for it in items)
    return sh.size(sh.index(view.bound("operand").shape, spec))


#: Per element of 1-D samples, as XLA counts the default threefry2x32 sampler, measured.
_SAMPLER = {"gumbel": 40, "exponential": 39, "laplace": 41, "logistic": 40, "cauchy": 39,
            "truncated_normal": 78, "randint": 65, "choice": 65, "permutation": 39}


def _sampler(name: str) -> FlopRule:
    per = _SAMPLER[name]

    def rule(view: OpView) -> int:
        dims = [d for d in view.out().shape if d != 1]
        return (per + 2 * max(0, len(dims) - 1)) * view.out_size() + RANDOM_SETUP
    return FlopRule(f"{per} per element (threefry2x32 bits and their conversion, measured), "
                    "+ 2 per element for each dimension of size > 1 after the first, + 11",
                    rule)


def _categorical(view: OpView) -> int:
    """Gumbel noise over the logits (broadcast to `shape`), an add and an argmax."""
    logits = view.bound("logits")
    axis = sh.normalize_axis(view.bound("axis", -1), logits.ndim)
    classes, m = logits.shape[axis], view.out_size()
    n = m * classes
    dims = [d for d in (*view.out().shape, classes) if d != 1]
    noise = (_SAMPLER["gumbel"] + 2 * max(0, len(dims) - 1)) * n + RANDOM_SETUP
    return noise + n + 9 * (n - m)


def _split(view: OpView) -> int:
    return 28 * sh.size(view.out().shape[:len(view.out().shape) - (view.out().dtype == "uint32")
                                        ]) + 10


#: numpy calls (`ops/host.py`) run on the host while JAX traces: constants of the program.
HOST = FlopRule("0 (numpy, on the host at trace time: a constant of the program)", lambda v: 0)

RULES: dict[str, FlopRule] = {
    **{name: elementwise(_PER_ELEMENT.get(name, 1)) for name in ELEMENTWISE},
    **{name: ZERO for name in _ZERO},
    **{name: REDUCE for name in _names("jnp", "sum prod max min amax amin all any")
       + _names("array", "sum prod max min all any")},
    **{name: MEAN for name in ("jnp.mean", "array.mean")},
    **{name: VAR for name in ("jnp.var", "array.var")},
    **{name: STD for name in ("jnp.std", "array.std")},
    **{name: ARG_REDUCE for name in _names("jnp", "argmax argmin")
       + _names("array", "argmax argmin")},
    "jnp.nansum": NANSUM, "jnp.nanmean": NANMEAN, "jnp.ptp": PTP, "jnp.median": MEDIAN,
    "jnp.sort": SORT, "jnp.argsort": SORT, "lax.sort_key_val": SORT, "lax.top_k": TOP_K, "jnp.linalg.qr": QR, "jnp.cumsum": CUMSUM,
    "jnp.clip": CLIP, "array.clip": CLIP,
    "jnp.take": TAKE, "jnp.take_along_axis": TAKE_ALONG_AXIS, "operator.getitem": GETITEM,
    "jax.random.uniform": _random("uniform"), "jax.random.normal": _random("normal"),
    "jax.random.bernoulli": _random("bernoulli"),
    **{f"jax.random.{name}": _sampler(name) for name in _SAMPLER},
    "jax.random.categorical": FlopRule("gumbel noise for each logit (as jax.random.gumbel), "
                                       "an add, and an argmax (9 (n - m))", _categorical),
    "jax.random.split": FlopRule("28 per new key (threefry2x32) + 10", _split),
    "jax.random.fold_in": FlopRule(f"{FOLD_IN + 1} (one threefry2x32 block)",
                                   lambda v: FOLD_IN + 1),
    "jax.random.key": FlopRule("1 (the seed's conversion)", lambda v: 1),
    "jax.random.PRNGKey": FlopRule("2 (the seed's conversion)", lambda v: 2),
    **{f"at.{name}": _index_update(k) for name, k in (
        ("set", 0), ("get", 0), ("add", 1), ("subtract", 1), ("multiply", 1), ("mul", 1),
        ("min", 1), ("max", 1))},
    "at.divide": _index_update(1, 1), "at.power": _index_update(1, 1),
    # emitted as the x.at[idx] call, which its rule counts (the same rule here)
    **{f"jax.ops.{name}": _index_update(k) for name, k in (
        ("index_update", 0), ("index_add", 1), ("index_mul", 1), ("index_min", 1),
        ("index_max", 1))},
    **{f"jax.ops.{name}": FlopRule("1 per element of data (the scatter's combine)",
                                   lambda v: sh.size(v.bound("data").shape))
       for name in ("segment_sum", "segment_max", "segment_min", "segment_prod")},
    "lax.conv_general_dilated": LAX_CONV, "lax.conv_transpose": LAX_CONV,
    "jnp.linalg.norm": NORM, "jnp.cumprod": CUMSUM,
    **{f"jnp.fft.{kind}{suffix}": FFT for kind in ("fft", "ifft", "rfft", "irfft")
       for suffix in ("", "2", "n")},
    **{f"jnp.fft.{name}": ZERO for name in ("fftshift", "ifftshift")},
    "jnp.linalg.inv": INV, "jnp.linalg.det": DET, "jnp.linalg.slogdet": SLOGDET,
    "jnp.linalg.cholesky": CHOLESKY, "jnp.linalg.solve": SOLVE, "jnp.linalg.eigh": EIGH,
    "jnp.linalg.svd": SVD, "jax.image.resize": RESIZE,
    "jax.scipy.linalg.inv": INV, "jax.scipy.linalg.det": DET,
    "jax.scipy.linalg.cholesky": CHOLESKY, "jax.scipy.linalg.solve": SOLVE,
    "jax.scipy.linalg.lu_factor": LU_FACTOR, "jax.scipy.linalg.lu_solve": LU_SOLVE,
    "jnp.trace": REDUCE, "jnp.count_nonzero": FlopRule(
        "2n - m: a compare per element and the adds of the count", _on_reduced(
            lambda n, m: 2 * n - m)),
    "jnp.nan_to_num": elementwise(6, "6 per element (XLA's count: the NaN and infinity tests "
                                     "and their selects)"),
    "jnp.identity": elementwise(1, "1 per element (compare)"),
    **{f"lax.{name}": CUMSUM for name in ("cumsum", "cumprod", "cummax", "cummin")},
    "lax.cumlogsumexp": FlopRule("3n: an exp, an add and a log per element",
                                 lambda v: 3 * _rows(v)[0]),
    "jnp.select": FlopRule("a select per condition per output element",
                           lambda v: len(v.bound("condlist") or ()) * v.out_size()),
    "jnp.searchsorted": FlopRule("ceil(log2 (n + 1)) compares per query (a binary search)",
                                 lambda v: v.out_size() * _log2ceil(
                                     _first_param(v)[0] + 1)),
    "jnp.quantile": MEDIAN, "jnp.percentile": MEDIAN,
    "jnp.kron": elementwise(1, "1 per output element (a product)"),
    "lax.clamp": elementwise(2, "2 per element (a max and a min)"),
    "lax.integer_pow": FlopRule("per element, the multiplications of repeated squaring "
                                "(|y| - 1 for |y| <= 2; bits + ones - 2 above), + 1 for y < 0",
                                lambda v: v.out_size() * _integer_pow_cost(v.bound("y"))),
    "lax.argmax": ARG_REDUCE, "lax.argmin": ARG_REDUCE, "lax.batch_matmul": MATMUL,
    "lax.conv": LAX_CONV, "lax.conv_with_general_padding": LAX_CONV,
    "lax.iota": elementwise(1, "1 per element (iota)"),
    "lax.reduce_window": FlopRule("window - 1 per output element (the reduction's combines)",
                                  lambda v: v.out_size() * max(0, math.prod(
                                      v.bound("window_dimensions")) - 1)),
    "lax.sort": SORT,
    "jnp.interp": FlopRule("a binary search and 6 per element (the interpolation)",
                           lambda v: v.out_size() * (6 + _log2ceil(_first_param(v, 1)[0] + 1))),
    "jnp.digitize": FlopRule("ceil(log2 (bins + 1)) compares per element",
                             lambda v: v.out_size() * _log2ceil(_first_param(v, 1)[0] + 1)),
    "jnp.cross": elementwise(3, "3 per output element (two products and a subtract)"),
    "jnp.allclose": FlopRule("6 per element of the broadcast inputs (the tolerance test), "
                             "and their and", lambda v: 6 * max(
                                 sh.size(_first_param(v)), sh.size(_first_param(v, 1)))),
    "jnp.logspace": elementwise(6, "6 per element (linspace, then a power)"),
    "jnp.linspace": elementwise(5, "5 per element (iota, scale, offset, endpoint select)"),
    "jax.scipy.special.logsumexp": LOGSUMEXP_B,
    "nn.make_rng": FlopRule(f"{FOLD_IN} (a fold_in of the target's key)",
                            lambda v: _folds(v, "call")),
    "jnp.eye": elementwise(1, "1 per element (compare)"),
    "jnp.tri": elementwise(1, "1 per element (compare)"),
    "jnp.tril": elementwise(2, "2 per element (compare, select)"),
    "jnp.triu": elementwise(2, "2 per element (compare, select)"),
    "jax.nn.one_hot": elementwise(1, "1 per output element (compare)"),
    "jax.nn.logsumexp": LOGSUMEXP_B,
    "nn.softmax": SOFTMAX, "nn.log_softmax": LOG_SOFTMAX, "nn.standardize": STANDARDIZE,
    "nn.gelu": FlopRule("9 per element (approximate=True: tanh form), 67 (erf form)", _gelu),
    "nn.glu": elementwise(5, "5 per output element (sigmoid, multiply)"),
    "jnp.matmul": MATMUL, "operator.matmul": MATMUL, "jnp.dot": DOT, "lax.dot": DOT,
    "jnp.outer": elementwise(1, "1 per output element"), "jnp.tensordot": TENSORDOT,
    "jnp.einsum": EINSUM, "lax.dot_general": DOT_GENERAL,
    **{name: BY_TEMPLATE for name in _names(
        "nn", "Dense Conv Embed LayerNorm max_pool avg_pool DenseGeneral ConvTranspose "
        "dot_product_attention make_causal_mask make_attention_mask "
        "MultiHeadDotProductAttention SelfAttention BatchNorm GroupNorm RMSNorm LSTMCell "
        "GRUCell ConvLSTM ConvLSTMCell dropout")
       + ["nn.Embed.attend", "nn.attention.make_padding_mask",
          "nn.attention._make_causal_mask"]
       + [f"nn.{c}.initialize_carry" for c in ("LSTMCell", "GRUCell", "ConvLSTM",
                                                "ConvLSTMCell")]},
}

__all__ = ["ELEMENTWISE", "RULES", "TEMPLATES", "FlopRule", "OpView", "conv_flops", "conv_taps", "count",
           "einsum_flops", "rule_for"]
