from aotflax import nn, aot


class Net(nn.Module):
    def apply(self, x):
        for row in x:  # E: AOT334 cannot loop over an array
            x = nn.Dense(row, 4)
        a, b, c = x  # E: AOT333 cannot unpack f32[2, 8] into 3 names
        return x


aot.target("net", Net, x=aot.f32[2, 8])
