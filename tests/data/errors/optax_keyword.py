"""A wrong optax argument: optax checks it when verify builds the optimizer."""
from aotflax import nn, aot
import jax.numpy as jnp
import optax


class Block(nn.Module):
    def apply(self, x):
        return nn.Dense(x, 4)


def mean_loss(y):
    return jnp.mean(y)


aot.train_target("train", Block, loss=mean_loss, optimizer=optax.adam(1e-3, rate=0.1),  # E: AOT420 unexpected keyword argument 'rate'
                 x=aot.f32[2, 8])
