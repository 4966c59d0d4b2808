from aotflax import nn, aot
import jax.numpy as jnp


class Net(nn.Module):
    def apply(self, x):
        a = nn.Dense(x, 4, param_dtype=None)  # E: AOT203 'param_dtype' must be a dtype
        carry = nn.LSTMCell.initialize_carry(None, (2,), 4)
        b = nn.LSTMCell(carry, x, gate_fn=None)  # E: AOT203 'gate_fn' must be an activation
        m = nn.make_causal_mask(x, dtype=None)  # E: AOT203 'dtype' must be a dtype
        return x


aot.target("net", Net, x=aot.f32[2, 8])
