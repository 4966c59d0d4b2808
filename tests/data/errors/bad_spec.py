from aotflax import nn, aot


class Net(nn.Module):
    def apply(self, x):
        return nn.Dense(x, 4)


aot.target("a", Net, x=aot.f32[2, -8])  # E: AOT410 got -8
aot.target("b", Net, x=aot.f32[2, 8.5])  # E: AOT410 got 8.5
aot.target("c", Net, x=aot.f33[2, 8])  # E: AOT346 aot.f33
aot.target("d e", Net, x=aot.f32[2, 8])  # E: AOT406 not a Python identifier
aot.target("f", Net, x=aot.f32[2, 8], platforms=("gpu",))  # E: AOT408 gpu
aot.target("as", Net, x=aot.f32[2, 8])  # E: AOT406 is a Python keyword
aot.target("Net", Net, x=aot.f32[2, 8])  # E: AOT406 taken
aot.target("g", Net, x=aot.f32[2, 8], devices=0)  # E: AOT400 devices= must be a positive int
