import jax
import numpy as np
from helpers import build


def test_mlp_builds_and_runs():
    m = build("""
    class MLP(nn.Module):
        def apply(self, x, hidden=(16,)):
            for h in hidden:
                x = nn.relu(nn.Dense(x, h))
            return nn.Dense(x, 3)

    aot.target("t", MLP, x=aot.f32[2, 5])
    """)
    params, state = m.t.init(jax.random.key(0))
    assert params["Dense_0"]["kernel"].shape == (5, 16)
    y, new_state = m.t.apply(params, state, np.ones((2, 5), np.float32))
    assert y.shape == (2, 3) and new_state == {}
