"""The resolved program: what `resolve` produces and `emit` renders.

Resolution turns each target into straight-line SSA code: every array value is
a `Tensor` with a static shape and dtype, produced by exactly one `Op`.  Ops
refer to their template (an entry of the operation table) and carry their
template arguments as `Code`: fragments of Python text interleaved with the
tensors they read, so naming can be decided later, by `emit`, with liveness.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Union

from .diagnostics import Diagnostic, Span
from .dtypes import short_name


class Var:
    """A value of the emitted program that gets a variable name (identity = object)."""

    __slots__ = ()


# Vars are never assigned to once made; they are not frozen dataclasses, whose `__init__`
# sets each field through `object.__setattr__` (a front end makes thousands of them).


@dataclass(slots=True, eq=False)
class TreeVar(Var):
    """A non-array value bound to a variable, e.g. a submodule's new state subtree."""

    #: What it holds, for comments.
    description: str


@dataclass(slots=True, eq=False)
class Tensor(Var):
    """An array value known at build time only by its type (identity = object)."""

    #: Static shape.
    shape: tuple[int, ...]
    #: JAX dtype name ("float32", ...).
    dtype: str
    #: JAX weak type (Python-scalar-derived values).
    weak: bool = False
    #: The value, for an integer array made from static ints (`jnp.array((1, 1, d))`):
    #: an int or nested tuples of ints.  Such an array was concrete in the JAX that
    #: flax.nn code was written for, so it may stand where a static int is required.
    known: object = None

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def describe(self) -> str:
        """`f32[8, 10]`, the notation used in messages and comments."""
        return describe(self.shape, self.dtype)


def fresh_like(t: Tensor) -> Tensor:
    """A new value of the same type (and kind: a random key stays a key) as `t`."""
    return type(t)(t.shape, t.dtype, t.weak)


def fresh_row(t: Tensor) -> Tensor:
    """One row of `t` (`t[0]`), of the same kind (what a scan step sees of its `xs`)."""
    return type(t)(t.shape[1:], t.dtype, t.weak)


def describe(shape: tuple[int, ...], dtype: str) -> str:
    return f"{short_name(dtype)}[{', '.join(str(d) for d in shape)}]"


class Fragment:
    """A piece of `Code` that is neither text nor a variable (`sizes.SizeRef`): it names
    the variables it reads and renders itself once they have names."""

    __slots__ = ()

    def vars(self) -> list[Var]:  # pragma: no cover - interface
        raise NotImplementedError

    def render(self, names: dict) -> str:  # pragma: no cover - interface
        raise NotImplementedError


#: A part of generated code: text, a variable rendered as its name, or a `Fragment`.
Part = Union[str, Var, Fragment]


@dataclass(frozen=True, slots=True)
class Code:
    """Python code with holes for tensors; rendered once names are assigned."""

    parts: tuple[Part, ...]

    @staticmethod
    def of(*parts: "Part | Code") -> "Code":
        out: list[Part] = []
        for p in parts:
            out.extend(p.parts if isinstance(p, Code) else (p,))
        return Code(tuple(out))

    @staticmethod
    def join(sep: str, items: "list[Code]") -> "Code":
        out: list[Part] = []
        for i, item in enumerate(items):
            if i:
                out.append(sep)
            out.extend(item.parts)
        return Code(tuple(out))

    def vars(self) -> list[Var]:
        out: list[Var] = []
        for p in self.parts:
            if isinstance(p, Var):
                out.append(p)
            elif not isinstance(p, str):
                out.extend(p.vars())
        return out

    def render(self, names: dict) -> str:
        out = []
        for p in self.parts:
            if isinstance(p, str):
                out.append(p)
            elif isinstance(p, Var):
                out.append(names[id(p)])
            else:
                out.append(p.render(names))
        return "".join(out)


@dataclass(frozen=True, slots=True)
class Mix:
    """An op combines the positions along one axis of an input (`Flow`).

    Padding along such an axis can change the result, unless it is attention over keys
    that `keys` proves never sees the padded positions.
    """

    #: What the op does to the axis, in the user's words ("takes a mean over it").
    why: str
    #: Attention over keys: safe to pad when the padded keys are masked out.
    keys: "Keys | None" = None
    #: The op reads only the first position (`x[:, 0]`): always a real one, so padding is
    #: safe, but a split request's later parts would read another position.
    first: bool = False


@dataclass(frozen=True, slots=True)
class Keys:
    """How an attention op keeps queries from seeing keys past a request's length."""

    #: A causal mask: query i sees keys <= i, never a padded key after a real query.
    causal: bool = False
    #: Mask tensors and their key axis: padding is safe when one of them is false
    #: (zero) at every padded key, as a mask input padded with zeros is.
    masks: tuple[tuple["Tensor", int], ...] = ()


#: Where one input axis goes: an output axis (position i of the input reaches position i
#: of every output there, and nowhere else), None (no output depends on positions along
#: it) or a `Mix`.
Axis = Union[int, None, Mix]


@dataclass(frozen=True, slots=True)
class Flow:
    """How an op moves the axes of its inputs: the rule `aotflax/padding.py` checks.

    Recorded on each op by its operation-table entry (`ops/axes.py`).
    """

    #: Per input tensor, where each of its axes goes.
    inputs: tuple[tuple["Tensor", tuple[Axis, ...]], ...] = ()
    #: How zeros (a mask's padded positions) pass: "aligned": an output position is zero
    #: where an input position it is aligned with is (products, casts, layout); "causal":
    #: the output is a causal mask; "" otherwise.
    zeros: str = ""
    #: Random numbers drawn over the output's shape (they differ at another size).
    random: bool = False
    #: The op's code may name a symbolic size as a shape (reshape, zeros, arange).
    sizes: bool = False
    #: The output's values depend on positions (`arange`, `eye`, `tril`, a causal mask):
    #: padding keeps them, but a split request's later parts would start again at 0.
    positions: bool = False


@dataclass(frozen=True, slots=True)
class OpInfo:
    """What the model summary needs to know about an op (`aotflax summary`).

    Emission ignores it; `summary.py` walks the program with it: which module
    instance an op belongs to, what it costs, and which function a user-module
    call runs.
    """

    #: Operation-table entry that emitted it ("nn.Dense", "jnp.mean"); "" for resolve's own.
    entry: str = ""
    #: Floating-point operations of one execution (rules in `ops/flops.py`).
    flops: int = 0
    #: Module instance path relative to the emitting function's root; None: the function's
    #: own module (plain functions such as `nn.relu` belong to the module calling them).
    path: tuple[str, ...] | None = None
    #: Class name of that instance ("Dense", "DenseGeneral", "ResNetBlock").
    module: str = ""
    #: The function a user-module call runs (its ops belong to `path`).
    callee: "Function | None" = None
    #: How many times the op's nested functions run per execution (a scan's length).
    trips: int = 1
    #: Its nested functions are alternatives, one of which runs (`jax.lax.cond`'s
    #: branches): the costliest counts.
    branches: bool = False
    #: How it moves its inputs' axes (`ops/axes.py`), for the padding proof of buckets;
    #: recorded only while `ops.axes.record_flows()` is on (the proof's resolve).
    flow: Flow | None = None
    #: A module call whose instance's parameters arrive in a shared module's argument
    #: (not below the caller's `params`).
    shared: bool = False


@dataclass(slots=True)
class Op:
    """One emitted statement group: a template rendered with code arguments.

    Never changed once made (`dataclasses.replace` makes a changed copy), but not a
    frozen dataclass: a build makes one per statement, and a frozen dataclass's
    `__init__` pays `object.__setattr__` for each of its eleven fields.
    """

    #: Template name under templates/ (e.g. "ops/call.j2", "layers/dense.j2").
    template: str
    #: Template arguments: `Code` values (tensors become names) by name.
    args: tuple[tuple[str, Code], ...]
    #: Variables it defines, in order (named `out`/`outs` in the template).
    outputs: tuple[Var, ...]
    #: Names of scratch variables the template needs (given unique names).
    temps: tuple[str, ...]
    #: The DSL expression it came from.
    span: Span
    #: Default variable-name stem for outputs ("dense", "conv", ...).
    stem: str
    #: Functions defined just before this op, in order (the step of a `jax.lax.scan`,
    #: the branches of a `jax.lax.cond`).
    nested: "tuple[Function, ...]" = ()
    #: For the model summary: instance, FLOPs, callee (not rendered).
    info: OpInfo | None = None
    #: Only in a function's init variant (data-dependent initialization, see `Function`).
    init_only: bool = False
    #: Arguments in the init variant when they differ (a call of a child's init variant).
    init_args: "tuple[tuple[str, Code], ...] | None" = None
    #: Types of `temps`, where the rule knows them: per temp, one per line assigning it
    #: (the comment of that line shows it, like an output's).
    temp_types: "tuple[tuple[Tensor, ...], ...]" = ()

    def inputs(self) -> list[Var]:
        """Variables the op reads (an argument named "target" is what it assigns)."""
        out: list[Var] = []
        for name, code in self.args:
            if name != "target":
                out.extend(code.vars())
        return out


@dataclass(slots=True)
class ParamDecl:
    """A parameter (or state variable) of the Linen-style variable tree.

    Never changed once made; not frozen for the same reason as `Op` (one per parameter
    per enclosing function: thousands in a ResNet file).
    """

    #: Path below the collection root, e.g. ("block_0", "Conv_0", "kernel").
    path: tuple[str, ...]
    shape: tuple[int, ...]
    dtype: str
    #: Code of the initializer callable `(key, shape, dtype) -> array`.
    init: str
    #: Where it was declared.
    span: Span
    #: Initialized from data (`self.param(name, None, init)`): by the init variant of the
    #: function declaring it, in a forward pass on example inputs; `init` is unused.
    from_data: bool = False


@dataclass(frozen=True, slots=True)
class Function:
    """One emitted function: a specialization of a user module method."""

    #: Emitted function name (unique in the file).
    name: str
    #: `ClassName.method(hparams)` description for the docstring.
    doc: str
    #: Whether it takes `params` (some parameter below it exists).
    takes_params: bool
    #: State collections it reads and returns, in order ("batch_stats", ...).
    state_collections: tuple[str, ...]
    #: Whether it takes `rng`.
    takes_rng: bool
    #: Array inputs: (argument name, tensor), or a tuple of them unpacked in the body
    #: (`TreeVar`: a scan step's carry, a loss function's model output).
    inputs: tuple[tuple[str, Var], ...]
    #: Body, in order.
    body: tuple[Op, ...]
    #: Return expression (a tuple/dict display over tensors).
    result: Code
    #: Output tensors in `result` (flattened, in display order).
    result_tensors: tuple[Tensor, ...]
    #: Where the method is defined.
    span: Span
    #: New state per collection it returns: (collection, dict display code).
    state_result: tuple[tuple[str, Code], ...] = ()
    #: Preferred variable names, id(var) -> DSL name (from assignments).
    hints: dict[int, str] = field(default_factory=dict, compare=False, hash=False)
    #: Nested function definitions rendered inside this one (e.g. scan steps).
    nested: tuple["Function", ...] = ()
    #: Trailing arguments taken but resolved statically (an initializer's `shape, dtype`).
    static_args: tuple[str, ...] = ()
    #: Decorators written above the `def` (`jax.custom_jvp`, `f.defjvp`).
    decorators: tuple[str, ...] = ()
    #: Its name is referenced by name in generated code (a custom_vjp's forward rule):
    #: it keeps resolve's name and is never merged, as a decorated function.
    pinned: bool = False
    #: Parameter subtrees of shared modules passed in (after the inputs; callers pass
    #: them by keyword).
    shared_args: tuple[str, ...] = ()
    #: Name of its init variant, when it (or a module it calls) initializes parameters
    #: from data: the same body with the `init_only` ops, writing those parameters into
    #: `params` as it runs; it always takes `rng`.  None: no variant.
    init_name: str | None = None
    #: What it implements, for names and docstrings ("ResNetBlock.apply", "cross_entropy").
    origin: str = ""
    #: The model's own name for the module configuration, if any ("ResNet18").
    label: str = ""
    #: The static hyperparameters it is specialized for, in signature order: emit names the
    #: keyword arguments and variants of shared functions after them.
    hparams: tuple[tuple[str, Any], ...] = field(default=(), compare=False)
    #: Its variables (a module's function): parameters by path below its `params`, and
    #: state with the collection first; those of the modules it calls included.
    params: tuple["ParamDecl", ...] = field(default=(), compare=False)
    state: tuple["ParamDecl", ...] = field(default=(), compare=False)

    @property
    def keeps_name(self) -> bool:
        """Named by other generated code (custom_jvp / custom_vjp rules and primals)."""
        return bool(self.decorators) or self.pinned


class FunctionRef(Fragment):
    """An emitted function named in code (a call, a scan's step): emit decides the name,
    since instances that compute the same thing share one function."""

    __slots__ = ("function", "kind")

    def __init__(self, function: "Function", kind: str = "apply"):
        #: The function, and which of its forms: "apply", or "init" (its init variant).
        self.function, self.kind = function, kind

    def vars(self) -> list[Var]:
        return []

    def render(self, names: dict) -> str:
        found = names.get(("fn", id(self.function), self.kind))
        if found is not None:
            return found
        name = self.function.init_name if self.kind == "init" else self.function.name
        assert name is not None, "an init reference to a function without an init variant"
        return name


class CallKwargs(Fragment):
    """Where a call passes the keyword arguments of a shared function (`strides=(2, 2)`):
    the values this call's instance needs, decided by emit."""

    __slots__ = ("function", "kind", "lead")

    def __init__(self, function: "Function", kind: str = "apply", lead: bool = True):
        #: `lead`: other arguments come before it (a comma goes first).
        self.function, self.kind, self.lead = function, kind, lead

    def vars(self) -> list[Var]:
        return []

    def render(self, names: dict) -> str:
        text = names.get(("kw", id(self.function), self.kind), "")
        if text.startswith("\x01"):  # emit's placeholder: it records the lead itself
            return text.format("L" if self.lead else "N")
        return (", " + text if self.lead else text) if text else ""


def call_code(function: "Function", args: "list[Code]", kind: str = "apply") -> Code:
    """`name(args..., <its keyword arguments>)`: a call of an emitted function."""
    return Code.of(FunctionRef(function, kind), "(", Code.join(", ", args),
                   CallKwargs(function, kind, bool(args)), ")")


@dataclass(frozen=True, slots=True)
class TrainProgram:
    """The training step of an `aot.train_target`."""

    #: The emitted loss function (its first input is the model's output).
    loss: Function
    #: Inputs of the loss besides the model output, as arrays: (label, shape, dtype), a
    #: tree input's arrays labelled by their path (`batch["tokens"]`, see `TargetProgram`).
    batch: tuple[tuple[str, tuple[int, ...], str], ...]
    #: Code of the optax transformation (a multi_transform for parameter groups).
    optimizer: str
    #: Whether the loss returns `(loss, metrics)` rather than a scalar.
    has_metrics: bool
    #: Parameter group label per parameter path (empty without groups).
    labels: tuple[tuple[tuple[str, ...], str], ...] = ()
    #: Names passed to the loss after the model output (model inputs or batch arrays).
    loss_inputs: tuple[str, ...] = ()
    #: `after_update=`: the emitted hook applied to the parameters after each update.
    after_update: Function | None = None
    #: `microbatches=`: gradients accumulated over this many slices of the batch.
    microbatches: int = 1
    #: With microbatches: the model function the loss calls, resolved for one slice.
    entry: Function | None = None
    #: The batch inputs by name, in the loss's order (`batch` has their arrays).
    batch_names: tuple[str, ...] = ()
    #: Batch inputs that are trees: (name, structure with array labels at its leaves).
    trees: tuple[tuple[str, Any], ...] = ()


@dataclass(frozen=True, slots=True)
class TargetProgram:
    """Everything emit needs for one `aot.target`."""

    name: str
    #: Emitted function implementing the entry method.
    entry: str
    #: `Function` object of the entry (for its signature).
    function: Function
    #: The arrays of the inputs: (label, shape, dtype), in apply-signature order; an input
    #: that is a tree (a dict of arrays) gives its arrays in jax's order (dict keys sorted),
    #: labelled by their path (`batch["tokens"]`), as the executable boundary flattens them.
    inputs: tuple[tuple[str, tuple[int, ...], str], ...]
    params: tuple[ParamDecl, ...]
    #: State variables: path starts with the collection name.
    state: tuple[ParamDecl, ...]
    #: Output structure as code over the entry's results (for docs).
    outputs: tuple[tuple[tuple[int, ...], str], ...]
    stochastic: bool
    platforms: tuple[str, ...]
    devices: int
    #: Description of the module and hyperparameters.
    description: str
    span: Span
    #: Symbolic dims by input (array label); empty for fixed shapes.
    symbolic: tuple[tuple[str, tuple[int | str, ...]], ...] = ()
    options: tuple[tuple[str, object], ...] = ()
    #: The training step, for `aot.train_target`.
    train: TrainProgram | None = None
    #: Device mesh axes (name, size), empty for one device or plain data parallelism.
    mesh: tuple[tuple[str, int], ...] = ()
    #: Partition spec per parameter path (only parameters a rule matched).
    param_sharding: tuple[tuple[tuple[str, ...], tuple[object, ...]], ...] = ()
    #: Some parameter is initialized from data: `init(rng, *example_inputs)` runs the
    #: entry's init variant after the initializers.
    init_inputs: bool = False
    #: A `method=` target whose parameter tree is a sibling target's whole tree
    #: (`resolve/methods.py`): that target's name, whose variable tree `init` walks.
    variables_of: str | None = None
    #: Hardware its native executables are cross-compiled for (`tpu=`, `gpu=`).
    tpu_topologies: tuple[str, ...] = ()
    gpu_targets: tuple[str, ...] = ()
    #: `processes=`: the jax.distributed processes its devices span (1: this host alone).
    processes: int = 1
    #: Bucket sizes per symbolic dimension (`buckets=`): one native executable per
    #: combination; `load()` pads a request to the smallest that fits (`padding.py`).
    buckets: tuple[tuple[str, tuple[int, ...]], ...] = ()
    #: The value padded positions of an input get (`pad_value=`; default 0).
    pad_values: tuple[tuple[str, object], ...] = ()
    #: Inputs that mask a dimension's padded positions (`masks=`).
    masks: tuple[tuple[str, tuple[str, ...]], ...] = ()
    #: Bucketed dimensions a request above the largest bucket may be split along
    #: (nothing mixes positions along them; `padding.check`).
    splittable: tuple[str, ...] = ()
    #: The inputs by name, in apply-signature order (`inputs` has their arrays).
    arguments: tuple[str, ...] = ()
    #: Inputs that are trees: (name, structure with array labels at its leaves).
    trees: tuple[tuple[str, Any], ...] = ()


@dataclass(frozen=True, slots=True)
class UserFunction:
    """A function of the model file emitted verbatim (a user initializer)."""

    name: str
    source: str
    span: Span


@dataclass(frozen=True, slots=True)
class FileProgram:
    """A resolved model file."""

    relpath: str
    source_sha256: str
    functions: tuple[Function, ...]
    targets: tuple[TargetProgram, ...]
    user_functions: tuple[UserFunction, ...]
    #: Module-level constants the emitted code references (name, code).
    constants: tuple[tuple[str, str], ...] = field(default=())
    #: Top-level statements resolution executed, per model file reached (its relpath):
    #: the driver warns about the statements no target of the build reached.
    executed: tuple[tuple[str, frozenset[int]], ...] = field(default=())
    #: What resolution warned about (`Diagnostic`s of severity "warning").
    warnings: tuple[Diagnostic, ...] = field(default=())
