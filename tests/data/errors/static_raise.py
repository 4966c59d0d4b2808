from aotflax import nn, aot


class Net(nn.Module):
    def apply(self, x, depth: int = 2):
        if depth < 3:
            raise ValueError(f"depth must be at least 3, got {depth}")  # E: AOT300 depth must be at least 3, got 2
        assert x.ndim == 3, "expected a rank-3 input"  # E: AOT300 expected a rank-3 input
        return nn.Dense(x, 4)


aot.target("net", Net, x=aot.f32[2, 8])
