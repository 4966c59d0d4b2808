"""What real 2020 flax.nn files computed at their top level, found building more of them.

A training script's `KEY = jax.random.PRNGKey(0)` read by a `@jax.vmap` sampling function a
module calls (an MNIST VAE), a Dopamine network's module-level dict of `np.array` bounds
(`env_inf[env]['MIN_VALS']`), tables built with jnp at import time.  Python computed them
when it imported the file; the build imports nothing, so such a name is computed again where
a function reads it (`resolve.base.ImportTimeArray`).  Each idiom is a small model of our
own, checked against Linen or numpy.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import flax.linen as linen
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import build, build_errors, perturbed

from aotflax.artifacts import render_runtime
from aotflax.driver import front_end
from aotflax.verify import import_generated, verify_module

RTOL, ATOL = 1e-6, 1e-6


def _x(*shape: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


_KEY_MODEL = """
KEY = jax.random.PRNGKey(0)


@jax.vmap
def draw_sample(z_mean, z_log_var):
    epsilon = jax.random.normal(KEY, z_mean.shape)
    return z_mean + jnp.exp(0.5 * z_log_var) * epsilon


class Encoder(nn.Module):
    def apply(self, x):
        z_log_var = nn.Dense(x, features=2, name="z_log_var")
        z_mean = jnp.zeros(z_log_var.shape)
        return z_mean, z_log_var, draw_sample(z_mean, z_log_var)

aot.target("t", Encoder, x=aot.f32[3, 4])
aot.target("again", Encoder, x=aot.f32[5, 4])
"""


def test_a_top_level_key_read_inside_a_vmapped_function_equals_linen() -> None:
    m = build(_KEY_MODEL)
    text = m.__aotflax_text__
    assert "jax.random.PRNGKey(0)  # " in text  # emitted in the vmapped function
    params = perturbed(m.t.init(jax.random.key(0))[0], 1)
    x = _x(3, 4)
    (mean, log_var, sample), _ = m.t.apply(params, {}, x)

    key = jax.random.PRNGKey(0)

    @jax.vmap
    def draw(z_mean, z_log_var):
        return z_mean + jnp.exp(0.5 * z_log_var) * jax.random.normal(key, z_mean.shape)

    class Twin(linen.Module):
        @linen.compact
        def __call__(self, x):
            z_log_var = linen.Dense(2, name="z_log_var")(x)
            z_mean = jnp.zeros(z_log_var.shape)
            return z_mean, z_log_var, draw(z_mean, z_log_var)

    want = Twin().apply({"params": params}, x)
    for got, ref in zip((mean, log_var, sample), want):
        np.testing.assert_allclose(got, ref, rtol=RTOL, atol=ATOL)
    # the same key in every row (the script's draw), other targets built alike
    (_, _, again), _ = m.again.apply(perturbed(m.again.init(jax.random.key(0))[0], 1), {},
                                     _x(5, 4))
    assert again.shape == (5, 2)


def test_top_level_tables_of_jnp_and_numpy_are_computed_where_they_are_read() -> None:
    """A chain of top-level arrays (one reading another), a dict of numpy bounds indexed by
    a hyperparameter as Dopamine's networks do, and a top-level function building a table."""
    m = build("""
    import math

    import numpy as onp

    env_inf = {"CartPole": {"MIN_VALS": onp.array([-2.4, -5., -math.pi / 12.]),
                            "MAX_VALS": onp.array([2.4, 5., math.pi / 12.])}}
    MASK = jnp.tril(jnp.ones((3, 3)))
    SCALED = MASK * 2.0


    def make_table(n):
        return jnp.arange(n, dtype=jnp.float32) / n

    TABLE = make_table(3)


    class Net(nn.Module):
        def apply(self, x, env="CartPole"):
            x = x - env_inf[env]["MIN_VALS"]
            x /= env_inf[env]["MAX_VALS"] - env_inf[env]["MIN_VALS"]
            x = 2.0 * x - 1.0
            return x @ SCALED + TABLE, MASK

    aot.target("t", Net, x=aot.f32[3])
    """)
    x = _x(3)
    (y, mask), _ = m.t.apply({}, {}, x)
    lo = np.array([-2.4, -5., -np.pi / 12.])
    hi = np.array([2.4, 5., np.pi / 12.])
    want = (2.0 * ((x - lo) / (hi - lo)) - 1.0).astype(np.float32)
    want = want @ (2.0 * np.tril(np.ones((3, 3)))) + np.arange(3) / 3
    np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(mask, np.tril(np.ones((3, 3))))


def test_a_top_level_array_where_a_build_time_value_is_needed_is_its_own_error() -> None:
    """Read by another top-level statement (a target's hyperparameter), the array is the
    error its expression gives there: located at the expression, root cause first."""
    out = build_errors("""
    SCALE = jnp.sqrt(2.0)


    class M(nn.Module):
        def apply(self, x, scale):
            return x * scale

    aot.target("t", M.partial(scale=SCALE), x=aot.f32[2])
    """)
    first = out.splitlines()[0]
    assert ":6:" in first and "AOT324]: jnp.sqrt can only be used inside a module's apply" \
        in first, out
    assert out.count("error[") == 1, out


def test_a_top_level_array_rebound_from_itself_is_located() -> None:
    out = build_errors("""
    KEY = jax.random.PRNGKey(0)
    KEY = jax.random.split(KEY)[0]


    class M(nn.Module):
        def apply(self, x):
            return x + jax.random.normal(KEY, x.shape)

    aot.target("t", M, x=aot.f32[2])
    """)
    assert "AOT340]: 'KEY' is computed from its own earlier array value at the top level" \
        in out and ":7:" in out, out
    assert "hint: give the new value another name than 'KEY'" in out, out


@pytest.mark.parametrize("where", ["jax.vmap", "jax.checkpoint"])
def test_a_failed_value_inside_a_transform_is_reported_once(where: str) -> None:
    """A top-level name that failed is read by a transformed function two targets reach:
    the second gets no knock-on 'must return arrays' error."""
    out = build_errors(f"""
    SCALE = undefined_name


    @{where}
    def f(x):
        return x * SCALE


    class M(nn.Module):
        def apply(self, x):
            return f(x)

    aot.target("a", M, x=aot.f32[2, 3])
    aot.target("b", M, x=aot.f32[4, 3])
    """)
    assert "AOT340]: name 'undefined_name' is not defined" in out, out
    assert "AOT365" not in out and out.count("error[") == 1, out


def test_a_top_level_array_of_another_model_file_is_read_by_import_and_attribute(
        tmp_path: Path) -> None:
    consts = """
        import jax
        import jax.numpy as jnp

        KEY = jax.random.PRNGKey(3)
        MASK = jnp.tril(jnp.ones((3, 3)))
    """
    model = """
        from aotflax import nn, aot
        import jax
        import consts
        from consts import MASK


        class M(nn.Module):
            def apply(self, x):
                return x @ MASK + jax.random.normal(consts.KEY, x.shape)


        aot.target("t", M, x=aot.f32[2, 3])
    """
    for name, text in (("consts.py", consts), ("model.py", model)):
        (tmp_path / name).write_text(textwrap.dedent(text).lstrip("\n"))
    report = front_end([tmp_path / "model.py"], tmp_path)
    assert not report.diagnostics, "\n".join(d.render() for d in report.diagnostics)
    f = next(f for f in report.files if f.module == "model")
    _, importer = import_generated({g.out_rel: g.text for g in report.files}, render_runtime())
    module = importer(f.module)
    verify_module(module, f.program)
    x = _x(2, 3)
    y, _ = module.t.apply({}, {}, x)
    want = x @ np.tril(np.ones((3, 3))) + jax.random.normal(jax.random.PRNGKey(3), (2, 3))
    np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-6)


def test_a_top_level_key_unpacked_from_split_is_unpacked_where_it_is_read() -> None:
    m = build("""
    RNG, NOISE_RNG = jax.random.split(jax.random.PRNGKey(0))


    class M(nn.Module):
        def apply(self, x):
            return x + jax.random.normal(NOISE_RNG, x.shape), jax.random.uniform(RNG, x.shape)

    aot.target("t", M, x=aot.f32[2, 3])
    """)
    x = _x(2, 3)
    (y, u), _ = m.t.apply({}, {}, x)
    rng, noise_rng = jax.random.split(jax.random.PRNGKey(0))
    np.testing.assert_allclose(y, x + jax.random.normal(noise_rng, (2, 3)), rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(u, jax.random.uniform(rng, (2, 3)), rtol=RTOL, atol=ATOL)


def test_a_top_level_array_unpacked_into_too_many_names_is_located() -> None:
    out = build_errors("""
    A, B, C = jax.random.split(jax.random.PRNGKey(0))


    class M(nn.Module):
        def apply(self, x):
            return x + jax.random.normal(C, x.shape)

    aot.target("t", M, x=aot.f32[2, 3])
    """)
    assert ":6:" in out.splitlines()[0] and "AOT333]: cannot unpack u32[2, 2] into 3 names" \
        in out.splitlines()[0], out
    assert "in C, read here" in out, out
