from aotflax import nn, aot

SIZES = (16, 8)


class Net(nn.Module):
    def apply(self, x):
        a, b, c = SIZES  # E: AOT333 expected 3 values to unpack, got 2
        w = SIZES[5]  # E: AOT345 tuple index out of range
        y = x[:, "a"]  # E: AOT211
        z = x[:, : x.shape[0] * x]  # E: AOT343 slice bounds must be static ints
        return nn.Dense(x, 4)


aot.target("net", Net, x=aot.f32[2, 8])
