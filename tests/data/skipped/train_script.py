"""A training script around a model: what no target reaches is skipped, one warning listing it."""
import os  # W: AOT950 11 top-level statements are not used by any target; skipped: imports of os, app, flags, tensorflow_datasets; assignment to FLAGS; calls at lines 11, 12; class CharacterTable; functions train_step, main; 'if' block at line 42
from absl import app
from absl import flags
import tensorflow_datasets as tfds
from aotflax import nn, aot
import jax
import jax.numpy as jnp

FLAGS = flags.FLAGS
flags.DEFINE_float("learning_rate", default=0.1, help="The learning rate.")
os.makedirs("/tmp/aotflax-should-never-exist", exist_ok=True)


class CharacterTable(object):
    def __init__(self, chars):
        self._chars = sorted(set(chars))


class CNN(nn.Module):
    def apply(self, x):
        x = nn.Conv(x, features=4, kernel_size=(3, 3))
        x = x.reshape((x.shape[0], -1))
        return nn.log_softmax(nn.Dense(x, 10))


@jax.jit
def train_step(optimizer, batch):
    with open("log.txt", "w") as log:
        log.write("step")
    while True:
        break
    return optimizer


def main(argv):
    del argv
    for epoch in range(10):
        train_step(None, tfds.load("mnist"))


if __name__ == "__main__":
    app.run(main)

aot.target("cnn", CNN, x=aot.f32[2, 8, 8, 1])
