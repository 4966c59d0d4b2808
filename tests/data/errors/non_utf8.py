"""A model file saved in Latin-1: the bad byte is located."""
from aotflax import nn, aot


class MLP(nn.Module):
    def apply(self, x):
        return nn.Dense(x, 4, name="café")  # E: AOT101 not valid UTF-8


aot.target("mlp", MLP, x=aot.f32[2, 8])
