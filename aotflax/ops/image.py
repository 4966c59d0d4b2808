"""`jax.image.resize`: images (or any array) resampled to a new shape, as score
networks upsample their feature maps (`jax.image.resize(h, (b, 2 * h, 2 * w, c),
'nearest')`).

Nearest-neighbour keeps the dtype; the interpolating methods compute in floating
point (integer and bool images become float32), as jax does.
"""

from __future__ import annotations

from typing import Any

from .. import dtypes as dt
from .arrays import emit_same, register
from .calls import FnCall

#: The method names jax.image.resize takes, and the taps of each one's kernel.
METHODS = {"nearest": 1, "linear": 2, "bilinear": 2, "trilinear": 2, "triangle": 2,
           "cubic": 4, "bicubic": 4, "tricubic": 4, "lanczos3": 6, "lanczos5": 10}


def _resize(call: FnCall) -> Any:
    image = call.tensor("image")
    shape = call.ints("shape")
    method = call.static("method", str)
    if method not in METHODS:
        raise call.fail(f"{call.written}: unknown method {method!r}; one of "
                        f"{', '.join(repr(m) for m in METHODS)}", "AOT203")
    call.static("antialias", bool)
    if len(shape) != image.ndim:
        raise call.fail(f"{call.written}: shape {tuple(shape)} has {len(shape)} axes for "
                        f"{image.describe()}", "AOT210")
    if any(d < 0 for d in shape):
        raise call.fail(f"{call.written}: shape {tuple(shape)} has a negative size", "AOT210")
    dtype = image.dtype
    if method != "nearest" and not dt.is_inexact(dtype):
        dtype = "float32"
    return emit_same(call, tuple(shape), dtype)


register("resize", ("jax.image",), "image, shape, method, antialias=True, precision=None",
         _resize, doc="resample to a shape (nearest, linear, cubic, lanczos3, lanczos5)",
         taps=METHODS)
