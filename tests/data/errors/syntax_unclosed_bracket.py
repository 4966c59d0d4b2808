"""An unclosed bracket: the error is where the bracket opens, not at the end of the file."""
from aotflax import nn, aot


class MLP(nn.Module):
    def apply(self, x, features: int = 4):
        x = nn.Dense(x, features  # E: AOT100 never closed
        x = nn.relu(x)
        return x


aot.target("mlp", MLP, x=aot.f32[2, 8])
