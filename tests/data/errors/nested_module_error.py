"""An error inside a module called from another: reported at the inner line."""
from aotflax import nn, aot


class Inner(nn.Module):
    def apply(self, x, features: int):
        h = nn.Dense(x, features)
        return h * x  # E: AOT210 cannot broadcast


class Outer(nn.Module):
    def apply(self, x):
        return Inner(x, 16)


aot.target("outer", Outer, x=aot.f32[2, 8])
