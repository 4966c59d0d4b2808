"""A typo that would unroll forever is a quick, located error, not a hang."""
from aotflax import nn, aot


class Net(nn.Module):
    def apply(self, x, depth: int = 10**12):
        for i in range(depth):  # E: AOT330 unroll
            x = nn.Dense(x, 4)
        n = 10 ** 10 ** 10  # E: AOT344 too large
        s = "ab" * 10**12  # E: AOT344 too large
        return x


aot.target("net", Net, x=aot.f32[2, 8])
