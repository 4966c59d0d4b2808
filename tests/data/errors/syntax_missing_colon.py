from aotflax import nn, aot


class MLP(nn.Module):
    def apply(self, x, features: int = 4)  # E: AOT100 expected ':'
        return nn.Dense(x, features)


aot.target("mlp", MLP, x=aot.f32[2, 8])
