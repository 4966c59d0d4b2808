"""`jnp.fft`: discrete Fourier transforms over one axis, two axes or several, and the
shifts of their frequencies (relative position biases computed by FFT, spectral layers).

Each rule works out the output shape from the transform lengths (`n`, `s`) as numpy
does: a complex transform keeps each transformed axis at its length, `rfft` keeps
`n // 2 + 1` frequencies of its last axis and `irfft` makes `n` real samples
(`2 * (m - 1)` by default).  Real inputs become complex64 (complex128 from float64),
as jax computes them.
"""

from __future__ import annotations

from typing import Any

from .. import shapes as sh
from .arrays import emit_same, register
from .calls import FnCall
from .registry import CallError

#: `norm=` values jnp.fft takes.
_NORMS = (None, "backward", "ortho", "forward")


def _complex(dtype: str) -> str:
    return "complex128" if dtype in ("float64", "complex128") else "complex64"


def _real(dtype: str) -> str:
    return "float64" if dtype in ("float64", "complex128") else "float32"


def _check_norm(call: FnCall) -> None:
    norm = call.static("norm", str, allow_none=True)
    if norm not in _NORMS:
        raise call.fail(f"{call.written}: norm must be None, 'backward', 'ortho' or "
                        f"'forward', got {norm!r}", "AOT203")


def _length(call: FnCall, value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise call.fail(f"{call.written}: {what} must be a positive int, got {value!r}",
                        "AOT203")
    return value


def _axis(call: FnCall, axis: Any, ndim: int) -> int:
    try:
        return sh.normalize_axis(axis, ndim)
    except (sh.ShapeError, TypeError) as e:
        raise CallError("AOT210", f"{call.written}: {e}") from None


def _operand(call: FnCall, kind: str) -> Any:
    """The input array: `rfft` transforms real values only (jax rejects complex ones)."""
    a = call.tensor("a")
    if kind == "r" and a.dtype.startswith("complex"):
        raise call.fail(f"{call.written} transforms real values, got {a.describe()}",
                        "AOT201", hint="use jnp.fft.fft for complex input")
    if a.ndim == 0:
        raise call.fail(f"{call.written} needs an array of rank 1 or more, got "
                        f"{a.describe()}", "AOT210")
    return a


def _out_dtype(kind: str, dtype: str) -> str:
    return _real(dtype) if kind == "ir" else _complex(dtype)


def _resize(kind: str, size: int, n: int | None, last: bool) -> int:
    """The output length of a transformed axis of `size` (n: the given length)."""
    if not last or kind in ("", "i"):
        return size if n is None else n
    if kind == "r":
        return (size if n is None else n) // 2 + 1
    return 2 * (size - 1) if n is None else n  # "ir"


def _one_axis(kind: str):
    """`fft`, `ifft`, `rfft`, `irfft`: one axis."""
    def rule(call: FnCall) -> Any:
        a = _operand(call, kind)
        _check_norm(call)
        axis = _axis(call, call.static("axis", int), a.ndim)
        n = call.args["n"]
        n = None if n is None else _length(call, call.concrete("n"), "n")
        size = _resize(kind, a.shape[axis], n, True)
        if size < 1:
            raise call.fail(f"{call.written}: the output length {size} must be positive "
                            f"(give n=)", "AOT210")
        shape = a.shape[:axis] + (size,) + a.shape[axis + 1:]
        return emit_same(call, shape, _out_dtype(kind, a.dtype))
    return rule


def _many_axes(kind: str, default_axes: tuple[int, ...] | None):
    """`fft2`/`fftn` and their inverse and real forms: several axes (`s`, `axes`)."""
    def rule(call: FnCall) -> Any:
        a = _operand(call, kind)
        _check_norm(call)
        s = call.static("s", tuple, list, allow_none=True)
        axes_value = call.static("axes", tuple, list, allow_none=True)
        if axes_value is None:
            axes_value = default_axes if default_axes is not None else (
                tuple(range(a.ndim)) if s is None else tuple(range(-len(s), 0)))
        axes = [_axis(call, ax, a.ndim) for ax in axes_value]
        if len(set(axes)) != len(axes):
            raise call.fail(f"{call.written}: axes {tuple(axes_value)} repeat an axis",
                            "AOT203")
        if s is not None:
            if len(s) != len(axes):
                raise call.fail(f"{call.written}: s has {len(s)} lengths for {len(axes)} "
                                "axes", "AOT203")
            lengths: list[int | None] = [_length(call, v, "each length of s") for v in s]
        else:
            lengths = [None] * len(axes)
        shape = list(a.shape)
        for i, (ax, n) in enumerate(zip(axes, lengths)):
            shape[ax] = _resize(kind, a.shape[ax], n, i == len(axes) - 1)
            if shape[ax] < 1:
                raise call.fail(f"{call.written}: the output length {shape[ax]} must be "
                                "positive (give s=)", "AOT210")
        return emit_same(call, tuple(shape), _out_dtype(kind, a.dtype))
    return rule


def _shift(call: FnCall) -> Any:
    """`fftshift` / `ifftshift`: a roll of the given axes (every axis by default)."""
    x = call.tensor("x")
    axes = call.static("axes", int, tuple, list, allow_none=True)
    for ax in ([] if axes is None else [axes] if isinstance(axes, int) else axes):
        _axis(call, ax, x.ndim)
    return emit_same(call, x.shape, x.dtype, x.weak)


for _kind, _name in (("", "fft"), ("i", "ifft"), ("r", "rfft"), ("ir", "irfft")):
    register(_name, ("jnp.fft",), "a, n=None, axis=-1, norm=None", _one_axis(_kind),
             doc={"": "discrete Fourier transform along one axis",
                  "i": "inverse discrete Fourier transform along one axis",
                  "r": "Fourier transform of real values: n // 2 + 1 frequencies",
                  "ir": "inverse of rfft: n real samples (2 (m - 1) by default)"}[_kind])
    # (jax's default axes=(-2, -1), which the signature text cannot spell: None here)
    register(_name + "2", ("jnp.fft",), "a, s=None, axes=None, norm=None",
             _many_axes(_kind, (-2, -1)), doc=f"{_name} over two axes (the last two unless "
             "axes= says)")
    register(_name + "n", ("jnp.fft",), "a, s=None, axes=None, norm=None", _many_axes(_kind, None),
             doc=f"{_name} over several axes (every axis by default)")
for _name in ("fftshift", "ifftshift"):
    register(_name, ("jnp.fft",), "x, axes=None", _shift,
             doc="zero frequency to the center" if _name == "fftshift"
             else "inverse of fftshift")
