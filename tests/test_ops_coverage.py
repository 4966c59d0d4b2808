"""Every function and method of the operation table, built and run against jax itself.

Each case is a DSL expression over the apply inputs.  All cases go into one
model per dtype *profile* (the dtypes of the generic operands `x` and `y`: float32,
bfloat16 with a weak Python scalar, int32 with a Python int, bool, uint8 with int32,
int32 with float32), built through the real pipeline.  The generated function runs
on random inputs and each output must equal the same expression evaluated by
jax.numpy / jax.lax / jax.random / Flax Linen on the same arrays: values
(exactly, or rtol 1e-6), shapes, dtypes, and the weak types resolve computed.  An
expression that jax itself rejects for a profile is left out of that profile.

`test_every_entry_has_a_case` fails when an entry of the table is reached by no
case (layers are covered by test_linen_parity), as the layer coverage test does.
"""

from __future__ import annotations

import functools
import textwrap
import warnings
from dataclasses import dataclass
from typing import Any, Callable

import flax.linen as linen
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import build

from aotflax.ops import REGISTRY
from aotflax.ops import host as np_table
from aotflax.ops.registry import REQUIRED, Signature


@dataclass(frozen=True)
class Profile:
    """The dtypes of the generic operands: `x` an array, `y` an array or a Python scalar."""

    id: str
    x: str
    y: str  #: a dtype, or the text of a Python scalar
    #: `{s}`: a scalar of y's type (a Python scalar, or y[0, 0]).

    @property
    def y_is_scalar(self) -> bool:
        return self.y not in _SPEC

    def fill(self, template: str) -> str:
        s = self.y if self.y_is_scalar else "y[0, 0]"
        return template.format(x="x", y=self.y if self.y_is_scalar else "y", s=s)


_SPEC = {"float32": "f32", "bfloat16": "bf16", "int32": "i32", "bool": "bool_", "uint8": "u8"}
PROFILES = [
    Profile("f32", "float32", "float32"),
    Profile("bf16_weak", "bfloat16", "2.5"),
    Profile("i32_int", "int32", "3"),
    Profile("bool", "bool", "bool"),
    Profile("u8_i32", "uint8", "int32"),
    Profile("i32_f32", "int32", "float32"),
]

#: Fixed inputs besides x and y: name -> (shape, dtype).
FIXED = {
    "f": ((3, 4), "float32"), "p": ((3, 4), "float32"), "n": ((3,), "int32"),
    "b": ((3, 4), "bool"), "v": ((4,), "float32"), "img": ((1, 5, 5, 2), "float32"),
    "ker": ((3, 3, 2, 4), "float32"), "q": ((2, 3, 2, 4), "float32"),
}


@dataclass(frozen=True)
class Case:
    """A DSL expression (with {x}, {y}, {s} placeholders), or a reference of its own."""

    expr: str
    #: The reference, when it is not the expression itself evaluated by jax: env -> value.
    ref: Callable[[dict], Any] | None = None
    #: Compare values (False where they are unspecified, e.g. mode="empty").
    values: bool = True

    @property
    def generic(self) -> bool:
        return "{" in self.expr


def _elementwise_cases() -> list[Case]:
    """One call per elementwise entry, spelled as a model file would write it."""
    spell = {"lax": "jax.lax"}
    out = []
    seen: set[int] = set()
    for key, entry in sorted(REGISTRY.entries.items()):
        ns = key.rsplit(".", 1)[0]
        if "kind_spec" not in entry.extra or ns in ("operator", "at") or id(entry) in seen:
            continue
        if entry.code and not entry.code.endswith(f".{entry.name}"):
            continue  # emitted as another function (jnp.fix): a case of its own below
        seen.add(id(entry))
        arity = sum(1 for p in entry.signature.params
                    if p.kind == "positional" and p.default is REQUIRED)
        args = "{x}" if arity == 1 else "{x}, {y}"
        out.append(Case(f"{spell.get(ns, ns)}.{entry.name}({args})"))
    return out


_OPERATORS = ["{x} + {y}", "{x} - {y}", "{x} * {y}", "{x} / {y}", "{x} // {y}", "{x} % {y}",
              "{x} ** {y}", "{x} & {y}", "{x} | {y}", "{x} ^ {y}", "{x} << {y}", "{x} >> {y}",
              "{x} == {y}", "{x} != {y}", "{x} < {y}", "{x} <= {y}", "{x} > {y}", "{x} >= {y}",
              "-{x}", "+{x}", "~{x}", "{s} - {x}", "2 * {x} + 1", "{x} @ {x}.T", "f @ {x}.T",
              "{x}[1]", "{x}[:, 1:3]", "{x}[n]", "{x}[n, 0]", "{x}[..., None]", "{x}[::-1, 2]"]

_REDUCTIONS = [f"jnp.{n}({{x}}, axis=0)" for n in (
    "sum", "prod", "mean", "var", "std", "max", "min", "amax", "amin", "all", "any", "nanmean",
    "nansum", "median", "ptp", "argmax", "argmin")] + [
    "jnp.sum({x})", "jnp.mean({x}, axis=(0, 1), keepdims=True)", "jnp.cumprod({x}, axis=0)",
    "jnp.linalg.norm({x})", "jnp.linalg.norm({x}, axis=1, keepdims=True)",
    "jnp.linalg.norm({x}, ord=1, axis=0)", 'jnp.linalg.norm(f, ord="fro")', "jnp.argmax({x}, axis=1)",
    "jnp.var({x}, axis=1, ddof=1)", "jnp.sum({x}, axis=1, dtype=jnp.float32)",
    "jnp.max({x}, axis=-1, keepdims=True)", "jnp.argmin({x})", "jnp.cumsum({x}, axis=1)",
    "jnp.cumsum({x})",
]

_METHODS = ["{x}.sum(axis=1)", "{x}.prod()", "{x}.max(axis=1, initial=2)",
            "{x}.sum(initial=1, where={x} > 0)", "{x}.min(where={x} > 1, initial=3)", "{x}.mean(axis=0, keepdims=True)",
            "{x}.var(axis=1, ddof=1)", "{x}.std()", "{x}.max(axis=0)", "{x}.min()",
            "{x}.all(axis=1)", "{x}.any()", "{x}.argmax(axis=1)", "{x}.argmin()",
            "{x}.astype(jnp.int8)", "{x}.clip(0, 2)", "{x}.flatten()", "{x}.ravel()",
            "{x}.reshape(4, 3)", "{x}.reshape((2, -1))", "{x}[None].squeeze(0)",
            "{x}.swapaxes(0, 1)", "{x}.transpose()", "{x}.transpose(1, 0)",
            "{x}.repeat(2, axis=1)", "{x}.repeat(2)"]

_SHAPES = [
    "jnp.reshape({x}, (2, 6))", "jnp.transpose({x}, (1, 0))", "jnp.swapaxes({x}, 0, 1)",
    "jnp.moveaxis({x}, 0, -1)", "jnp.expand_dims({x}, (0, 2))",
    "jnp.squeeze(jnp.expand_dims({x}, 1), axis=1)", "jnp.ravel({x})", "jnp.tile({x}, (2, 1))",
    "jnp.repeat({x}, 2, axis=1)", "jnp.flip({x}, axis=0)", "jnp.roll({x}, 1, axis=1)",
    "jnp.broadcast_to({x}, (2, 3, 4))",
    "jax.lax.broadcast({x}, (2,))", "jax.lax.broadcast({x}, (x.shape[0], 1))", "jnp.tril({x}, k=1)", "jnp.triu({x})",
    "jnp.concatenate([{x}, {x}], axis=1)", "jnp.concatenate([{x}, f], axis=0)",
    "jax.lax.concatenate([{x}, {x}], 1)", "jax.lax.concatenate((f, f[:1]), dimension=0)",
    "jnp.stack([{x}, {x}], axis=-1)", "jnp.split({x}, 2, axis=1)", "jnp.split({x}, [1], axis=0)",
    "jnp.vstack([{x}, f[0]])", "jnp.vstack(({x}[0], {x}[1]))", "jnp.hstack([{x}, f])",
    "jnp.hstack(({x}[0], v))", "jnp.vstack([{x}, {x}], dtype=jnp.float32)",
    "jnp.concatenate([{x}, f], dtype=jnp.float16)", "jnp.stack([{x}, {x}], dtype=jnp.int32)",
    "jnp.diag({x}[0])", "jnp.diag({x}[0], k=-2)", "jnp.diag({x})", "jnp.diag({x}, 1)",
    "jnp.diag({x}, k=-1)", "jnp.diagonal({x})", "jnp.diagonal({x}, 1)",
    "jnp.diagonal(q, -1, 1, 3)", "jnp.trace({x})", "jnp.trace({x}, offset=-1, dtype=jnp.float32)",
    "jnp.trace(q, 1, 0, 2)", "jnp.count_nonzero({x})", "jnp.count_nonzero({x}, axis=1, keepdims=True)",
    "jnp.meshgrid(v, v[:3])", 'jnp.meshgrid(v, n, indexing="ij")',
    "jnp.meshgrid(v, v[:2], {x}[0], sparse=True)", "jnp.nan_to_num({x})",
    "jnp.nan_to_num(f / (f - f), nan=1.0, posinf=2.0, neginf=-2.0)",
    "jnp.array_split({x}, 3, axis=1)", "jnp.array_split({x}, [1, 3])", "jnp.atleast_1d({s})",
    "jnp.atleast_2d({x}[0])", "jnp.atleast_3d({x})", "jnp.atleast_2d(v, {x})",
    "jnp.kron({x}, v[:2])", "jnp.kron(v, {x})",
    "jnp.select([b, {x} > 1], [{x}, {y}], 0)", "jnp.select([b], [f], default={s})",
    "jnp.searchsorted(jnp.sort(v), f)", 'jnp.searchsorted(jnp.sort(v), {x}, side="right")',
    "jnp.quantile(f, 0.3)", "jnp.quantile({x}, jnp.array([0.25, 0.75]), axis=1)",
    'jnp.percentile(f, 40, axis=0, keepdims=True, method="nearest")',
    "jax.lax.cumsum({x}, axis=1)", "jax.lax.cumprod({x}, reverse=True)", "jax.lax.cummax({x})",
    "jax.lax.cummin({x}, 1, True)", "jax.lax.cumlogsumexp(f, axis=1)",
    "jax.lax.reshape({x}, (4, 3))", "jax.lax.reshape({x}, (12,), dimensions=(1, 0))",
    "jax.lax.transpose({x}, (1, 0))", "jax.lax.squeeze({x}[None], (0,))",
    "jax.lax.expand_dims({x}, (0, 2))", "jax.lax.rev({x}, (1,))",
    "jax.lax.broadcast_in_dim({x}[0], (2, 4), (1,))", "jax.lax.broadcast_in_dim({x}[:1], (2, 5, 4), (0, 2))",
    "jax.lax.iota(jnp.int32, 5)", "jax.lax.iota(jnp.float32, 3)", "jax.lax.full((2, 3), {s})",
    "jax.lax.full((2,), 1.5, dtype=jnp.bfloat16)", "jax.lax.integer_pow({x}, 3)",
    "jax.lax.integer_pow(f, -2)", "jax.lax.clamp(f[0, 0], f, f[1, 1])",
    "jax.lax.clamp(0.0, f, 1.0)", "jax.lax.argmax({x}, 1, jnp.int32)",
    "jax.lax.argmin({x}, 0, jnp.int32)", "jax.lax.batch_matmul(q, jnp.swapaxes(q, 2, 3))",
    "jnp.round({x}, 1)", "jnp.round(f * 100, decimals=-1)",
    "jax.lax.sort({x}, dimension=0)", "jax.lax.sort(f)",
    "jnp.interp({x}, v, p[0])", "jnp.interp(f, jnp.sort(v), v, left=0.0, right=1.0)",
    "jnp.digitize({x}, jnp.sort(v))", "jnp.digitize(f, v[:2], right=True)",
    "jnp.cross(f[:, :3], p[:, 1:])", "jnp.cross({x}[:, :2], f[:, :2])", "jnp.allclose({x}, {y})",
    "jnp.logspace(0, 2, 4)", "jnp.logspace(1, 3, 3, base=2.0, endpoint=False)",
    "jnp.where(b, {x}, {y})", "jnp.where({x} > 1, {x}, 0)", "jnp.clip({x}, {s}, 5)",
    "jnp.take({x}, n, axis=1)", "jnp.take({x}, n)",
    "jnp.take_along_axis({x}, jnp.argsort(f, axis=1), axis=1)", "jnp.sort({x}, axis=0)",
    "jnp.argsort(f, axis=1)", "jax.lax.top_k(f, 2)",
    "jax.lax.sort_key_val(f, {x}, dimension=0)", "jax.lax.sort_key_val({x}, f)",
]

_LINALG = ["jnp.matmul({x}, f.T)", "jnp.dot({x}, v)", "jnp.outer(v, {x}[0])",
           "jnp.tensordot({x}, f, axes=([0], [0]))", 'jnp.einsum("ij,kj->ik", {x}, f)',
           "jax.lax.dot_general({x}, {x}, (((1,), (1,)), ((), ())))",
           "jax.lax.dot({x}, {x}.T, precision=jax.lax.Precision.HIGHEST)", "jax.lax.dot(v, v)",
           "jnp.linalg.qr(f)", 'jnp.linalg.qr(f.T, mode="r")', 'jnp.linalg.qr(f, mode="complete")',
           "jnp.linalg.inv(f[:, :3] + 3 * jnp.eye(3))", "jnp.linalg.det(f[:, :3])",
           "jnp.linalg.slogdet(q[..., :2])", "jnp.linalg.cholesky(f @ f.T + jnp.eye(3))",
           "jnp.linalg.solve(f[:, :3] + 3 * jnp.eye(3), v[:3])",
           "jnp.linalg.solve(f[:, :3] + 3 * jnp.eye(3), f)", "jnp.linalg.eigh(f @ f.T)",
           "jnp.linalg.svd(f, compute_uv=False)", "jnp.linalg.svd(f, full_matrices=False)",
           "jnp.linalg.svd(q)", "jax.scipy.linalg.inv(f[:, :3] + 3 * jnp.eye(3))",
           "jax.scipy.linalg.det(f[:, :3])", "jax.scipy.linalg.cholesky(f @ f.T + jnp.eye(3))",
           "jax.scipy.linalg.cholesky(f @ f.T + jnp.eye(3), lower=True)",
           "jax.scipy.linalg.solve(f[:, :3] + 3 * jnp.eye(3), f)",
           'jax.scipy.linalg.solve(f @ f.T + jnp.eye(3), v[:3], assume_a="pos")',
           "jax.scipy.linalg.lu_factor(f[:, :3] + 3 * jnp.eye(3))",
           "jax.scipy.linalg.lu_factor(f)",
           "jax.scipy.linalg.lu_solve(jax.scipy.linalg.lu_factor(f[:, :3] + 3 * jnp.eye(3)), f)",
           "jax.scipy.linalg.lu_solve(jax.scipy.linalg.lu_factor(f[:, :3] + 3 * jnp.eye(3)), "
           "v[:3], trans=1)"]

_FFT = ["jnp.fft.fft({x})", "jnp.fft.ifft(f, n=6, axis=0)", "jnp.fft.rfft({x}, axis=0)",
        "jnp.fft.irfft(jnp.fft.rfft(f), n=4)", 'jnp.fft.fft(f, norm="ortho")',
        "jnp.fft.irfft(jnp.fft.fft(f))", "jnp.fft.fft2(q)", "jnp.fft.ifft2(q, s=(4, 3))",
        "jnp.fft.rfft2({x})", "jnp.fft.irfft2(jnp.fft.rfft2(q), s=(2, 4))",
        "jnp.fft.fftn(q, axes=(0, 2))", "jnp.fft.ifftn(f)", "jnp.fft.rfftn(q, s=(2, 6))",
        "jnp.fft.irfftn(jnp.fft.rfftn(f))", "jnp.fft.fftshift({x})",
        "jnp.fft.ifftshift(f, axes=0)", "jnp.fft.fftshift(q, axes=(1, 3))"]

_IMAGE = ['jax.image.resize({x}, (6, 2), "nearest")', 'jax.image.resize(f, (6, 8), "bilinear")',
          'jax.image.resize(img, (1, 3, 7, 2), "cubic", antialias=False)',
          'jax.image.resize({x}, (2, 4), "lanczos3")',
          "jnp.linspace(jnp.log(f[0, 0] + 2.0), f[1], 5)",
          "jnp.linspace(v, 1.0, 3, axis=-1, retstep=True)"]

_CREATION = ["jnp.zeros((2, 3))", "jnp.ones(3, dtype=jnp.int32)", "jnp.empty((2,))",
             "jnp.full((2, 2), 1.5)", "jnp.full((3, 4), {y})", "jnp.zeros_like({x})",
             "jnp.ones_like({x}, dtype=jnp.float32)", "jnp.full_like({x}, 2)", "jnp.arange(5)",
             "jnp.arange(1, 7, 2, dtype=jnp.float32)", "jnp.arange(0.5, 3.0)",
             "jnp.linspace(0, 1, 5)", "jnp.linspace(-1.0, 2.0, 4, endpoint=False, retstep=True)",
             "jnp.linspace(0, 10, 3, dtype=jnp.int32)", "jnp.eye(3, 4, k=1)", "jnp.tri(3)", "jnp.identity(3)",
             "jnp.identity(2, dtype=jnp.int32)", "jnp.asarray({s})", "jnp.array([1, 2, 3])",
             "jnp.array({x}, dtype=jnp.float32)", "jnp.astype({x}, jnp.float32)",
             "jax.lax.convert_element_type({x}, jnp.int32)", "jnp.float32({x})"]

_NN = ["jax.nn.one_hot(n, 4)", "nn.one_hot(n, 3, dtype=jnp.int32)", "jax.nn.softmax({x}, axis=0)",
       "jax.nn.log_softmax(f)", "jax.nn.standardize(f, axis=1)", "jax.nn.glu(f, axis=1)",
       "jax.nn.logsumexp({x}, axis=1)",
       "jax.scipy.special.logsumexp(f, axis=0, b=p, return_sign=True)",
       "nn.avg_pool(img, (2, 2), strides=(1, 1))", 'nn.max_pool(img, (3, 3), padding="SAME")',
       "nn.make_attention_mask(n, n)", "nn.make_causal_mask(f)",
       "nn.dot_product_attention(q, q, q)",
       'jax.image.resize(img, (1, 8, 7, 2), "bilinear")',
       'jax.image.resize(img, (1, 3, 3, 2), method="lanczos3", antialias=False)',
       'jax.image.resize(img, (2, 10, 10, 1), "nearest")', 'jax.image.resize({x}, (6, 2), "cubic")',
       'jax.image.resize({x}, (5, 8), "nearest")',
       "jax.lax.reduce_window(img, -jnp.inf, jax.lax.max, (1, 3, 3, 1), (1, 2, 2, 1), 'SAME')",
       "jax.lax.reduce_window(img, 0.0, jax.lax.add, (1, 2, 2, 1), (1, 1, 1, 1), 'VALID')",
       "jax.lax.reduce_window({x}, 1, jnp.multiply, (2, 1), None, ((0, 1), (1, 0)))",
       "jax.lax.conv(jnp.transpose(img, (0, 3, 1, 2)), jnp.transpose(ker, (3, 2, 0, 1)), (1, 1), 'SAME')",
       "jax.lax.conv_with_general_padding(jnp.transpose(img, (0, 3, 1, 2)), "
       "jnp.transpose(ker, (3, 2, 0, 1)), (2, 1), ((1, 0), (0, 1)), (1, 1), (2, 1))"]

_PAD = ["jnp.pad({x}, ((1, 0), (0, 2)))", "jnp.pad({x}, 1, constant_values={s})",
        'jnp.pad({x}, ((0, 0), (1, 0)), mode="constant", constant_values=((0, 0), (7, 0)))',
        'jnp.pad({x}, 2, mode="edge")', 'jnp.pad({x}, (1, 3), mode="reflect")',
        'jnp.pad({x}, 5, mode="reflect")',
        'jnp.pad({x}, 2, mode="symmetric", reflect_type="odd")', 'jnp.pad({x}, 6, mode="wrap")',
        'jnp.pad({x}, 2, mode="maximum", stat_length=2)', 'jnp.pad({x}, 1, mode="minimum")',
        'jnp.pad(f, 2, mode="mean")', 'jnp.pad({x}, (2, 1), mode="median", stat_length=(1, 3))',
        'jnp.pad({x}, 2, mode="linear_ramp", end_values=5)',
        "jax.lax.pad(f, 0.0, ((1, 0, 1), (0, -1, 0)))",
        "jax.lax.pad({x}, {x}[0, 0], ((1, 1, 0), (0, 0, 1)))"]

_SLICES = [
    "{x}[:, [0, 2]]", "{x}[[0, 2], ]", "{x}[..., [-1, 0]]", "{x}[:, [[0], [3]]]",
    "{x}[:, [True, False, True, False]]", "{x}[[0, 1], [1, 2]]", "{x}[:, []]",
    "jax.lax.slice({x}, (0, 1), (2, 4), (1, 2))", "jax.lax.slice_in_dim({x}, 1, 3, axis=1)",
    "jax.lax.index_in_dim({x}, 2, axis=1, keepdims=False)",
    "jax.lax.dynamic_slice({x}, (n[0], 1), (2, 2))",
    "jax.lax.dynamic_slice(f, jnp.array([1, n[1]]), (1, 3))",
    "jax.lax.dynamic_slice_in_dim({x}, n[2], 2, axis=1)",
    "jax.lax.dynamic_index_in_dim({x}, n[0], axis=0, keepdims=False)",
    "jax.lax.dynamic_update_slice({x}, {x}[:1, :2], (n[0], 2))",
    "jax.lax.dynamic_update_slice_in_dim({x}, {x}[:, :1], n[1], axis=1)",
    "jax.lax.dynamic_update_index_in_dim({x}, {x}[0], 2, 0)",
    "jax.ops.segment_sum({x}, n, num_segments=4)", "jax.ops.segment_max({x}, n, 3)",
    "jax.ops.segment_min({x}, n, num_segments=2)", "jax.ops.segment_prod(f, n, num_segments=3)",
    "{x}.at[1].set({s})", "{x}.at[n].add({s})", "{x}.at[:, 1].multiply({s})",
    "{x}.at[0, 0].mul(2)", "{x}.at[1:].divide({s})", "{x}.at[2].power(2)",
    "{x}.at[n, 1].min({s})", "{x}.at[0].max(f[0])", "{x}.at[-1].subtract({s})",
    "{x}.at[n, 0].get()", '{x}.at[5].get(mode="fill", fill_value=0)',
    '{x}.at[5].set({s}, mode="drop")',
]

_CONV = [
    'jax.lax.conv_general_dilated(img, ker, (1, 1), "SAME", '
    'dimension_numbers=("NHWC", "HWIO", "NHWC"))',
    "jax.lax.conv_general_dilated(jnp.transpose(img, (0, 3, 1, 2)), "
    "jnp.transpose(ker, (3, 2, 0, 1)), (2, 1), ((1, 0), (0, 1)), rhs_dilation=(1, 2))",
    'jax.lax.conv_general_dilated(img, ker[:, :, :1, :], (1, 1), "VALID", '
    'dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=2)',
    'jax.lax.conv_general_dilated(img, ker, (1, 1), ((1, 1), (2, 0)), lhs_dilation=(2, 1), '
    'dimension_numbers=("NHWC", "HWIO", "NWHC"))',
    'jax.lax.conv_transpose(img, ker, (2, 2), "SAME")',
    'jax.lax.conv_transpose(img, ker, (2, 1), "VALID", rhs_dilation=(1, 2))',
    'jax.lax.conv_transpose(img, jnp.transpose(ker, (0, 1, 3, 2)), (1, 2), ((1, 0), (0, 2)), '
    'transpose_kernel=True)',
]

_RANDOM = [
    "jax.random.normal(jax.random.PRNGKey(0), (3,))",
    "jax.random.uniform(jax.random.key(1), (2, 3), minval=-1.0, maxval=f[0, :3])",
    "jax.random.key_data(jax.random.split(jax.random.key(2), 3))",
    "jax.random.key_data(jax.random.split(jax.random.PRNGKey(2)))",
    "jax.random.key_data(jax.random.split(jax.random.PRNGKey(2), num=4))",
    "jax.random.key_data(jax.random.fold_in(jax.random.PRNGKey(0), n[0]))",
    "jax.random.key_data(jax.random.fold_in(jax.random.key(0), 7))",
    "jax.random.bernoulli(jax.random.PRNGKey(3), p)",
    "jax.random.bernoulli(jax.random.key(3), 0.3, (2, 2))",
    "jax.random.categorical(jax.random.PRNGKey(4), f)",
    "jax.random.categorical(jax.random.PRNGKey(4), f, axis=0, shape=(2, 4))",
    "jax.random.gumbel(jax.random.PRNGKey(5), (2, 3))",
    "jax.random.exponential(jax.random.PRNGKey(5), (2,))",
    "jax.random.laplace(jax.random.PRNGKey(5), (2,), dtype=jnp.bfloat16)",
    "jax.random.logistic(jax.random.PRNGKey(5), (2,))",
    "jax.random.cauchy(jax.random.PRNGKey(5), (2,))",
    "jax.random.randint(jax.random.PRNGKey(5), (2, 3), 0, 10)",
    "jax.random.randint(jax.random.key(5), (3,), n, 9, dtype=jnp.uint8)",
    "jax.random.permutation(jax.random.PRNGKey(6), 5)",
    "jax.random.permutation(jax.random.PRNGKey(6), f, axis=1)",
    "jax.random.truncated_normal(jax.random.PRNGKey(7), -1.0, 1.0, (3,))",
    "jax.random.truncated_normal(jax.random.PRNGKey(7), -p, p)",
    "jax.random.choice(jax.random.PRNGKey(8), 5, (3,), replace=False)",
    "jax.random.choice(jax.random.PRNGKey(8), f, (2,), axis=1)",
    "jax.random.choice(jax.random.PRNGKey(8), 4, (2,), p=v / v.sum())",
    "jax.random.key_data(jax.random.wrap_key_data(jax.random.PRNGKey(9)))",
    "jax.random.key_data(jax.random.split(jax.random.key(2))[1])",
    "jax.random.key_data(jax.random.split(jax.random.PRNGKey(2), 3)[0])",
]


#: numpy on the host (`ops/host.py`): tables built from static data, emitted as the same
#: numpy code.  The reference is numpy itself; where the table meets jax (here, as an output)
#: it becomes a jax array, as under Flax (64-bit types narrow).
_H, _G = "np.linspace(0.1, 0.9, 12).reshape(3, 4)", "np.linspace(1.0, 2.5, 12).reshape(3, 4)"
_I, _J = "np.arange(1, 13).reshape(3, 4)", "(np.arange(12) % 5).reshape(3, 4)"
_INTEGER_ONLY = {"invert", "bitwise_not", "bitwise_and", "bitwise_or", "bitwise_xor",
                 "left_shift", "right_shift", "gcd", "lcm"}


def _numpy_cases() -> list[str]:
    def operands(name: str, arity: int) -> str:
        if name in _INTEGER_ONLY:
            return ", ".join((_I, _J)[:arity])
        if name == "arccosh":
            return _G
        return ", ".join((_H, _G)[:arity])

    out = [f"np.{n}({operands(n, 1)})" for n in np_table.UNARY_UFUNCS]
    out += [f"np.{n}({operands(n, 2)})" for n in np_table.BINARY_UFUNCS]
    out += [f"np.{n}({_H}, axis=0)" for n in np_table.REDUCTIONS]
    h, g, i = _H, _G, _I
    return out + [
        f"np.matmul({h}, {g}.T)", f"np.dot({h}, {g}.T)", f"np.outer({h}[0], {g}[1])",
        f"np.sum({i})", f"np.mean({h}, axis=1, keepdims=True)", f"np.var({h}, ddof=1)",
        "np.zeros((2, 3))", "np.ones(3, dtype=np.int32)", "np.full((2, 2), 1.5)",
        f"np.zeros_like({h})", f"np.ones_like({i}, dtype=np.float32)", f"np.full_like({i}, 7)",
        "np.arange(5)", "np.arange(1, 7, 2, dtype=np.float32)", "np.linspace(0, 1, 5)",
        "np.eye(3, 4, k=1)", "np.identity(3)", "np.tri(3)", "np.array([1, 2, 3])",
        "np.asarray([[1.5, 2.0]], dtype=np.float32)", f"np.reshape({h}, (4, 3))",
        f"np.transpose({h})", f"np.expand_dims({h}, 0)", f"np.squeeze({h}[None], 0)",
        f"np.swapaxes({h}, 0, 1)", f"np.moveaxis({h}, 0, -1)", f"np.ravel({h})",
        f"np.tile({h}, (2, 1))", f"np.repeat({i}, 2, axis=1)", f"np.flip({h}, axis=0)",
        f"np.roll({h}, 1, axis=1)", f"np.broadcast_to({h}[0], (2, 4))", f"np.triu({h})",
        f"np.tril({h}, k=1)", f"np.concatenate([{h}, {g}])", f"np.stack([{h}, {g}], axis=-1)",
        f"np.where({h} > 0.5, {h}, {g})", f"np.clip({h}, 0.2, 0.6)", f"np.round({h}, 2)",
        f"np.around({g}, 1)", f"np.pad({h}, 1)", f"np.pad({h}, ((1, 0), (0, 2)), constant_values=5)",
        f"{h} + {g} * 2", f"{i} // 3 - {i} % 4", f"{h} @ {g}.T", f"-{h}", f"{i} ** 2",
        f"{h}.T", f"{h}[1:, ::2]", f"{h}.sum(axis=0)", f"{i}.astype(np.float32)",
        f"{h}.reshape(2, 6)", f"np.sin({i}[:, :, np.newaxis] * {h}[0])",
    ]


def _old_padding_mask(q: Any, k: Any, segments: bool) -> Any:
    """Old flax.nn's `make_padding_mask` for masks [batch, positions]: [batch, 1, q, k]."""
    pairs = (q[:, :, None] == k[:, None, :]) if segments else \
        (q[:, :, None].astype(jnp.float32) * k[:, None, :].astype(jnp.float32))
    return pairs[:, None].astype(jnp.float32)


def _carry(cell: str, size: Any) -> Case:
    expr = f"nn.{cell}.initialize_carry(jax.random.PRNGKey(0), (2,), {size!r})"
    features = size[-1] if isinstance(size, tuple) else size
    shape = (2, *size) if isinstance(size, tuple) else (2, size)
    zeros = jnp.zeros(shape, jnp.float32)
    ref = (lambda env: zeros) if cell == "GRUCell" else (lambda env: (zeros, zeros))
    del features
    return Case(expr, ref=ref)


CASES = [
    *_elementwise_cases(), *[Case(e) for e in _OPERATORS + _REDUCTIONS + _METHODS + _SHAPES +
                            _LINALG + _FFT + _IMAGE + _CREATION + _NN + _PAD + _SLICES + _CONV + _RANDOM +
                            _numpy_cases()],
    Case("np.empty((2,))", values=False), Case(f"np.empty_like({_H})", values=False),
    Case('jnp.pad({x}, 1, mode="empty")', values=False),
    # removed from JAX 0.10: emitted as jnp.trunc, the same function
    Case("jnp.fix({x})", ref=lambda env: jnp.trunc(env["x"])),
    # removed from JAX: jax.nn.normalize (standardize's old name), lax.tie_in (an identity
    # since omnistaging: its second argument, static or not)
    Case("jax.nn.normalize({x}, axis=-1)", ref=lambda env: jax.nn.standardize(env["x"], axis=-1)),
    Case("jax.lax.tie_in(f, {x} * 2)", ref=lambda env: env["x"] * 2),
    Case("jnp.full((2,), jax.lax.tie_in(f, 1.5))", ref=lambda env: jnp.full((2,), 1.5)),
    # removed from JAX 0.3 (jax.ops.index_*): emitted as the x.at[...] calls they were
    Case("jax.ops.index_update({x}, jax.ops.index[1], 0)",
         ref=lambda env: env["x"].at[1].set(0)),
    Case("jax.ops.index_add({x}, jax.ops.index[:, 1], 2)",
         ref=lambda env: env["x"].at[:, 1].add(2)),
    Case("jax.ops.index_mul({x}, n, 3)", ref=lambda env: env["x"].at[env["n"]].multiply(3)),
    Case("jax.ops.index_min({x}, np.s_[0, 1:], 1)", ref=lambda env: env["x"].at[0, 1:].min(1)),
    Case("jax.ops.index_max({x}, np.index_exp[-1], 1, unique_indices=True)",
         ref=lambda env: env["x"].at[-1].max(1, unique_indices=True)),
    _carry("LSTMCell", 3), _carry("GRUCell", 3), _carry("ConvLSTMCell", (4, 4, 3)),
    _carry("ConvLSTM", (4, 4, 3)),
    Case("jax.lax.select({x} > 0, {x}, {x} * 2)"), Case("jax.lax.select(b, f, p)"),
    Case("np.delete(np.arange(6), (1, -1))"), Case(f"np.delete({_H}, 1, axis=1)"),
    Case(f"np.delete({_H}, [0, 2])"),
    Case("nn.attention.make_padding_mask(f > 0, p > 0.5, (3, 4, 2, 5), (3, 4, 2, 5))",
         ref=lambda env: _old_padding_mask(env["f"] > 0, env["p"] > 0.5, False)),
    Case("nn.attention.make_padding_mask((f > 0).astype(jnp.int32), b.astype(jnp.int32), "
         "(3, 4, 2, 5), (3, 4, 2, 5), (1,), True)",
         ref=lambda env: _old_padding_mask((env["f"] > 0).astype(jnp.int32),
                                           env["b"].astype(jnp.int32), True)),
    Case("nn.attention._make_causal_mask(q)",
         ref=lambda env: jnp.tril(jnp.ones((3, 3), bool)).reshape(1, 1, 3, 3)),
    Case("nn.attention._make_causal_mask(q, (1,), self_mask=True)",
         ref=lambda env: jnp.tril(jnp.ones((3, 3), bool), -1).reshape(1, 1, 3, 3)),
]


class _Nn:
    """`nn.*` as old flax.nn spelled it: jax.nn's functions, then Linen's pooling/attention."""

    def __getattr__(self, name: str) -> Any:
        return getattr(jax.nn, name, None) or getattr(linen, name)


def _inputs(profile: Profile) -> dict[str, Any]:
    rng = np.random.default_rng(0)
    out: dict[str, Any] = {}
    specs = dict(FIXED, x=((3, 4), profile.x))
    if not profile.y_is_scalar:
        specs["y"] = ((3, 4), profile.y)
    for name, (shape, dtype) in specs.items():
        if name == "n":
            value = rng.integers(0, 3, shape)
        elif name == "p":
            value = rng.uniform(0.1, 0.9, shape)
        elif dtype == "bool":
            value = rng.random(shape) < 0.5
        elif dtype == "uint8":
            value = rng.integers(0, 9, shape)
        elif dtype == "int32":
            value = rng.integers(-3, 5, shape)
        else:
            value = rng.standard_normal(shape)
        out[name] = jnp.asarray(value, dtype)
    return out


def _env(inputs: dict[str, Any]) -> dict[str, Any]:
    return {"jnp": jnp, "jax": jax, "nn": _Nn(), "np": np, **inputs}


def _reference(case: Case, profile: Profile) -> Callable[[dict], Any]:
    if case.ref is not None:
        return case.ref
    code = compile(profile.fill(case.expr), "<case>", "eval")
    return lambda env: eval(code, env)  # noqa: S307 - the test's own expressions


def _accepted(case: Case, profile: Profile, inputs: dict[str, Any]) -> bool:
    """Whether jax accepts the case for this profile (else it is left out of the profile)."""
    ref = _reference(case, profile)
    names = sorted(inputs)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            jax.eval_shape(lambda *a: ref(_env(dict(zip(names, a)))),
                           *[inputs[n] for n in names])
    except Exception:  # noqa: BLE001 - any rejection by jax leaves the case out
        return False
    return True


@functools.cache
def _built(profile: Profile) -> tuple[list[Case], Any, dict[str, Any], set[int], list]:
    """(cases of the profile, the generated target, its inputs, entries reached by resolve,
    the output types resolve computed)."""
    inputs = _inputs(profile)
    cases = [c for c in CASES if (c.generic or profile is PROFILES[0])
             and _accepted(c, profile, inputs)]
    names = ["x"] + ([] if profile.y_is_scalar else ["y"]) + list(FIXED)
    body = ",\n".join(f"            {profile.fill(c.expr)}" for c in cases)
    specs = ", ".join(f"{n}=aot.{_SPEC[str(inputs[n].dtype)]}[{', '.join(map(str, inputs[n].shape))}]"
                      for n in names)
    source = textwrap.dedent(f"""
        import numpy as np

        class Ops(nn.Module):
            def apply(self, {", ".join(names)}):
                return (
        {{body}}
                )

        aot.target("ops", Ops, {specs})
    """).replace("{body}", body)
    reached: set[int] = set()
    original = Signature.bind

    def record(self: Signature, *args: Any, **kwargs: Any) -> dict[str, Any]:
        reached.add(id(self))
        return original(self, *args, **kwargs)

    Signature.bind = record  # type: ignore[method-assign]
    try:
        module = build(source)
    finally:
        Signature.bind = original  # type: ignore[method-assign]
    program = module.__aotflax_program__.targets[0].function
    types = [(t.shape, t.dtype, t.weak and t.dtype != "bool") for t in program.result_tensors]
    return cases, module.TARGETS["ops"], {n: inputs[n] for n in names}, reached, types


def _leaves(value: Any) -> list[Any]:
    return jax.tree_util.tree_leaves(value)


def _value_cases(profile: Profile) -> list[int]:
    """Positions of the cases whose values this profile checks: those no earlier profile
    accepts (each case is run once, in the first profile jax accepts it in)."""
    cases = _built(profile)[0]
    earlier = {id(c) for p in PROFILES[:PROFILES.index(profile)] for c in _built(p)[0]}
    return [i for i, c in enumerate(cases) if id(c) not in earlier and c.values]


#: Compile options for the value check: a big program of tiny ops compiles several times
#: faster without XLA's optimizations, and the values do not depend on them.
_FAST_COMPILE = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}


@pytest.mark.parametrize("profile", PROFILES, ids=lambda p: p.id)
def test_generated_code_computes_what_jax_computes(profile: Profile) -> None:
    cases, target, inputs, _, resolved = _built(profile)
    names = list(inputs)
    picked = _value_cases(profile)

    def both(*arrays: Any) -> tuple[list, list]:
        """The generated outputs and jax's own, for the cases whose values are checked."""
        env = _env(dict(zip(names, arrays)))
        got, _ = target.apply_fn({}, {}, *arrays)
        return [got[i] for i in picked], [_reference(cases[i], profile)(env) for i in picked]

    args = [inputs[n] for n in names]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        kinds = jax.eval_shape(lambda *a: [_reference(c, profile)(_env(dict(zip(names, a))))
                                           for c in cases], *args)
        got, want = jax.jit(both).lower(*args).compile(compiler_options=_FAST_COMPILE)(*args)
    wrong: list[str] = []
    offset = 0
    for case, kind in zip(cases, kinds):
        leaves = _leaves(kind)
        for k, r in zip(leaves, resolved[offset:offset + len(leaves)]):
            weak = bool(k.weak_type) and k.dtype != bool
            if r != (tuple(k.shape), str(k.dtype), weak):
                wrong.append(f"{profile.fill(case.expr)}: resolve typed it {r}, jax "
                             f"{(tuple(k.shape), str(k.dtype), weak)}")
        offset += len(leaves)
    assert offset == len(resolved), "the outputs do not line up with the cases"
    for i, a, w in zip(picked, got, want):
        expr = profile.fill(cases[i].expr)
        for x, y in zip(_leaves(a), _leaves(w)):
            if np.array_equal(np.asarray(x), np.asarray(y), equal_nan=True):
                continue
            try:
                np.testing.assert_allclose(np.asarray(x, np.float64), np.asarray(y, np.float64),
                                           rtol=1e-6, atol=1e-6)
            except AssertionError as e:
                wrong.append(f"{expr}: values differ\n{e}")
    assert not wrong, f"{len(wrong)} of {len(cases)} cases differ:\n" + "\n".join(wrong)


def test_every_entry_has_a_case() -> None:
    """Every function and method of the table is reached by some case of some profile."""
    reached: set[int] = set()
    for profile in PROFILES:  # each profile's build is cached for the tests above
        reached |= _built(profile)[3]
    missing = sorted(f"{ns}.{e.name}" for e in REGISTRY.unique() if e.kind != "layer"
                     and id(e.signature) not in reached for ns in e.namespaces[:1])
    assert not missing, f"add cases to tests/test_ops_coverage.py for: {', '.join(missing)}"


def test_every_case_runs_in_some_profile() -> None:
    """A case jax rejects in every profile would check nothing (a typo, or a call that jax
    itself refuses and resolve wrongly accepts): each must run somewhere."""
    ran = {id(c) for p in PROFILES for c in _built(p)[0]}
    dead = [c.expr for c in CASES if id(c) not in ran]
    assert not dead, dead
