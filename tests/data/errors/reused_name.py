from aotflax import nn, aot


class Net(nn.Module):
    def apply(self, x):
        x = nn.Dense(x, 8, name="fc")
        x = nn.Dense(x, 8, name="fc")  # E: AOT311 shared
        return x


aot.target("net", Net, x=aot.f32[2, 8])
