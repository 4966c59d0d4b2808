"""numpy in model code: what numpy cannot do is located, as under jax.jit."""
from aotflax import nn, aot
import jax.numpy as jnp
import numpy as np

TABLE = np.ones((2, 8))  # E: AOT324 np.ones makes a numpy array


class Net(nn.Module):
    def apply(self, x):
        a = np.exp(x)  # E: AOT220 cannot take the array f32[2, 8]
        b = np.zeros((1 << 14, 1 << 14))  # E: AOT220 268,435,456 elements
        c = np.zeros((2, 8), dtype=jnp.bfloat16)  # E: AOT220 numpy has no bfloat16
        d = np.arange(8)
        d[::2] = np.ones(3)  # E: AOT210 cannot assign a value of shape (3,)
        d *= 1.5  # E: AOT201 does not store in place
        e = np.arange(8)
        f = e[e > 3]  # E: AOT211 boolean mask indexing
        g = np.sqrt("four")  # E: AOT202 expects numbers
        h = np.arange(3)[5]  # E: AOT210 out of bounds
        k = np.arange(4).tolist()  # E: AOT346 no supported attribute 'tolist'
        return x


aot.target("net", Net, x=aot.f32[2, 8])


class UsesTable(nn.Module):
    def apply(self, x, table):
        return x


aot.target("table", UsesTable.partial(table=TABLE), x=aot.f32[2, 8])
