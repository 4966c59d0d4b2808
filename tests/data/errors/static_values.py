"""Mistakes in build-time values: each says what it expected and what it got."""
from aotflax import nn, aot
import jax.numpy as jnp

SIZES = {"hidden": 16}


class Net(nn.Module):
    def apply(self, x):
        a = {**SIZES, **3}  # E: AOT347 ** needs a dict, got int 3
        b = {x: 1}  # E: AOT342 dict keys must be static, got array f32[2, 8]
        c = nn.Dense(x, 4, name=f"dense_{x}")  # E: AOT341 got array f32[2, 8]
        d = f"{SIZES['hidden']:>100000}"  # E: AOT341 too large
        e = "{0.real}".format(3)  # E: AOT341 attribute
        f = SIZES[x]  # E: AOT345 got array f32[2, 8]
        g = nn.Dense(x, **[4])  # E: AOT347 ** needs a dict, got list of 1
        h = (1, 2)[::0]  # E: AOT345 slice step cannot be zero
        i = {[1]: 2}  # E: AOT342 hashable
        j = list(map(lambda v: v + 1))  # E: AOT349 map() takes map(function, iterable, ...)
        k = "%*d" % (10**9, 1)  # E: AOT344 too large
        m = self.param("w", (2,), nn.initializers.normal(stddev="a"))  # E: AOT203 'stddev' must be a number
        n = jnp.arange(0, 10, 0)  # E: AOT203 division by zero
        return nn.Dense(x, SIZES["hidden"])


aot.target("net", Net, x=aot.f32[2, 8])
aot.target(Net, x=aot.f32[2, 8])  # E: AOT400 got (module Net)
