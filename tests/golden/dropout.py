"""Golden: a stochastic model takes an rng, folded per module path."""
from aotflax import aot, nn


class Head(nn.Module):
    def apply(self, x, rate: float = 0.5):
        x = nn.dropout(x, rate)
        return nn.Dense(x, 3)


class Model(nn.Module):
    def apply(self, x):
        x = nn.gelu(nn.Dense(x, 8))
        return Head(x, name="head")


aot.target("model", Model, x=aot.f32[2, 4])
