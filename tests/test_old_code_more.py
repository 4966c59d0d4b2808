"""More of what 2020 flax.nn model files wrote around the layers, built and run.

Real files (an MLPerf ResNet with a space-to-depth stem, locally connected and
weight-normalized convolutions) wrote their own convolutions on `lax` with
flax.nn's private `nn.linear._conv_dimension_numbers(shape)`, subclassed
`nn.base.Module`, and passed BatchNorm the arguments of its flax.nn signature
(`batch_stats=None`, `axis_index_groups=None`).  Each idiom here is a small model
of our own, checked against Flax Linen or lax.
"""

from __future__ import annotations

import flax.linen as linen
import jax
import numpy as np
import pytest
from helpers import build, build_errors, perturbed

RTOL, ATOL = 1e-5, 1e-5


def _x(*shape: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


_OWN_CONV = """
from jax import lax


class OwnConv(nn.base.Module):
    def apply(self, x, features, strides=(1, 1)):
        kernel = self.param("kernel", (3, 3, x.shape[-1], features),
                            nn.linear.default_kernel_init)
        numbers = nn.linear._conv_dimension_numbers(x.shape)
        return lax.conv_general_dilated(x, kernel, strides, "SAME",
                                        dimension_numbers=numbers)

aot.target("t", OwnConv.partial(features=5, strides=(2, 1)), x=aot.f32[2, 7, 6, 3])
"""


def test_flax_conv_dimension_numbers_make_a_channels_last_convolution() -> None:
    m = build(_OWN_CONV)
    assert "jax.lax.ConvDimensionNumbers(lhs_spec=(0, 3, 1, 2), rhs_spec=(3, 2, 0, 1), " \
           "out_spec=(0, 3, 1, 2))" in m.__aotflax_text__
    params = perturbed(m.t.init(jax.random.key(0))[0], 1)
    x = _x(2, 7, 6, 3)
    y, _ = m.t.apply(params, {}, x)
    twin = linen.Conv(5, (3, 3), strides=(2, 1), padding="SAME", use_bias=False)
    want = twin.apply({"params": params}, x)
    assert y.shape == (2, 4, 6, 5)
    np.testing.assert_allclose(y, want, rtol=RTOL, atol=ATOL)


def test_conv_dimension_numbers_are_a_namedtuple_of_lax() -> None:
    """`lax.ConvDimensionNumbers(...)` made, unpacked and read by field; an order of
    kernel axes no layout string can say (spatial axes reversed) reaches lax as written."""
    m = build("""
    from jax import lax


    class M(nn.Module):
        def apply(self, x, k):
            flax_numbers = nn.linear._conv_dimension_numbers(x.shape)
            lax_numbers = lax.conv_dimension_numbers(x.shape, k.shape,
                                                     ("NHWC", "HWIO", "NHWC"))
            assert flax_numbers == lax_numbers
            lhs, rhs, out = lax_numbers
            wh = lax.ConvDimensionNumbers(lhs, (3, 2, 1, 0), out_spec=flax_numbers.out_spec)
            a = lax.conv_general_dilated(x, k, (1, 1), "VALID", dimension_numbers=wh)
            ident = lax.conv_dimension_numbers(x.shape, k.shape, None)
            b = lax.conv_general_dilated(x.transpose((0, 3, 1, 2)), k.transpose((3, 2, 0, 1)),
                                         (1, 1), "VALID", dimension_numbers=ident)
            return a, b

    aot.target("t", M, x=aot.f32[1, 5, 6, 2], k=aot.f32[2, 3, 2, 4])
    """)
    x, k = _x(1, 5, 6, 2), _x(2, 3, 2, 4, seed=1)
    (a, b), _ = m.t.apply({}, {}, x, k)
    numbers = jax.lax.ConvDimensionNumbers((0, 3, 1, 2), (3, 2, 1, 0), (0, 3, 1, 2))
    want = jax.lax.conv_general_dilated(x, k, (1, 1), "VALID", dimension_numbers=numbers)
    assert a.shape == want.shape == (1, 3, 5, 4)  # the window is (3, 2), not (2, 3)
    np.testing.assert_allclose(a, want, rtol=RTOL, atol=ATOL)
    want_b = jax.lax.conv_general_dilated(x.transpose(0, 3, 1, 2), k.transpose(3, 2, 0, 1),
                                          (1, 1), "VALID")
    assert b.shape == want_b.shape
    np.testing.assert_allclose(b, want_b, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("numbers, message, where", [
    ("lax.ConvDimensionNumbers((0, 3, 1, 2), (3, 2, 0, 0), (0, 3, 1, 2))",
     "AOT203]: jax.lax.conv_general_dilated: rhs_spec (3, 2, 0, 0) must be a permutation of "
     "the 4 axes", ":11:16:"),
    ("((0, 3, 1, 2), (3, 2, 0, 1), (0, 3, 1, 2))",
     "AOT203]: jax.lax.conv_general_dilated: dimension_numbers must be None, three layout "
     "strings", ":11:16:"),
    ("lax.conv_dimension_numbers(x.shape, (3, 3, 2), None)",
     "AOT210]: jax.lax.conv_dimension_numbers: convolution needs lhs and rhs of one rank, got "
     "4 and 3", ":12:59:"),
    ("nn.linear._conv_dimension_numbers(3)",
     "AOT203]: nn.linear._conv_dimension_numbers: input_shape must be a shape (a tuple of "
     "ints), got int 3", ":12:59:"),
])
def test_conv_dimension_number_errors_are_located(numbers: str, message: str,
                                                  where: str) -> None:
    out = build_errors(f"""
    from jax import lax


    class M(nn.Module):
        def apply(self, x, k):
            return lax.conv_general_dilated(x, k, (1, 1), "SAME",
                                            dimension_numbers={numbers})

    aot.target("t", M, x=aot.f32[1, 5, 6, 2], k=aot.f32[3, 3, 2, 4])
    """)
    assert message in out and f"{where} error[" in out, out


def test_batch_norm_takes_the_flax_nn_arguments_it_ignored() -> None:
    """flax.nn's `batch_stats=None` and `axis_index_groups=None` (which flax.nn and Linen
    read only with an `axis_name`) change nothing."""
    m = build("""
    class M(nn.Module):
        def apply(self, x, train=True):
            x = nn.BatchNorm(x, batch_stats=None, use_running_average=not train,
                             momentum=0.9, axis_name=None, axis_index_groups=[[0, 1]])
            return nn.BatchNorm(x, use_running_average=not train, axis_name="batch",
                                axis_index_groups=None)

    aot.target("t", M, x=aot.f32[4, 3])
    aot.target("e", M.partial(train=False), x=aot.f32[4, 3])
    """)
    params, state = m.t.init(jax.random.key(0))
    params, state = perturbed(params, 1), perturbed(state, 2)
    x = _x(4, 3)

    class Twin(linen.Module):
        train: bool = True

        @linen.compact
        def __call__(self, x):
            x = linen.BatchNorm(use_running_average=not self.train, momentum=0.9)(x)
            return linen.BatchNorm(use_running_average=not self.train)(x)

    for target, train in ((m.t, True), (m.e, False)):
        (y, new_state) = target.apply(params, state, x)
        want, updates = Twin(train).apply({"params": params, **state}, x,
                                          mutable=["batch_stats"])
        np.testing.assert_allclose(y, want, rtol=RTOL, atol=ATOL)
        if train:
            jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=RTOL, atol=ATOL),
                         new_state, dict(updates))


@pytest.mark.parametrize("args, message, hint", [
    ("axis_name='batch', axis_index_groups=[[0, 1], [2, 3]]",
     "averages statistics over groups of devices",
     "hint: leave axis_index_groups=None: statistics cover the global batch"),
    ("batch_stats={}",
     "batch_stats= took a flax.nn Collection; here the statistics are the 'batch_stats' state",
     "hint: leave batch_stats out"),
])
def test_batch_norm_arguments_with_no_meaning_here_are_located_errors(
        args: str, message: str, hint: str) -> None:
    out = build_errors(f"""
    class M(nn.Module):
        def apply(self, x):
            return nn.BatchNorm(x, {args})

    aot.target("t", M, x=aot.f32[4, 3])
    """)
    assert message in out and hint in out and "error[AOT203]" in out, out
    assert ":8:16: error[AOT203]" in out


def test_nn_base_holds_the_module_machinery() -> None:
    m = build("""
    from flax.nn import base


    class Inner(nn.base.Module):
        def apply(self, x):
            return nn.Dense(x, 3)

    @base.module
    def Outer(x):
        return Inner(x, name="inner") * 2.0

    aot.target("t", Outer, x=aot.f32[2, 4])
    """.replace("from flax.nn import base", "from aotflax.nn import base"))
    params, _ = m.t.init(jax.random.key(0))
    x = _x(2, 4)
    y, _ = m.t.apply(params, {}, x)
    d = params["inner"]["Dense_0"]
    np.testing.assert_allclose(y, 2.0 * (x @ np.asarray(d["kernel"]) + np.asarray(d["bias"])),
                               rtol=RTOL, atol=ATOL)
