"""What the names a model file imports mean at build time.

`from aotflax import nn, aot`, `import jax.numpy as jnp`, `import math`... bind
`Namespace` values whose attributes come from the operation table, the
dtypes, the initializers and a small set of static builtins.  This is the
whole vocabulary a model file can reach: anything else is a located error.
"""

from __future__ import annotations

import itertools
import math
import string
from typing import Any

from . import dtypes as dt
from .ops import REGISTRY, host
from .ops import initializers as inits
from .values import (
    CONV_DIMENSION_NUMBERS,
    DTYPE_KINDS,
    AbstractType,
    DType,
    DTypeKind,
    IndexMaker,
    ModuleRef,
    Namespace,
    Opaque,
    OpRef,
    OptaxFn,
    SpecDType,
    StaticBuiltin,
    StaticFunction,
    TypeHint,
)

#: Marker objects for DSL constructs that resolve handles itself.
MODULE_BASE = object()
MODULE_METHOD = object()
TARGET = object()
TRAIN_TARGET = object()
SEQUENTIAL = object()
MODEL_PARAM_TRAVERSAL = object()
MULTI_OPTIMIZER = object()
MESH = object()
SCAN = object()
#: `jax.lax.fori_loop` and `jax.lax.map`: scans (as jax lowers them).
FORI_LOOP = object()
LAX_MAP = object()
#: `jax.lax.cond`, `jax.lax.switch`, `jax.lax.while_loop` (`resolve/control.py`).
LAX_COND = object()
LAX_SWITCH = object()
WHILE_LOOP = object()
#: `jax.tree_util.tree_map` (and `tree_multimap`, `jax.tree.map`) and `tree_leaves`: walks
#: of a static structure, done at build time.
TREE_MAP = object()
TREE_LEAVES = object()
SCAN_IN_DIM = object()
ATTENTION_CACHE = object()
#: `@nn.module`: a function that is a module's apply.
MODULE_FN = object()
VMAP = object()
#: `jax.checkpoint` and its older name `jax.remat`.
CHECKPOINT = object()
REMAT = object()
CUSTOM_JVP = object()
CUSTOM_VJP = object()
#: `jax.jvp(fun, primals, tangents)` (the rules of custom_jvp functions compute with it).
JVP = object()

_DTYPE_NAMES = ("bool_", "uint8", "uint16", "uint32", "uint64", "int8", "int16", "int32",
                "int64", "bfloat16", "float16", "float32", "float64", "complex64", "complex128")


def _dtypes() -> dict[str, Any]:
    out: dict[str, Any] = {n: DType("bool" if n == "bool_" else n) for n in _DTYPE_NAMES}
    out["bool"] = DType("bool")
    out["float_"] = DType("float32")
    out["int_"] = DType("int32")
    return out


def _numpy() -> Namespace:
    """`numpy` (as `np` or `onp`): numpy functions on the host (`ops/host.py`), numpy's
    scalar types and constants."""
    members: dict[str, Any] = _ops("np", "np")
    members.update({n: DType("bool" if n == "bool_" else n, host=True)
                    for n in _DTYPE_NAMES if n != "bfloat16"})
    # `np.bool`: numpy 1.x (what flax.nn code was written against) made it Python's `bool`,
    # numpy 1.24 removed it and numpy 2 brought it back as `np.bool_`.  As a dtype all three
    # mean bool; called, it gives a bool scalar (True/False), which meets arrays the same.
    members.update(
        bool=DType("bool", host=True), int_=DType("int64", host=True),
        intp=DType("int64", host=True), double=DType("float64", host=True),
        single=DType("float32", host=True), half=DType("float16", host=True),
        pi=math.pi, e=math.e, inf=math.inf, nan=math.nan, euler_gamma=0.5772156649015329,
        newaxis=None, ndarray=TypeHint("ndarray"), s_=IndexMaker("np.s_"),
        index_exp=IndexMaker("np.index_exp"), finfo=StaticFunction("numpy.finfo"),
        iinfo=StaticFunction("numpy.iinfo"), issubdtype=StaticFunction("numpy.issubdtype"),
        **{n: DTypeKind(n) for n in DTYPE_KINDS})
    # numpy's legacy global random functions, drawn at build time (`ops.host.random_draw`)
    members["random"] = Namespace("numpy.random", {
        n: StaticFunction(f"numpy.random.{n}") for n in ("seed", *host.RANDOM_FUNCTIONS)})
    return Namespace("numpy", members)


def _ops(namespace: str, written: str) -> dict[str, Any]:
    """Table entries of a namespace: layers as module references, functions as op refs."""
    return {name: ModuleRef(e) if e.kind == "layer" else OpRef(e, f"{written}.{name}")
            for name, e in REGISTRY.members(namespace).items()}


def _initializers() -> Namespace:
    members: dict[str, Any] = {name: inits.factory(name) for name in inits.FACTORIES}
    members.update({name: inits.plain(name) for name in inits.PLAIN})
    return Namespace("nn.initializers", members)


def _spec_dtypes() -> dict[str, Any]:
    short = {"f32": "float32", "f16": "float16", "bf16": "bfloat16", "f64": "float64",
             "i8": "int8", "i16": "int16", "i32": "int32", "i64": "int64", "u8": "uint8",
             "u32": "uint32", "bool_": "bool", "c64": "complex64"}
    out = {k: SpecDType(v) for k, v in short.items()}
    out["key"] = SpecDType("key")  # a typed random key input: `z_rng=aot.key` (or aot.key[8])
    return out


#: optax functions a model file may name (optimizers, wrappers, schedules).
OPTAX_FUNCTIONS = (
    "adam", "adamw", "sgd", "rmsprop", "adagrad", "adafactor", "lamb", "lars", "lion", "nadam",
    "radam", "adabelief", "adadelta", "adamax", "novograd", "fromage", "yogi", "sm3", "noisy_sgd",
    "chain", "clip", "clip_by_global_norm", "add_decayed_weights", "scale", "scale_by_adam",
    "scale_by_schedule", "set_to_zero", "identity", "trace", "ema", "zero_nans",
    "constant_schedule", "linear_schedule", "cosine_decay_schedule", "exponential_decay",
    "warmup_cosine_decay_schedule", "piecewise_constant_schedule", "join_schedules",
    "polynomial_schedule", "cosine_onecycle_schedule",
)


def _static(fns: dict[str, Any]) -> dict[str, Any]:
    return {k: StaticBuiltin(k, v) if callable(v) else v for k, v in fns.items()}


MATH = _static({
    "sqrt": math.sqrt, "prod": math.prod, "ceil": math.ceil, "floor": math.floor, "log": math.log,
    "log2": math.log2, "exp": math.exp, "gcd": math.gcd, "isqrt": math.isqrt, "pow": math.pow,
    "pi": math.pi, "e": math.e, "inf": math.inf, "cos": math.cos, "sin": math.sin,
    "tanh": math.tanh, "log10": math.log10, "fabs": math.fabs, "erf": math.erf,
})

#: Python builtins a model may call (all evaluated statically).
BUILTINS = _static({
    "len": len, "range": range, "enumerate": enumerate, "zip": zip, "min": min, "max": max,
    "abs": abs, "int": int, "float": float, "bool": bool, "str": str, "tuple": tuple,
    "list": list, "dict": dict, "sum": sum, "sorted": sorted, "reversed": reversed, "any": any,
    "all": all, "round": round, "divmod": divmod, "isinstance": isinstance, "repr": repr,
    "slice": slice, "map": map, "filter": filter,
    # `x[Ellipsis, None]`: Google's exported code spells `...` this way
    "Ellipsis": Ellipsis,
    "ValueError": ValueError, "TypeError": TypeError, "AssertionError": AssertionError,
    "NotImplementedError": NotImplementedError,
})
# iterators are values of the interpreter (`values.StaticIterator`), never Python's own
BUILTINS.update(iter=StaticFunction("builtins.iter"), next=StaticFunction("builtins.next"))
# `print(x.shape)` ran once while JAX traced, never in the program: dropped, like logging
BUILTINS["print"] = StaticFunction("logging.print")
# `getattr(nn, config.activation)`: an attribute named by a static string, looked up as
# `nn.<name>` would be (dunders refused as they are when written out)
BUILTINS["getattr"] = StaticFunction("builtins.getattr")
BUILTINS["hasattr"] = StaticFunction("builtins.hasattr")
# `for arg in locals().items(): setattr(self, *arg)` (configs of Google's EfficientNet): the
# current function's local names as a dict, and `obj.name = value` by a static name
BUILTINS["locals"] = StaticFunction("builtins.locals")
BUILTINS["setattr"] = StaticFunction("builtins.setattr")


def namespace_for(module: str, member: str | None) -> Any:
    """The value bound by `import module` / `from module import member`, or None.

    `module` may be dotted (`jax.numpy`, `aotflax.nn`); `from m import x` also finds a
    submodule `m.x`, as Python does.
    """
    ns = _MODULES.get(module)
    if ns is None and "." in module:  # a submodule reached through its parent
        head, _, rest = module.partition(".")
        ns = _MODULES.get(head)
        for part in rest.split("."):
            ns = ns.members.get(part) if isinstance(ns, Namespace) else None
    if member is None:
        return ns
    if isinstance(ns, Namespace):
        return ns.members.get(member)
    return None


def nn_namespace() -> Namespace:
    members: dict[str, Any] = _ops("nn", "nn")
    members.update(Module=MODULE_BASE, module_method=MODULE_METHOD, initializers=_initializers(),
                   Sequential=SEQUENTIAL, attention=_attention(members), module=MODULE_FN,
                   stochastic=_stochastic(members))
    members.update(_submodules(members))
    members.update(_OUTSIDE_NN)
    return Namespace("nn", members)


#: flax.nn's names that belong to the program running a model, not to the model: where a
#: target reaches one, the error says why (`Opaque`).
_OUTSIDE_NN = {
    "is_stochastic": Opaque(
        "nn.is_stochastic", "whether a model runs inside nn.stochastic(rng) is up to its "
        "caller, and a target fixes it when declared: give the module a deterministic= (or "
        "train=) hyperparameter and declare a target for each"),
    "stateful": Opaque(
        "nn.stateful", "a target's apply takes the state as an argument and returns the new "
        "state, as a call inside `with nn.stateful(state)` did"),
    "Model": Opaque("nn.Model", "it belongs to training code: a target's init and apply "
                    "take and return the parameters themselves"),
    "Collection": Opaque("nn.Collection", "it belongs to training code: a target's init "
                         "and apply take and return the state themselves"),
    "jit": Opaque("nn.jit", "a target is compiled whole; call the module directly"),
}


#: What flax.nn's own modules defined (or re-exported), each reachable as `nn.linear.Dense` or
#: `from flax.nn.linear import Dense` as well as `nn.Dense`.
_SUBMODULES = {
    "linear": ("Dense", "DenseGeneral", "Conv", "ConvTranspose", "Embed"),
    "normalization": ("BatchNorm", "LayerNorm", "GroupNorm"),
    "pooling": ("max_pool", "avg_pool"),
    "recurrent": ("LSTMCell", "GRUCell", "ConvLSTM"),
    "activation": ("celu", "elu", "gelu", "glu", "leaky_relu", "log_sigmoid", "log_softmax",
                   "relu", "sigmoid", "soft_sign", "softmax", "softplus", "swish", "silu",
                   "tanh"),
}


def _submodules(nn_members: dict[str, Any]) -> dict[str, Namespace]:
    """`flax.nn.linear`, `.normalization`, `.pooling`, `.recurrent`, `.activation`."""
    out = {}
    for name, members in _SUBMODULES.items():
        out[name] = Namespace(f"nn.{name}", {n: nn_members[n] for n in members})
    # linear.py's default for Dense's kernel_init; activation.py re-exported jax.nn.normalize,
    # which is `standardize` under its later name
    out["linear"].members["default_kernel_init"] = inits.make("lecun_normal", [], {})
    # a private helper of linear.py that model files' own convolutions called
    out["linear"].members["_conv_dimension_numbers"] = StaticFunction(
        "flax.nn.linear._conv_dimension_numbers")
    # a private helper of normalization.py that model files' own normalizations called
    out["normalization"].members["_absolute_dims"] = StaticFunction(
        "flax.nn.normalization._absolute_dims")
    # base.py defined the module machinery (`class M(nn.base.Module)`)
    out["base"] = Namespace("nn.base", {"Module": MODULE_BASE, "module": MODULE_FN,
                                        "module_method": MODULE_METHOD})
    out["activation"].members["normalize"] = nn_members["standardize"]
    return out


def _attention(nn_members: dict[str, Any]) -> Namespace:
    """`flax.nn.attention`: the attention layers and old flax.nn's decode `Cache`."""
    names = ("MultiHeadDotProductAttention", "SelfAttention", "dot_product_attention")
    members = {n: nn_members[n] for n in names if n in nn_members}
    members.update(_ops("nn.attention", "nn.attention"))  # old flax.nn's mask helpers
    members["Cache"] = ATTENTION_CACHE
    return Namespace("nn.attention", members)


def _stochastic(nn_members: dict[str, Any]) -> Namespace:
    """`flax.nn.stochastic`: where old flax.nn defined `make_rng` and `dropout`."""
    return Namespace("nn.stochastic", {n: nn_members[n] for n in ("make_rng", "dropout")})


def aot_namespace() -> Namespace:
    members: dict[str, Any] = {"target": TARGET, "train_target": TRAIN_TARGET,
                               "ModelParamTraversal": MODEL_PARAM_TRAVERSAL,
                               "MultiOptimizer": MULTI_OPTIMIZER, "mesh": MESH}
    members.update(_spec_dtypes())
    return Namespace("aot", members)


class _AnyName(dict):
    """Members of `typing`: every name is a type hint (annotations are never evaluated),
    except `NamedTuple`, a class the static language implements."""

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str)

    def __getitem__(self, name: str) -> Any:
        return StaticFunction("typing.NamedTuple") if name == "NamedTuple" else TypeHint(name)

    def get(self, name: str, default: Any = None) -> Any:
        return self[name]


def jax_utils_namespace() -> Namespace:
    """`flax.jax_utils` as model code uses it (scan over an axis)."""
    return Namespace("jax_utils", {"scan_in_dim": SCAN_IN_DIM})


def _jnp() -> Namespace:
    members = _ops("jnp", "jnp")
    members.update(_dtypes())
    members.update(pi=math.pi, e=math.e, inf=math.inf, nan=math.nan, newaxis=None)
    members["linalg"] = Namespace("jnp.linalg", _ops("jnp.linalg", "jnp.linalg"))
    members["fft"] = Namespace("jnp.fft", _ops("jnp.fft", "jnp.fft"))
    members.update(finfo=StaticFunction("numpy.finfo"), iinfo=StaticFunction("numpy.iinfo"),
                   issubdtype=StaticFunction("numpy.issubdtype"),
                   **{n: DTypeKind(n) for n in DTYPE_KINDS})
    return Namespace("jnp", members)


def _jax_nn() -> Namespace:
    members = _ops("jax.nn", "jax.nn")
    members["initializers"] = _initializers()
    # `jax.nn.normalize`, removed from JAX 0.4.33, was `standardize` under its old name
    members["normalize"] = members["standardize"]
    return Namespace("jax.nn", members)


def _ml_collections() -> Namespace:
    """`ml_collections` as model configs use it (never imported: implemented statically)."""
    members = {"ConfigDict": StaticFunction("ml_collections.ConfigDict"),
               "FrozenConfigDict": StaticFunction("ml_collections.FrozenConfigDict")}
    # `from ml_collections.config_dict import config_dict`: the module defining
    # ConfigDict, as init2winit imports it
    inner = Namespace("ml_collections.config_dict.config_dict", dict(members))
    package = Namespace("ml_collections.config_dict", {**members, "config_dict": inner})
    return Namespace("ml_collections", {**members, "config_dict": package})


def _build_modules() -> dict[str, Any]:
    jnp = _jnp()
    # `lax.Precision.HIGHEST` is the name jax also takes for it: precision="highest"
    precision = Namespace("jax.lax.Precision", {"DEFAULT": "default", "HIGH": "high",
                                                "HIGHEST": "highest"})
    lax = Namespace("jax.lax", {**_ops("lax", "jax.lax"), "scan": SCAN, "fori_loop": FORI_LOOP,
                                "map": LAX_MAP, "cond": LAX_COND, "switch": LAX_SWITCH,
                                "while_loop": WHILE_LOOP, "Precision": precision,
                                "tie_in": StaticFunction("jax.lax.tie_in"),
                                "ConvDimensionNumbers": CONV_DIMENSION_NUMBERS,
                                "conv_dimension_numbers": StaticFunction(
                                    "jax.lax.conv_dimension_numbers")})
    # `jnp.lax.square(x)` (Hugging Face's first Flax BERT): jax.numpy of 2020 exposed the
    # lax module it imported
    jnp.members["lax"] = lax
    jax_nn = _jax_nn()
    random = Namespace("jax.random", _ops("jax.random", "jax.random"))
    ops = Namespace("jax.ops", {**_ops("jax.ops", "jax.ops"),
                                "index": IndexMaker("jax.ops.index")})
    special = Namespace("jax.scipy.special", _ops("jax.scipy.special", "jax.scipy.special"))
    norm = Namespace("jax.scipy.stats.norm", _ops("jax.scipy.stats.norm", "jax.scipy.stats.norm"))
    stats = Namespace("jax.scipy.stats", {"norm": norm})
    linalg = Namespace("jax.scipy.linalg", _ops("jax.scipy.linalg", "jax.scipy.linalg"))
    scipy = Namespace("jax.scipy", {"special": special, "stats": stats, "linalg": linalg})
    image = Namespace("jax.image", _ops("jax.image", "jax.image"))
    trees = {"tree_map": TREE_MAP, "tree_multimap": TREE_MAP, "tree_leaves": TREE_LEAVES}
    tree_util = Namespace("jax.tree_util", dict(trees))
    tree = Namespace("jax.tree", {"map": TREE_MAP, "leaves": TREE_LEAVES})
    jax = Namespace("jax", {"numpy": jnp, "lax": lax, "nn": jax_nn, "random": random,
                            "ops": ops, "scipy": scipy, "image": image,
                            "tree_util": tree_util, "tree": tree, **trees, "jit": StaticFunction("jax.jit"),
                            "vmap": VMAP, "custom_jvp": CUSTOM_JVP, "custom_vjp": CUSTOM_VJP,
                            "jvp": JVP,
                            "checkpoint": CHECKPOINT, "remat": REMAT})
    np = _numpy()
    nn, aot = nn_namespace(), aot_namespace()
    # Flax 0.3 to 0.4 kept flax.nn as flax.deprecated.nn: code of that time imports it so
    deprecated = Namespace("aotflax.deprecated", {"nn": nn})
    # flax.struct's frozen dataclasses (configs); a field's `pytree_node=` means nothing to
    # a static value
    struct = Namespace("aotflax.struct", {
        "dataclass": StaticFunction("dataclasses.dataclass(frozen)"),
        "field": StaticFunction("flax.struct.field")})
    aotflax = Namespace("aotflax", {"nn": nn, "aot": aot, "jax_utils": jax_utils_namespace(),
                                    "deprecated": deprecated, "struct": struct})
    return {
        "aotflax": aotflax, "aotflax.nn": nn, "aotflax.aot": aot, "aotflax.struct": struct,
        "aotflax.deprecated": deprecated, "aotflax.deprecated.nn": nn,
        "jax": jax, "jax.numpy": jnp, "jax.lax": lax, "jax.nn": jax_nn, "numpy": np,
        "math": Namespace("math", MATH), "typing": Namespace("typing", _AnyName()),
        "functools": Namespace("functools", {n: StaticFunction(f"functools.{n}")
                                             for n in ("partial", "reduce")}),
        "__future__": Namespace("__future__", {}),
        # `string`'s constants (einsum subscripts built from `string.ascii_lowercase`)
        "string": Namespace("string", {n: getattr(string, n) for n in (
            "ascii_letters", "ascii_lowercase", "ascii_uppercase", "digits", "hexdigits",
            "octdigits", "punctuation", "whitespace", "printable")}),
        "dataclasses": Namespace("dataclasses", {
            n: StaticFunction(f"dataclasses.{n}")
            for n in ("dataclass", "field", "replace", "asdict", "astuple", "is_dataclass")}),
        # attrs' classic API (`@attr.s`, `attr.ib()`): classes of static fields, as
        # dataclasses (resolve/records.py)
        "attr": _attrs("attr"), "attrs": _attrs("attrs"),
        "collections": Namespace("collections", {
            "namedtuple": StaticFunction("collections.namedtuple"),
            "OrderedDict": BUILTINS["dict"],
            "abc": Namespace("collections.abc", {n: AbstractType(n) for n in ABSTRACT_TYPES})}),
        "ml_collections": _ml_collections(),
        "jax.random": random, "jax.ops": ops, "jax.scipy": scipy, "jax.scipy.special": special,
        "jax.scipy.linalg": linalg,
        "jax.scipy.stats": stats, "jax.scipy.stats.norm": norm, "jax.image": image,
        "jax.tree_util": tree_util, "jax.tree": tree,
        "optax": Namespace("optax", {n: OptaxFn(n) for n in OPTAX_FUNCTIONS}),
    }




def _attrs(module: str) -> Namespace:
    """`attr` (and `attrs`, its later name): the decorator and the field function, under
    each of their names."""
    members = {n: StaticFunction("attr.s") for n in ("s", "attrs")}
    members.update({n: StaticFunction("attr.ib") for n in ("ib", "attrib")})
    return Namespace(module, members)


#: The `collections.abc` classes `isinstance` takes.
ABSTRACT_TYPES = ("Iterable", "Sequence", "Mapping", "Sized", "Container", "Collection",
                  "Reversible", "MutableSequence", "MutableMapping", "Set")


#: Logging functions of `logging` and `absl.logging` (not `fatal`, which ends the program).
LOGGING_FUNCTIONS = ("debug", "info", "warning", "warn", "error", "exception", "critical",
                     "log", "vlog", "log_every_n", "log_every_n_seconds", "log_first_n",
                     "log_if")


def _logging() -> Namespace:
    """`logging` / `absl.logging`: a call is evaluated and dropped.  In JAX it ran once, while
    tracing, never in the compiled program, which is all the generated code is."""
    return Namespace("logging", {n: StaticFunction(f"logging.{n}") for n in LOGGING_FUNCTIONS})


_MODULES = _build_modules()
_MODULES["logging"] = _logging()
#: The functions of Python's `operator` module, by the expression each one is.
OPERATOR_BINARY = {"add": "+", "sub": "-", "mul": "*", "truediv": "/", "floordiv": "//",
                   "mod": "%", "pow": "**", "matmul": "@", "and_": "&", "or_": "|", "xor": "^",
                   "lshift": "<<", "rshift": ">>"}
OPERATOR_COMPARE = {"eq": "==", "ne": "!=", "lt": "<", "le": "<=", "gt": ">", "ge": ">=",
                    "contains": "in", "is_": "is", "is_not": "is not"}
OPERATOR_UNARY = {"neg": "-", "pos": "+", "invert": "~", "inv": "~", "not_": "not"}
#: `concat` (sequences only) and the in-place forms (`iadd`, `iconcat`: jaxnerf's
#: `reduce(operator.iconcat, lists, [])`), each the binary expression: a new value, as
#: `+=` gives in a model file (static lists are never updated in place).
OPERATOR_SEQUENCE = ("concat", "iconcat")
OPERATOR_INPLACE = {"i" + n: op for n, op in OPERATOR_BINARY.items()}
# `functools.reduce(operator.mul, shape, 1)`: each is the expression it stands for
# (resolve/records.py)
_MODULES["operator"] = Namespace("operator", {
    n: StaticFunction(f"operator.{n}")
    for n in (*OPERATOR_BINARY, *OPERATOR_COMPARE, *OPERATOR_UNARY, *OPERATOR_INPLACE,
              *OPERATOR_SEQUENCE, "getitem", "truth")})
#: `itertools`' finite functions, evaluated at build time like the builtins (each result
#: is bounded before it is made whole: resolve's `_call_static`).
ITERTOOLS = ("product", "chain", "combinations", "combinations_with_replacement",
             "permutations", "repeat", "zip_longest", "islice", "accumulate", "starmap")
_MODULES["itertools"] = Namespace("itertools", {
    n: StaticBuiltin(f"itertools.{n}", getattr(itertools, n)) for n in ITERTOOLS if n != "starmap"})
_MODULES["absl"] = Namespace("absl", {"logging": _MODULES["logging"]})
_MODULES["absl.logging"] = _MODULES["logging"]


def _gin() -> Namespace:
    """`gin`: its decorators register a function or class for gin bindings, which the
    program that runs the model reads from its config files; the build never reads them,
    so a decorated definition is the definition (a warning says so where a target
    reaches it: `records.gin_warning`)."""
    return Namespace("gin", {
        "configurable": StaticFunction("gin.configurable"),
        "register": StaticFunction("gin.configurable"),
        "external_configurable": StaticFunction("gin.external_configurable"),
        "REQUIRED": Opaque("gin.REQUIRED", "its value is bound by a gin config file, which "
                           "the build never reads"),
    })


_MODULES["gin"] = _gin()

#: `abc`: a plain class may derive from `abc.ABC` or name `metaclass=abc.ABCMeta`, and mark
#: methods `@abc.abstractmethod`; the build checks none of it (a subclass that forgets a
#: method fails where the method is called, with the base's body).
ABC = StaticFunction("abc.ABC")
ABC_META = StaticFunction("abc.ABCMeta")
_MODULES["abc"] = Namespace("abc", {"ABC": ABC, "ABCMeta": ABC_META,
                                    "abstractmethod": StaticFunction("abc.abstractmethod")})

#: `enum`: classes of the model file deriving from `enum.Enum` / `enum.IntEnum` are enums
#: of static members (resolve/enums.py); `enum.auto()` numbers them, `@enum.unique`
#: refuses aliases.
ENUM = StaticFunction("enum.Enum")
INT_ENUM = StaticFunction("enum.IntEnum")
ENUM_AUTO = StaticFunction("enum.auto")
ENUM_UNIQUE = StaticFunction("enum.unique")
#: chex's shape assertions (resolve/chex.py), decided at build time.
_MODULES["chex"] = Namespace("chex", {n: StaticFunction(f"chex.{n}") for n in (
    "assert_shape", "assert_rank", "assert_equal_shape", "assert_equal_rank",
    "assert_axis_dimension", "assert_type")})
#: einops' rearrange, reduce and repeat (resolve/rearrange.py), emitted as the reshapes,
#: transposes, reductions and broadcasts they are.
_MODULES["einops"] = Namespace("einops", {n: StaticFunction(f"einops.{n}")
                                          for n in ("rearrange", "reduce", "repeat")})
_MODULES["enum"] = Namespace("enum", {"Enum": ENUM, "IntEnum": INT_ENUM, "auto": ENUM_AUTO,
                                      "unique": ENUM_UNIQUE})

__all__ = ["namespace_for", "ABC", "ABC_META", "BUILTINS", "MODULE_BASE", "MODULE_METHOD", "TARGET",
           "TRAIN_TARGET", "dt"]
