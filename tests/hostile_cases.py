"""Hostile model files, as data: shared by tests/test_hostile_input.py and bench/fuzz.py.

`REFUSED` maps a case name to (model source, the error code it must give, words
its message must contain); `BUILDS` maps a case name to a model whose hostile
strings must stay data in a build that succeeds.  Sources go after `HEADER`.
Each string that would run if it escaped into generated code calls `RUN`, which
leaves a file named `MARKER` in the working directory.
"""

from __future__ import annotations

from generated_ast import MARKER

HEADER = "from aotflax import nn, aot\nimport jax\nimport jax.numpy as jnp\nimport optax\n\n"
#: Runs in generated code only if a string escaped: it leaves a file behind.
RUN = f'__import__("pathlib").Path("{MARKER}").touch()'

DENSE = """
class M(nn.Module):
    def apply(self, x):
        return nn.Dense(x, 4)
"""


DEEP_SUM = "X = " + " + ".join(["1"] * 100000) + "\n"


def in_apply(code: str, imports: str = "") -> str:
    """`code` as the body of a module's apply, reached by a target (module-level code no
    target uses is skipped, never resolved)."""
    body = "".join(f"        {line}\n" for line in code.strip("\n").split("\n"))
    return (f"{imports}\nclass M(nn.Module):\n    def apply(self, x):\n{body}        return x\n"
            "\naot.target('t', M, x=aot.f32[2, 3])\n")


REFUSED = {
    # strings that would have become code
    "optax_keyword_code": (DENSE + f"""
def loss(y):
    return jnp.mean(y)
aot.train_target("t", M, loss=loss, x=aot.f32[2, 3], optimizer=optax.sgd(
    **{{'learning_rate={RUN}, momentum': None}}))
""", "AOT347", "is not an identifier"),
    "mesh_axis_code": (DENSE + f"""
aot.target("t", M, x=aot.f32[2, 3], devices=aot.mesh(**{{'d": {RUN} or 1, "e': 1}}))
""", "AOT347", "is not an identifier"),
    "nul_in_keyword": (DENSE.replace("nn.Dense(x, 4)", "nn.Dense(x, 4, **{'a\\x00b': 1})")
                       + 'aot.target("t", M, x=aot.f32[2, 3])\n', "AOT347", "not an identifier"),
    "symbolic_dimension_code": (DENSE + f"aot.target('t', M, x=aot.f32['b = {RUN}', 3])\n",
                                "AOT410", "ASCII identifier"),
    "full_width_symbolic_dimension": (DENSE + 'aot.target("t", M, x=aot.f32["ｊｎｐ", 3])\n',
                                      "AOT410", "ASCII identifier"),
    # names that gave internal errors
    "collection_jnp": ("""
class M(nn.Module):
    def apply(self, x):
        return x + self.state("v", (3,), collection="jnp").value
aot.target("t", M, x=aot.f32[2, 3])
""", "AOT356", "'jnp' is taken"),
    "collection_keyword": ("""
class M(nn.Module):
    def apply(self, x):
        return x + self.state("v", (3,), collection="class").value
aot.target("t", M, x=aot.f32[2, 3])
""", "AOT356", "keyword"),
    "collection_full_width": ("""
class M(nn.Module):
    def apply(self, x):
        return x + self.state("v", (3,), collection="＿runtime").value
aot.target("t", M, x=aot.f32[2, 3])
""", "AOT356", "not ASCII"),
    "target_full_width_jnp": (DENSE + 'aot.target("ｊｎｐ", M, x=aot.f32[2, 3])\n', "AOT406",
                              "reads it as 'jnp'"),
    "target_full_width_runtime": (DENSE + 'aot.target("＿runtime", M, x=aot.f32[2, 3])\n',
                                  "AOT406", "not ASCII"),
    "target_like_a_helper": (DENSE + 'aot.target("b", M, x=aot.f32[2, 3])\n'
                             'aot.target("_b_init", M, x=aot.f32[2, 3])\n', "AOT406",
                             "call it b_init_target"),
    "target_name_of_a_million": (DENSE + f'aot.target("{"a" * 1_000_000}", M, '
                                 'x=aot.f32[2, 3])\n', "AOT406", "longer than 100"),
    "target_name_code": (DENSE + f"aot.target('t = 1; {RUN}', M, x=aot.f32[2, 3])\n",
                         "AOT406", "not a Python identifier"),
    # nesting deeper than CPython's parser, its compiler or the parse stage recurse (a
    # 100,000-term 'and' chain is flat: tests/test_hostile_input.py builds one)
    "sum_of_100000_terms": (DEEP_SUM, "AOT100", "nested too deeply"),
    "calls_100000_deep": ("X = f" + "()" * 100000 + "\n", "AOT100", "nested too deeply"),
    # static values that took gigabytes or minutes
    "string_doubling": (in_apply("s = 'ab'\nfor i in range(64):\n    s = s + s"), "AOT330",
                        "str of 2,097,152 characters"),
    "augmented_doubling": (in_apply("s = ['ab']\nfor i in range(64):\n    s += s"),
                           "AOT330", "list of 2,097,152 items"),
    "int_times_int": (in_apply("a = 2 ** 32000\nb = a * a * a"), "AOT330",
                      "int of 96,001 bits"),
    "huge_int_in_an_array": (in_apply("a = 2 ** 30000\ny = x + a * a"), "AOT202",
                             "does not fit int32"),
    "huge_int_in_a_message": (in_apply("a = 2 ** 30000\nraise ValueError(a * a)"), "AOT300",
                              "<an int of 60,001 bits>"),
    "int_squaring": (in_apply("a = 3\nfor i in range(40):\n    a = a * a"), "AOT330", "bits"),
    "str_replace_growth": (in_apply("s = 'a' * 1000000\ns = s.replace('a', 'aaaaaaaaaa')"),
                           "AOT330", "10,000,000 characters"),
    "format_width_argument": (in_apply('s = "{:{}}".format("", 4500000000)'), "AOT341",
                              "inside a format spec"),
    "round_huge_digits": (in_apply("r = round(1, -10**8)"), "AOT330", "round(..., -100000000)"),
    "comprehension_of_1e10": (in_apply("y = [[0 for i in range(100000)] for j in "
                                       "range(100000)]"), "AOT330", "build-time steps"),
    "comprehension_of_big_lists": (in_apply("y = [[0] * 1000000 for i in range(100000)]"),
                                   "AOT330", "build-time steps"),
    "sum_of_lists": (in_apply("y = sum([[0]] * 100000, [])"), "AOT330", "build-time steps"),
    "compare_in_a_loop": (in_apply("a = [0] * 1000000\nb = [0] * 1000000\n"
                                   "for i in range(100000):\n    c = a == b"), "AOT330",
                          "would read more than"),
    "repr_of_shared_strings": (in_apply("s = 'a' * 100000\nr = repr([s] * 1000)"), "AOT330",
                               "repr() would read"),
    "fstring_of_shared_strings": (in_apply("s = 'a' * 100000\nr = f'{[s] * 1000}'"),
                                  "AOT330", "formatting this value"),
    "percent_of_shared_strings": (in_apply("s = 'a' * 100000\nr = '%s' % ([s] * 1000,)"),
                                  "AOT330", "formatting these values"),
    "join_of_shared_strings": (in_apply("s = 'a' * 100000\nr = ''.join([s] * 1000)"),
                               "AOT330", "str.join() would build"),
    "extend_doubling": (in_apply("a = [0]\nfor i in range(26):\n    a.extend(a)"), "AOT330",
                        "list.extend() would make a list of 2,097,152 items"),
    "slice_assignment_doubling": (in_apply("a = [0]\nfor i in range(26):\n    a[:0] = a"),
                                  "AOT330", "would make a list of 2,097,152 items"),
    "product_of_huge_ints": (in_apply("y = math.prod([2 ** 30000] * 8)\n", "import math\n"),
                             "AOT330",
                             "math.prod()"),
    "emitted_ops_without_end": ("""
class M(nn.Module):
    def apply(self, x):
        for i in range(100):
            for j in range(1000):
                x = x + 1.0
        return x
aot.target("t", M, x=aot.f32[2, 3])
""", "AOT330", "build-time steps"),
}


PAYLOADS = [f'"""; {RUN}; """', f"'''; {RUN}; '''", f'" + {RUN} + "', f"\\\"; {RUN} #",
            f"x\n{RUN}\n", f"\\N{{BULLET}}{MARKER}\\"]

BUILDS = {
    # hyperparameter strings reach docstrings of the module, target and loss functions
    "hyperparameters_in_docstrings": "".join(f"""
class M{i}(nn.Module):
    def apply(self, x, s="a"):
        return nn.Dense(x, 4)
def loss{i}(y, label={p!r}):
    return jnp.mean(y)
aot.train_target("t{i}", M{i}.partial(s={p!r}), loss=loss{i}, optimizer=optax.sgd(0.1),
                 x=aot.f32[2, 3])
""" for i, p in enumerate(PAYLOADS)),
    # names that shadowed what generated code reads: renamed, never rebound
    "names_generated_code_uses": """
class ｊａｘ(nn.Module):
    def apply(self, x):
        return nn.Dense(x, 4)
class _runtime(nn.Module):
    def apply(self, params, jnp, TARGETS, outputs):
        return ｊａｘ(params + jnp + TARGETS + outputs)
def loss(y, grad_fn):
    return y.mean() + grad_fn.mean()
aot.train_target("t", _runtime, loss=loss, optimizer=optax.sgd(0.1), params=aot.f32[2, 3],
                 jnp=aot.f32[2, 3], TARGETS=aot.f32[2, 3], outputs=aot.f32[2, 3],
                 grad_fn=aot.f32[2, 4])
""",
    # transforms emitted as decorated and nested functions, under names generated code uses
    "transforms_named_like_locals": """
@jax.custom_jvp
def ｌｏｓｓ(x):
    return jnp.log(x)

@ｌｏｓｓ.defjvp
def grads(primals, tangents):
    x, = primals
    t, = tangents
    return ｌｏｓｓ(x), t / x

class M(nn.Module):
    def apply(self, x):
        y = jax.vmap(lambda outputs: outputs * 2.0, in_axes=(0,))(x)
        return jnp.sum(ｌｏｓｓ(y))

aot.target("t", M, x=aot.f32[2, 3])
""",
    "state_written_inf": """
class M(nn.Module):
    def apply(self, x):
        v = self.state("v", (3,))
        v.value = float("inf")
        w = self.state("w", (3,), collection="cache")
        w.value = float("nan")
        return x
aot.target("t", M, x=aot.f32[2, 3])
""",
}




def sources() -> dict[str, str]:
    """Every hostile model file, whole (`HEADER` included), by case name."""
    return {**{name: HEADER + source for name, (source, _, _) in REFUSED.items()},
            **{name: HEADER + source for name, source in BUILDS.items()}}
