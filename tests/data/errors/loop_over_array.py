from aotflax import nn, aot


class Net(nn.Module):
    def apply(self, x):
        for row in x:  # E: AOT334 cannot loop over an array
            x = nn.Dense(row, 4)
        a, b = x  # E: AOT333 cannot unpack an array
        return x


aot.target("net", Net, x=aot.f32[2, 8])
