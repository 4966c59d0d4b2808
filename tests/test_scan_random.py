"""Scans the way old flax.nn code writes them: `jax_utils.scan_in_dim`, randomness inside
the step, random keys as inputs and carries.

Keys inside a scan step follow the documented rule: the call site's key (the target's
`rng` folded with the crc32 of the module path) folded once more with the step index.
"""

from __future__ import annotations

import flax.jax_utils
import jax
import jax.numpy as jnp
import numpy as np
from helpers import build, build_errors, perturbed, scope_hash

SCAN_IN_DIM = """
class Scanned(nn.Module):
    def apply(self, xs):
        cell = nn.Dense.shared(features=xs.shape[-1], name="cell")

        def step(h, x):
            h = jnp.tanh(cell(h) + x)
            return h, 2.0 * h

        h0 = jnp.zeros((xs.shape[0], xs.shape[-1]))
        return jax_utils.scan_in_dim(step, h0, xs, axis=1)


aot.target("scanned", Scanned, xs=aot.f32[2, 5, 3])
"""


def test_scan_in_dim_equals_flax_jax_utils() -> None:
    m = build("from aotflax import jax_utils\n" + SCAN_IN_DIM)
    params, state = m.scanned.init(jax.random.key(0))
    params = perturbed(params, 3)  # no zero bias
    xs = jax.random.normal(jax.random.key(1), (2, 5, 3))
    (h, ys), _ = m.scanned.apply(params, state, xs)
    cell = params["cell"]

    def step(h, x):
        h = jnp.tanh(h @ cell["kernel"] + cell["bias"][None] + x)
        return h, 2.0 * h

    want_h, want_ys = flax.jax_utils.scan_in_dim(step, jnp.zeros((2, 3)), xs, axis=1)
    np.testing.assert_allclose(h, want_h, rtol=1e-6)
    np.testing.assert_allclose(ys, want_ys, rtol=1e-6)
    assert "jax.lax.scan(" in m.__aotflax_text__


def test_make_rng_and_dropout_inside_a_scan_step_follow_the_documented_keys() -> None:
    m = build("""
    class Noisy(nn.Module):
        def apply(self, xs, rate: float = 0.5):
            def step(h, x):
                h = h + nn.dropout(x, rate=rate)
                return h, h + jax.random.normal(nn.make_rng(), h.shape)

            return jax.lax.scan(step, jnp.zeros(xs.shape[1:]), xs)

    aot.target("noisy", Noisy, xs=aot.f32[4, 3])
    """)
    params, state = m.noisy.init(jax.random.key(0))
    xs = jax.random.normal(jax.random.key(1), (4, 3))
    rng = jax.random.key(7)
    (h, ys), _ = m.noisy.apply(params, state, xs, rng=rng)
    dropout_key = jax.random.fold_in(rng, scope_hash("Dropout_0"))
    normal_key = jax.random.fold_in(rng, scope_hash("make_rng_0"))
    want_h, want = jnp.zeros(3), []
    for t in range(4):
        keep = jax.random.bernoulli(jax.random.fold_in(dropout_key, t), 0.5, (3,))
        want_h = want_h + jnp.where(keep, xs[t] / 0.5, 0.0)
        want.append(want_h + jax.random.normal(jax.random.fold_in(normal_key, t), (3,)))
    np.testing.assert_allclose(h, want_h, rtol=1e-6)
    np.testing.assert_allclose(ys, jnp.stack(want), rtol=1e-6, atol=1e-6)
    # every step draws its own keys
    assert not np.allclose(ys[1] - ys[0], ys[2] - ys[1])


def test_a_random_key_is_a_target_input_and_a_module_argument() -> None:
    m = build("""
    def reparameterize(rng, mean, logvar):
        return mean + jax.random.normal(rng, logvar.shape) * jnp.exp(0.5 * logvar)


    class Decoder(nn.Module):
        def apply(self, z, rng):
            return nn.Dense(reparameterize(rng, z, z), 2, name="fc")


    class VAE(nn.Module):
        def apply(self, x, z_rng):
            return Decoder(x, z_rng, name="decoder")


    aot.target("vae", VAE, x=aot.f32[2, 3], z_rng=aot.key)
    """)
    assert str(m.vae.INPUTS["z_rng"].dtype) == "key<fry>"
    params, state = m.vae.init(jax.random.key(0))
    params = perturbed(params, 4)  # no zero bias
    x, key = jax.random.normal(jax.random.key(1), (2, 3)), jax.random.key(3)
    y, _ = m.vae.apply(params, state, x, key)
    fc = params["decoder"]["fc"]
    z = x + jax.random.normal(key, (2, 3)) * jnp.exp(0.5 * x)
    np.testing.assert_allclose(y, z @ fc["kernel"] + fc["bias"][None], rtol=1e-6)
    assert not m.vae.stochastic  # the key is an input, not the target's rng


def test_initialize_carry_takes_a_key_as_old_flax_signed_it() -> None:
    m = build("""
    from aotflax import jax_utils


    class Encoder(nn.Module):
        def apply(self, xs):
            cell = nn.LSTMCell.shared(name="lstm")
            carry = nn.LSTMCell.initialize_carry(nn.make_rng(), (xs.shape[0],), 4)

            def step(carry, x):
                return cell(carry, x)

            (c, h), ys = jax_utils.scan_in_dim(step, carry, xs, axis=1)
            return h

    aot.target("enc", Encoder, xs=aot.f32[2, 6, 3])
    """)
    params, state = m.enc.init(jax.random.key(0))
    h, _ = m.enc.apply(params, state, jnp.ones((2, 6, 3)), rng=jax.random.key(1))
    assert h.shape == (2, 4) and np.isfinite(h).all()


def test_a_module_partial_is_a_scan_step_with_one_parameter_set() -> None:
    """sst2's `scan_in_dim(nn.LSTMCell.partial(name="lstm_cell"), carry, inputs, axis=1)`."""
    import flax.linen as linen

    m = build("""
    import aotflax as flax


    class LSTM(nn.Module):
        def apply(self, inputs, lengths, hidden_size: int = 4):
            batch_size = inputs.shape[0]
            carry = nn.LSTMCell.initialize_carry(nn.make_rng(), (batch_size,), hidden_size)
            _, outputs = flax.jax_utils.scan_in_dim(
                nn.LSTMCell.partial(name="lstm_cell"), carry, inputs, axis=1)
            return outputs[jnp.arange(batch_size), jnp.maximum(0, lengths - 1), :]


    aot.target("lstm", LSTM, inputs=aot.f32[2, 5, 3], lengths=aot.i32[2])
    """)
    params, state = m.lstm.init(jax.random.key(0))
    assert set(params) == {"lstm_cell"}
    params = jax.tree_util.tree_map(
        lambda p: p + 0.1 * jax.random.normal(jax.random.key(5), p.shape), params)
    xs = jax.random.normal(jax.random.key(1), (2, 5, 3))
    lengths = jnp.array([3, 5], jnp.int32)
    got, _ = m.lstm.apply(params, state, xs, lengths, rng=jax.random.key(2))
    cell = linen.LSTMCell(features=4)
    carry = (jnp.zeros((2, 4)), jnp.zeros((2, 4)))
    outs = []
    for t in range(5):
        carry, y = cell.apply({"params": params["lstm_cell"]}, carry, xs[:, t])
        outs.append(y)
    outs = jnp.stack(outs, axis=1)
    np.testing.assert_allclose(got, outs[jnp.arange(2), lengths - 1], rtol=1e-5, atol=1e-6)


def test_a_lambda_is_a_scan_step() -> None:
    m = build("""
    class Net(nn.Module):
        def apply(self, xs):
            return jax.lax.scan(lambda c, x: (c + x, c * 2.0), xs[0], xs)

    aot.target("net", Net, xs=aot.f32[5, 3])
    """)
    xs = jax.random.normal(jax.random.key(0), (5, 3))
    (c, ys), _ = m.net.apply({}, {}, xs)
    want_c, want_ys = jax.lax.scan(lambda c, x: (c + x, c * 2.0), xs[0], xs)
    np.testing.assert_allclose(c, want_c, rtol=1e-6)
    np.testing.assert_allclose(ys, want_ys, rtol=1e-6)


def test_jax_vmap_of_a_model_function_is_a_real_vmap() -> None:
    m = build("""
    def kl_divergence(mean, logvar):
        return -0.5 * jnp.sum(1 + logvar - jnp.square(mean) - jnp.exp(logvar))


    def pairwise(a, b):
        return jnp.dot(a, b)


    class Net(nn.Module):
        def apply(self, mean, logvar, w):
            kl = jax.vmap(kl_divergence)(mean, logvar)
            d = jax.vmap(pairwise, in_axes=(0, None))(mean, w)
            twice = jax.vmap(lambda a: a * 2.0, out_axes=1)(mean)
            return kl, d, twice

    aot.target("net", Net, mean=aot.f32[4, 3], logvar=aot.f32[4, 3], w=aot.f32[3])
    """)
    keys = jax.random.split(jax.random.key(0), 3)
    mean, logvar = (jax.random.normal(k, (4, 3)) for k in keys[:2])
    w = jax.random.normal(keys[2], (3,))
    (kl, d, twice), _ = m.net.apply({}, {}, mean, logvar, w)
    want_kl = jax.vmap(lambda m, lv: -0.5 * jnp.sum(1 + lv - jnp.square(m) - jnp.exp(lv)))(
        mean, logvar)
    np.testing.assert_allclose(kl, want_kl, rtol=1e-6)
    np.testing.assert_allclose(d, mean @ w, rtol=1e-6)
    np.testing.assert_allclose(twice, (mean * 2.0).T, rtol=1e-6)
    assert m.__aotflax_text__.count("jax.vmap(") == 3


def test_custom_jvp_functions_keep_their_rule() -> None:
    m = build("""
    @jax.custom_jvp
    def safe_log(x):
        return jnp.log(x)


    @safe_log.defjvp
    def safe_log_jvp(primals, tangents):
        x, = primals
        t, = tangents
        return safe_log(x), t / jnp.maximum(x, 1.0)


    def doubled_gradient(x):
        return x


    doubled_gradient = jax.custom_jvp(doubled_gradient)
    doubled_gradient.defjvps(lambda t, ans, x: 2.0 * t)


    class Net(nn.Module):
        def apply(self, x):
            return jnp.sum(safe_log(x) + doubled_gradient(x * 3.0))

    aot.target("net", Net, x=aot.f32[4])
    """)
    x = jnp.array([0.5, 1.0, 2.0, 4.0])
    grad = jax.grad(lambda x: m.net.apply({}, {}, x)[0])(x)
    np.testing.assert_allclose(grad, 1.0 / jnp.maximum(x, 1.0) + 6.0, rtol=1e-6)
    value, _ = m.net.apply({}, {}, x)
    np.testing.assert_allclose(value, jnp.sum(jnp.log(x) + 3.0 * x), rtol=1e-6)
    text = m.__aotflax_text__
    assert "@jax.custom_jvp" in text and "@safe_log.defjvp" in text


def test_custom_vjp_functions_keep_their_rules() -> None:
    """`jax.custom_vjp` with `defvjp(fwd, bwd)`: residuals of several arrays, a scan in the
    rules (Performer's causal attention), none at all; the gradient is the rules'."""
    m = build("""
    def scaled_cumsum(xs, w):
        def body(c, x):
            return c + x * w, c + x * w
        return jax.lax.scan(body, jnp.zeros_like(w), xs)


    @jax.custom_vjp
    def cumsum(xs, w):
        return scaled_cumsum(xs, w)[1]


    def cumsum_fwd(xs, w):
        _, ys = scaled_cumsum(xs, w)
        return ys, (xs, w)


    def cumsum_bwd(res, g):
        xs, w = res
        def body(c, gx):
            return c + gx, c + gx
        _, acc = jax.lax.scan(body, jnp.zeros_like(w), g, reverse=True)
        return acc * w[None], jnp.sum(acc * xs, axis=0)


    cumsum.defvjp(cumsum_fwd, cumsum_bwd)


    @jax.custom_vjp
    def clip_gradient(x):
        return x


    def clip_fwd(x):
        return x, ()


    def clip_bwd(res, g):
        return (jnp.clip(g, -0.1, 0.1),)


    clip_gradient.defvjp(clip_fwd, clip_bwd)


    class Net(nn.Module):
        def apply(self, xs, w):
            return jnp.sum(cumsum(xs, w) ** 2) + jnp.sum(clip_gradient(w) * 3.0)

    aot.target("net", Net, xs=aot.f32[5, 3], w=aot.f32[3])
    """)
    rng = np.random.default_rng(0)
    xs, w = (rng.standard_normal(s).astype(np.float32) for s in ((5, 3), (3,)))

    def reference(xs, w):
        return jnp.sum(jnp.cumsum(xs * w[None], axis=0) ** 2) + jnp.sum(w * 3.0)

    value, _ = m.net.apply({}, {}, xs, w)
    np.testing.assert_allclose(value, reference(xs, w), rtol=1e-5)
    gx, gw = jax.grad(lambda a, b: m.net.apply({}, {}, a, b)[0], argnums=(0, 1))(xs, w)
    want_x, want_w = jax.grad(reference, argnums=(0, 1))(xs, w)
    np.testing.assert_allclose(gx, want_x, rtol=1e-5, atol=1e-5)
    # w's gradient: the cumsum's, plus the clipped 3.0 (0.1) of the second term
    np.testing.assert_allclose(gw, want_w - 3.0 + 0.1, rtol=1e-5, atol=1e-5)
    text = m.__aotflax_text__
    assert text.count("@jax.custom_vjp") == 2
    assert "@_runtime.backward_of(cumsum, cumsum_fwd)\ndef cumsum_bwd(res, g):" in text


def test_custom_derivative_functions_read_arrays_only_through_arguments() -> None:
    """They are emitted at module level: an array of the defining function is refused."""
    for decorate, rule in (("@jax.custom_vjp", "f.defvjp(lambda x: (f(x), ()), "
                            "lambda res, g: (g * w,))"),
                           ("@jax.custom_jvp", "f.defjvps(lambda t, ans, x: t * w)")):
        out = build_errors(f"""
        def scaled(x, w):
            {decorate}
            def f(x):
                return x * w

            {rule}
            return f(x)


        class M(nn.Module):
            def apply(self, x):
                return scaled(x, nn.Dense(x, 3))

        aot.target("t", M, x=aot.f32[2, 3])
        """)
        assert "error[AOT366]: f reads an array f32[2, 3] of the function that defines it" \
            in out and "pass the array as an argument" in out, out


def test_jax_vmap_passes_unmapped_python_values_through() -> None:
    """`jax.vmap(f, in_axes=(0, None, None))(x, 2, 3.0)`: as in JAX, an unmapped Python value
    reaches `f` as it is (a static size inside), nested vmaps too."""
    m = build("""
    def rows(x, n, scale):
        return jnp.reshape(x, (n, -1)).sum(0) * scale


    def batch(x, n, scale):
        return jax.vmap(rows, in_axes=(0, None, None))(x, n, scale)


    class M(nn.Module):
        def apply(self, x):
            return jax.vmap(batch, in_axes=(0, None, None))(x, 2, 3.0)

    aot.target("t", M, x=aot.f32[2, 3, 4])
    """)
    x = np.random.default_rng(0).standard_normal((2, 3, 4)).astype(np.float32)
    got, _ = m.t.apply({}, {}, x)
    want = jax.vmap(jax.vmap(lambda r: jnp.reshape(r, (2, -1)).sum(0) * 3.0))(x)
    np.testing.assert_allclose(got, want, rtol=1e-6)


def test_stop_gradient_of_a_key_is_the_key() -> None:
    """`jax.lax.stop_gradient(jax.lax.tie_in(x, rng))` (2020 hashing code): a key has no
    gradient, so JAX gives it back and so does the build."""
    m = build("""
    class M(nn.Module):
        def apply(self, x):
            rng = jax.lax.stop_gradient(jax.lax.tie_in(x, jax.random.PRNGKey(0)))
            return x + jax.random.normal(rng, x.shape)

    aot.target("t", M, x=aot.f32[3])
    """)
    x = np.zeros(3, np.float32)
    got, _ = m.t.apply({}, {}, x)
    np.testing.assert_array_equal(got, jax.random.normal(jax.random.PRNGKey(0), (3,)))
