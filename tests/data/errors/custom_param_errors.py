from aotflax import nn, aot


def not_an_init(shape):
    return shape


class Scale(nn.Module):
    def apply(self, x):
        s = self.param("scale", None, nn.initializers.ones)  # E: AOT352 shape=None
        t = self.param("scale", (x.shape[-1],), nn.initializers.normal)  # E: AOT314 without calling it
        u = self.param(3, (4,), nn.initializers.ones)  # E: AOT351 name must be a string
        return x


aot.target("scale", Scale, x=aot.f32[2, 8])
