"""jnp.linalg's matrix functions, jax.image.resize and other array functions of real
models (coordinate grids, diagonals, NaN cleanup): values against jax, in a model with
parameters against a Linen twin, and the misuses as located errors.  Every dtype
profile of each function is in tests/test_ops_coverage.py."""

from __future__ import annotations

import flax.linen as linen
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import build, build_errors, perturbed


def test_an_upsampling_decoder_equals_linen() -> None:
    m = build("""
        class Up(nn.Module):
            def apply(self, x, skip):
                b, h, w, c = x.shape
                x = jax.image.resize(x, (b, 2 * h, 2 * w, c), method="bilinear")
                x = jnp.concatenate([x, skip], axis=-1)
                return nn.relu(nn.Conv(x, 4, (3, 3)))

        aot.target("up", Up, x=aot.f32[2, 4, 4, 3], skip=aot.f32[2, 8, 8, 2])
        """)

    class Twin(linen.Module):
        @linen.compact
        def __call__(self, x, skip):
            b, h, w, c = x.shape
            x = jax.image.resize(x, (b, 2 * h, 2 * w, c), method="bilinear")
            x = jnp.concatenate([x, skip], axis=-1)
            return linen.relu(linen.Conv(4, (3, 3))(x))

    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 4, 4, 3), np.float32)
    skip = rng.standard_normal((2, 8, 8, 2), np.float32)
    variables = perturbed(Twin().init(jax.random.key(0), x, skip), seed=1)
    y, _ = m.up.apply(variables["params"], {}, x, skip)
    np.testing.assert_allclose(y, Twin().apply(variables, x, skip), rtol=1e-5, atol=1e-6)


def test_a_gaussian_log_likelihood_through_cholesky_and_slogdet() -> None:
    m = build("""
        class GaussianLL(nn.Module):
            def apply(self, x, cov):
                chol = jnp.linalg.cholesky(cov)
                sign, logdet = jnp.linalg.slogdet(cov)
                z = jnp.linalg.solve(cov, x.T)
                maha = jnp.sum(x.T * z, axis=0)
                d = x.shape[-1]
                return -0.5 * (maha + logdet + d * jnp.log(2 * jnp.pi)), jnp.trace(chol), sign

        aot.target("ll", GaussianLL, x=aot.f32[5, 3], cov=aot.f32[3, 3])
        """)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((5, 3), np.float32)
    a = rng.standard_normal((3, 3), np.float32)
    cov = a @ a.T + 3 * np.eye(3, dtype=np.float32)
    (ll, tr, sign), _ = m.ll.apply({}, {}, x, cov)
    x64, cov64 = x.astype(np.float64), cov.astype(np.float64)
    maha = np.einsum("ni,ij,nj->n", x64, np.linalg.inv(cov64), x64)
    want = -0.5 * (maha + np.log(np.linalg.det(cov64)) + 3 * np.log(2 * np.pi))
    np.testing.assert_allclose(ll, want, rtol=1e-5)
    np.testing.assert_allclose(tr, np.trace(np.linalg.cholesky(cov)), rtol=1e-6)
    assert sign == 1.0


@pytest.mark.parametrize("expr, message", [
    ("jnp.linalg.inv(x)", "jnp.linalg.inv needs square matrices (rank 2 or more), got "
     "f32[2, 3]"),
    ("jnp.linalg.det(x[0])", "jnp.linalg.det needs square matrices"),
    ("jnp.linalg.inv(x[:, :2].astype(jnp.bfloat16))", "jnp.linalg.inv has no bfloat16 kernel"),
    ("jnp.linalg.solve(x[:, :2], x.T)", "jnp.linalg.solve: b f32[3, 2] needs 2 rows"),
    ("jnp.linalg.solve(x[:, :2], x[0])", "jnp.linalg.solve: b has 3 rows for 2x2 matrices"),
    ("jnp.linalg.svd(x, hermitian=True)", "hermitian=True are not supported"),
    ('jax.image.resize(x, (4,), "linear")', "jax.image.resize: shape must be 2 sizes for "
     "f32[2, 3], got tuple (int 4)"),
    ('jax.image.resize(x, (4, 6), "area")', "jax.image.resize: unknown method 'area'"),
    ("jnp.meshgrid(x, x)", "jnp.meshgrid takes vectors, got f32[2, 3], f32[2, 3]"),
    ('jnp.meshgrid(x[0], x[1], indexing="xz")', "indexing must be 'xy' or 'ij'"),
    ("jnp.diagonal(x, 0, 1, 1)", "axis1 and axis2 are the same axis"),
    ("jnp.nan_to_num(x, nan=x)", "jnp.nan_to_num: nan= must be a static number"),
])
def test_misuses_are_located_errors(expr: str, message: str) -> None:
    errors = build_errors(f"""
        class Net(nn.Module):
            def apply(self, x):
                return {expr}

        aot.target("net", Net, x=aot.f32[2, 3])
        """)
    first = errors.splitlines()[0]
    assert ":8:" in first and "error[AOT" in first, errors
    assert message in errors, errors


def test_pooling_written_with_reduce_window_equals_linen() -> None:
    """flax.nn's own pooling, as files copied it: lax.reduce_window over (1, *window, 1)."""
    m = build("""
        def pool(inputs, init, reduce_fn, window_shape, strides, padding):
            dims = (1,) + window_shape + (1,)
            strides = (1,) + strides + (1,)
            return jax.lax.reduce_window(inputs, init, reduce_fn, dims, strides, padding)

        class Net(nn.Module):
            def apply(self, x):
                y = pool(x, -jnp.inf, jax.lax.max, (3, 3), (2, 2), "SAME")
                z = pool(x, 0.0, jax.lax.add, (2, 2), (2, 2), "VALID") / 4.0
                return y, z

        aot.target("net", Net, x=aot.f32[2, 6, 6, 3])
        """)
    x = np.random.default_rng(0).standard_normal((2, 6, 6, 3)).astype(np.float32)
    (y, z), _ = m.net.apply({}, {}, x)
    np.testing.assert_allclose(y, linen.max_pool(x, (3, 3), (2, 2), "SAME"), rtol=1e-6)
    np.testing.assert_allclose(z, linen.avg_pool(x, (2, 2), (2, 2), "VALID"), rtol=1e-6)
    assert "jax.lax.reduce_window(x, -jnp.inf, jax.lax.max," in m.__aotflax_text__ or \
        "jax.lax.max" in m.__aotflax_text__


def test_reduce_window_takes_lax_monoids_only() -> None:
    errors = build_errors("""
        class Net(nn.Module):
            def apply(self, x):
                return jax.lax.reduce_window(x, 0.0, lambda a, b: a + b, (1, 2), (1, 2), "VALID")

        aot.target("net", Net, x=aot.f32[2, 4])
        """)
    assert "error[AOT203]: jax.lax.reduce_window: computation must be one of jnp.add" in errors
