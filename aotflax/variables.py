"""Variable trees: the parameters and state of each module, declared where it is.

Every module function with variables gets a function declaring its subtree:
its own variables as `_runtime.param(init, shape)` / `_runtime.state(collection,
init, shape)` leaves at their Linen paths, and each module it calls as a call of
that module's declaration function.  They are rendered here as bodies like any
other function, so `sharing` shares them the same way (a ResNet block's tree is
one function called per block, with the sizes that differ as keyword arguments).

A built-in layer whose variables a runtime helper declares (a Dense's `kernel`
and `bias`; a BatchNorm's `scale`, `bias`, `mean` and `var`) is one call of that
helper, `_runtime.batch_norm_variables(filters)`, with Linen's defaults left out;
only when its leaves are exactly the ones the helper makes, so the tree is the same.
Layers made of several Denses (attention, LSTMCell, DenseGeneral) are matched the
same way: the helper's tree is predicted from the layer's sizes and initializers and
compared with the declared leaves, shapes, dtypes and initializer code.

A target's `_runtime.Variables` is one call of its module's; the runtime walks the
tree for `PARAM_SHAPES`, `STATE_SHAPES` and `init`, which folds each leaf's key
from its full path exactly as a flat tree did: `fold_in(rng, crc32(path))`.
A parameter and a state variable at the same path are a tuple of both.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping, Set
from typing import Any

from .emit import Body, Line, Renderer, call_slot, checked, placeholder
from .program import FileProgram, Function, ParamDecl, Tensor
from .quoting import literal, string

_LEAF_PARAM = "_runtime.param"
_LEAF_STATE = "_runtime.state"

_ZEROS, _ONES = "jax.nn.initializers.zeros", "jax.nn.initializers.ones"
_LECUN_NORMAL = "jax.nn.initializers.lecun_normal()"
_AFFINE = {"scale": _ONES, "bias": _ZEROS}
#: Built-in layers with a variables helper in the runtime: entry -> (helper, its
#: parameters with their default initializers, whether it keeps Linen's running
#: statistics in batch_stats).
_LAYER_HELPERS = {
    "nn.Dense": ("_runtime.dense_variables", {"kernel": _LECUN_NORMAL, "bias": _ZEROS}, False),
    "nn.BatchNorm": ("_runtime.batch_norm_variables", _AFFINE, True),
    "nn.LayerNorm": ("_runtime.norm_variables", _AFFINE, False),
    "nn.GroupNorm": ("_runtime.norm_variables", _AFFINE, False),
}

#: Conventional names of the axes of an input of each rank, for dimensions that vary.
AXES = {1: ("n",), 2: ("batch", "features"), 3: ("batch", "length", "features"),
        4: ("batch", "height", "width", "channels"),
        5: ("batch", "depth", "height", "width", "channels")}


def axis_names(t: Tensor) -> tuple[str, ...]:
    """Names for the axes of an input: `AXES` by rank; integer ids of rank 2 are tokens
    (`batch`, `length`)."""
    if t.ndim == 2 and t.dtype.startswith(("int", "uint")):
        return ("batch", "length")
    return AXES.get(t.ndim, tuple(f"d{k}" for k in range(t.ndim)))


def all_functions(program: FileProgram) -> list[Function]:
    """The program's functions, with its targets' entries and losses should a caller have
    rebuilt them (each is emitted once: functions are keyed by identity)."""
    out = list(program.functions)
    seen = {id(fn) for fn in out}
    for t in program.targets:
        train = t.train
        extra = (train.loss, train.entry, train.after_update) if train is not None else ()
        for fn in (t.function, *extra):
            if fn is not None and id(fn) not in seen:
                seen.add(id(fn))
                out.append(fn)
    return out


def has_variables(fn: Function) -> bool:
    return bool(fn.params or fn.state)


def bodies(program: FileProgram, renderer: Renderer) -> dict[tuple[int, str], Body]:
    """A declaration body per module function with variables."""
    out: dict[tuple[int, str], Body] = {}
    functions = all_functions(program)
    trees = _Trees(renderer, {f.name: f for f in functions if f.static_args})
    for fn in functions:
        if fn.origin and "." in fn.origin and has_variables(fn):
            renderer.ref(fn, "variables")
            out[(id(fn), "variables")] = trees.body(fn)
    return out


class _Trees:
    """The declaration bodies of one program's modules, each tree built once.

    Resolve makes a function per instance; the instances of a module at the same sizes
    (`resnet50_b1` and `resnet50_b8` differ in the batch only) declare the same tree.
    Two functions declaring the same leaves (paths, shapes, dtypes, initializers, the
    lines that declare them) and calling modules of the same trees at the same paths
    have the same body but for the placeholders of the modules they call (`key`).
    """

    def __init__(self, renderer: Renderer, initializers: dict[str, Function]):
        self.renderer = renderer
        self.initializers = initializers
        #: id(function) -> its `_leaves` (the same callee sits below many callers).
        self.leaves: dict[int, dict[tuple[str, ...], tuple]] = {}
        #: id(function) -> `_calls_in`, and -> the number of its key.
        self.calls: dict[int, tuple[dict[tuple[str, ...], Function],
                                    dict[tuple[str, ...], str]]] = {}
        self.keys: dict[int, int] = {}
        self.numbers: dict[tuple, int] = {}
        #: key number -> (its body, what it calls at each path).
        self.built: dict[int, tuple[Body, dict[tuple[str, ...], Function]]] = {}

    def calls_of(self, fn: Function) -> tuple[dict[tuple[str, ...], Function],
                                              dict[tuple[str, ...], str]]:
        found = self.calls.get(id(fn))
        if found is None:
            found = self.calls[id(fn)] = _calls_in(fn)
        return found

    def key(self, fn: Function) -> int:
        """A number per tree: what `_body` reads of `fn`, with the modules it calls as
        their own trees' numbers (and which of them are the same function)."""
        found = self.keys.get(id(fn))
        if found is not None:
            return found
        modules, layers = self.calls_of(fn)
        same: dict[int, int] = {}
        called = tuple((path, same.setdefault(id(c), len(same)), self.key(c))
                       for path, c in modules.items())
        key = (fn.span.path, called, tuple(layers.items()),
               tuple([(d.path, d.shape, d.dtype, d.init, d.from_data, d.span.file.name,
                       d.span.line) for d in fn.params]),
               tuple([(d.path, d.shape, d.dtype, d.init, d.from_data, d.span.file.name,
                       d.span.line) for d in fn.state]))
        found = self.keys[id(fn)] = self.numbers.setdefault(key, len(self.numbers))
        return found

    def body(self, fn: Function) -> Body:
        """`fn`'s declaration body: built, or the body of its tree (its lines shared)
        calling the modules `fn` calls at the same paths."""
        number = self.key(fn)
        modules = self.calls_of(fn)[0]
        done = self.built.get(number)
        if done is None:
            body = _body(fn, self.renderer, self.initializers, self.leaves, self.calls_of(fn))
            self.built[number] = (body, modules)
            return body
        body, theirs = done
        mine = {id(theirs[p]): modules[p] for p in theirs}
        for f, kind in body.calls:  # the callees' placeholders, in the first's order
            self.renderer.ref(mine.get(id(f), f), kind)
        return Body(fn, "variables", [], False, body.lines, "",
                    [(mine.get(id(f), f), kind) for f, kind in body.calls], text=body.code())


def _leaves_of(fn: Function, memo: dict[int, dict[tuple[str, ...], tuple]]
               ) -> dict[tuple[str, ...], tuple]:
    found = memo.get(id(fn))
    if found is None:
        found = memo[id(fn)] = _leaves(fn)
    return found


def _calls_in(fn: Function) -> tuple[dict[tuple[str, ...], Function],
                                     dict[tuple[str, ...], str]]:
    """What `fn` calls at a path (relative to `fn`), in call order: the module instances
    whose variables sit below its own (path -> function), and the built-in layers with a
    variables helper (path -> entry)."""
    modules: dict[tuple[str, ...], Function] = {}
    layers: dict[tuple[str, ...], str] = {}

    def walk(body: tuple) -> None:
        for op in body:
            info = op.info
            if info is not None and info.path:
                callee = info.callee
                if callee is not None and not info.shared and has_variables(callee) and \
                        callee.origin and "." in callee.origin:
                    modules.setdefault(tuple(info.path), callee)
                if info.entry in _LAYER_HELPERS or info.entry in _COMPOSITES:
                    layers.setdefault(tuple(info.path), info.entry)
            for nested in op.nested:
                walk(nested.body)

    walk(fn.body)
    return modules, layers


def _prefix_hits(decls: list[tuple[tuple[str, ...], str, ParamDecl]],
                 index: Set[tuple[str, ...]]) -> list[list[tuple[str, ...]]]:
    """Per declaration, the prefixes of its path (itself included) that are in `index`
    (non-empty paths), shortest first."""
    if not index:
        return [[] for _ in decls]
    heads = {p[0] for p in index}
    depth = max(len(p) for p in index)
    out: list[list[tuple[str, ...]]] = []
    for path, _, _ in decls:
        if not path or path[0] not in heads:  # a leaf of the module itself
            out.append([])
        elif depth == 1:  # the paths of calls in `fn`'s own body: one name each
            out.append([path[:1]])
        else:
            out.append([path[:n] for n in range(1, min(len(path), depth) + 1)
                        if path[:n] in index])
    return out


def _children(decls: list[tuple[tuple[str, ...], str, ParamDecl]],
              hits: list[list[tuple[str, ...]]], found: dict[tuple[str, ...], Function],
              memo: dict[int, dict[tuple[str, ...], tuple]]
              ) -> dict[tuple[str, ...], Function]:
    """The module instances of `found` (path -> function, see `_calls_in`) whose
    variables sit below the caller's: exactly the callee's tree under its path.

    `hits`: each declaration's prefixes among the paths (`_prefix_hits`); `memo` keeps
    each function's `_leaves` (the same callee sits below many callers)."""
    if not found:
        return {}
    # the leaves below each path the calls have, keyed as `_leaves` keys them
    below: dict[tuple[str, ...], dict[tuple[str, ...], tuple]] = {}
    for (path, collection, d), prefixes in zip(decls, hits):
        value = (d.shape, d.dtype, d.init, d.from_data)
        for p in prefixes:
            if p in found:
                below.setdefault(p, {})[path[len(p):] + (collection,)] = value
        key = path + (collection,)
        if key in found:  # a call's path ending in a collection's name: never a match
            below.setdefault(key, {})[()] = value
    out = {}
    for path, callee in found.items():
        mine = below.get(path)
        if mine and mine == _leaves_of(callee, memo):  # exactly the callee's tree: a call
            out[path] = callee
    return out


def _leaves(fn: Function) -> dict[tuple[str, ...], tuple]:
    """(path, collection) -> what a leaf declares; parameters are collection ""."""
    out: dict[tuple[str, ...], tuple] = {}
    for d in fn.params:
        out[tuple(d.path) + ("",)] = (d.shape, d.dtype, d.init, d.from_data)
    for d in fn.state:
        out[tuple(d.path[1:]) + (d.path[0],)] = (d.shape, d.dtype, d.init, d.from_data)
    return out


def _body(fn: Function, renderer: Renderer, initializers: dict[str, Function],
          leaves: dict[int, dict[tuple[str, ...], tuple]],
          calls_in: tuple[dict[tuple[str, ...], Function], dict[tuple[str, ...], str]]
          ) -> Body:
    """The declaration function of `fn`'s variables: a nested dict display.

    `calls_in`: `_calls_in(fn)`; `leaves`: each function's `_leaves`, as they are found.
    """
    decls: list[tuple[tuple[str, ...], str, ParamDecl]] = [(d.path, "", d) for d in fn.params]
    decls += [(d.path[1:], d.path[0], d) for d in fn.state]
    found, layer_paths = calls_in
    # each declaration's path is matched against the calls' paths once (linear in leaves)
    hits = _prefix_hits(decls, found.keys() | layer_paths.keys())
    children = _children(decls, hits, found, leaves)
    child_order = {p: i for i, p in enumerate(children)}
    tree: dict[str, Any] = {}
    calls: list[tuple[Function, str]] = []
    placed: set[tuple[str, ...]] = set()

    def place(path: tuple[str, ...], leaf: Any) -> None:
        node = tree
        for part in path[:-1]:
            nxt = node.get(part)
            if nxt is None:
                nxt = node[part] = {}
            elif isinstance(nxt, _Both):
                nxt = nxt.subtree()
            elif not isinstance(nxt, dict):  # a leaf where a subtree goes too
                both = node[part] = _Both([nxt])
                nxt = both.subtree()
            node = nxt
        old = node.get(path[-1])
        if old is None:
            node[path[-1]] = leaf
        elif isinstance(old, _Both):
            old.items.append(leaf)
        else:
            node[path[-1]] = _Both([old, leaf])

    layers = _layer_calls(fn, decls, hits, layer_paths, children, initializers, renderer,
                          calls)
    layer_order = {p: i for i, p in enumerate(layers)}
    for (path, collection, d), mine in zip(decls, hits):
        layer = _first(mine, layer_order)
        if layer is not None:
            if layer not in placed:
                placed.add(layer)
                place(layer, layers[layer])
            continue
        child = _first(mine, child_order)
        if child is None:
            leaf = _Leaf(_leaf(collection, d, _init_code(d, initializers, renderer, calls)))
            leaf.where = f"{d.span.file.name or fn.span.path}:{d.span.line}"
            place(path, leaf)
            continue
        if child in placed:
            continue
        placed.add(child)
        callee = children[child]
        renderer.ref(callee, "variables")
        k = placeholder(call_slot(calls, callee, "variables"))
        place(child, f"\x00{k}\x00(\x01N{k}\x01)")
    lines = [Line(text, where) for text, where in _value_lines(tree, 0)]
    lines[0].code = "return " + lines[0].code
    return Body(fn, "variables", [], False, lines, "", calls)


def _prefixes_in(path: tuple[str, ...], paths: Mapping[tuple[str, ...], Any]
                 ) -> list[tuple[str, ...]]:
    """The prefixes of `path` (itself included) that are keys of `paths`, shortest first."""
    return [path[:n] for n in range(len(path) + 1) if path[:n] in paths]


def _first(prefixes: list[tuple[str, ...]], order: dict[tuple[str, ...], int]
           ) -> tuple[str, ...] | None:
    """The first (in `order`, call order) of `prefixes` that are paths in `order`."""
    if len(prefixes) < 2:  # most paths: below one call or none
        return prefixes[0] if prefixes and prefixes[0] in order else None
    return min((p for p in prefixes if p in order), key=order.__getitem__, default=None)


def _layer_calls(fn: Function, decls: list[tuple[tuple[str, ...], str, ParamDecl]],
                 hits: list[list[tuple[str, ...]]], layer_paths: dict[tuple[str, ...], str],
                 children: dict[tuple[str, ...], Function], initializers: dict[str, Function],
                 renderer: Renderer, calls: list[tuple[Function, str]]
                 ) -> dict[tuple[str, ...], "_Leaf"]:
    """The layers whose subtree is one call of a runtime helper: path -> that call.

    `layer_paths`: the built-in layers `fn` calls (`_calls_in`); `hits`: each
    declaration's prefixes among the calls' paths (`_prefix_hits`).  A layer qualifies
    when the leaves under its path are exactly what the helper declares (`scale` and
    `bias` of one shape and dtype, each optional; for BatchNorm float32 `mean` zeros and
    `var` ones of that shape in batch_stats); anything else under the path (a layer
    subclass declaring more) keeps the leaf-by-leaf tree.
    """
    out: dict[tuple[str, ...], _Leaf] = {}
    layers = {path: entry for path, entry in layer_paths.items()
              if not _prefixes_in(path, children)}
    # each layer's leaves
    under: dict[tuple[str, ...], dict[tuple[tuple[str, ...], str], ParamDecl]] = {}
    for (p, c, d), prefixes in zip(decls, hits):
        for path in prefixes:
            if path in layers:
                under.setdefault(path, {})[(p[len(path):], c)] = d
    for path, entry in layers.items():
        mine = under.get(path, {})
        call = _layer_call(entry, mine, initializers, renderer, calls)
        if call is not None:
            first = next(iter(mine.values()))
            call.where = f"{first.span.file.name or fn.span.path}:{first.span.line}"
            out[path] = call
    return out


def _layer_call(entry: str, leaves: dict[tuple[tuple[str, ...], str], ParamDecl],
                initializers: dict[str, Function], renderer: Renderer,
                calls: list[tuple[Function, str]]) -> "_Leaf | None":
    """The helper call declaring `leaves` ((relative path, collection) -> declaration), or
    None when they are not what the helper of `entry` declares."""
    if entry in _COMPOSITES:
        helper, rule = _COMPOSITES[entry]
        if not leaves or any(d.from_data for d in leaves.values()):
            return None
        named = functools.partial(_named, initializers=initializers, renderer=renderer,
                                  calls=calls)
        args = rule(leaves, named)
        return None if args is None else _Leaf(f"{helper}({', '.join(args)})")
    helper, inits, stats = _LAYER_HELPERS[entry]
    params = {name: leaves.get(((name,), "")) for name in inits}
    present = [d for d in params.values() if d is not None]
    expected = {((name,), "") for name, d in params.items() if d is not None}
    if stats:
        mean, var = leaves.get((("mean",), "batch_stats")), leaves.get((("var",), "batch_stats"))
        if mean is None or var is None or (mean.init, var.init) != (_ZEROS, _ONES) or \
                {mean.dtype, var.dtype} != {"float32"}:
            return None
        expected |= {(("mean",), "batch_stats"), (("var",), "batch_stats")}
    if not leaves or set(leaves) != expected or any(d.from_data for d in leaves.values()) or \
            len({d.dtype for d in present}) > 1:
        return None
    args = _layer_sizes(entry, leaves, params)
    if args is None:
        return None
    for name, default in inits.items():
        d = params[name]
        if d is None:
            args.append(f"use_{name}=False")
        elif (init := _init_code(d, initializers, renderer, calls)) != default:
            args.append(f"{name}_init={init}")
    if present and present[0].dtype != "float32":
        args.append(f"param_dtype={dtype_code(present[0].dtype)}")
    return _Leaf(f"{helper}({', '.join(args)})")


def _layer_sizes(entry: str, leaves: dict[tuple[tuple[str, ...], str], ParamDecl],
                 params: dict[str, ParamDecl | None]) -> list[str] | None:
    """The helper's positional arguments (sizes) for `leaves`, or None if their shapes are
    not the ones it declares: Dense `(in_features, features)`, a normalization layer's
    `features` (a BatchNorm's may be several feature axes)."""
    if entry == "nn.Dense":
        kernel, bias = params["kernel"], params["bias"]
        if kernel is None or len(kernel.shape) != 2 or \
                (bias is not None and bias.shape != kernel.shape[1:]):
            return None
        return [literal(kernel.shape[0]), literal(kernel.shape[1])]
    shapes = {d.shape for d in leaves.values()}
    if len(shapes) != 1:
        return None
    shape, = shapes
    if len(shape) == 1:
        return [literal(shape[0])]
    return [literal(tuple(shape))] if shape and entry == "nn.BatchNorm" else None


class _Leaf(str):
    """A leaf's code, with the DSL line that declares it."""

    where = ""


class _Both:
    """A parameter and a state variable (or a subtree) at the same path."""

    def __init__(self, items: list[Any]):
        self.items = items

    def subtree(self) -> dict:
        for item in self.items:
            if isinstance(item, dict):
                return item
        tree: dict = {}
        self.items.append(tree)
        return tree


def _init_code(d: ParamDecl, initializers: dict[str, Function], renderer: Renderer,
               calls: list[tuple[Function, str]]) -> str:
    """The initializer's code; one of the model file's is a function emitted (and shared)
    like the others, so it is named by a placeholder."""
    return "None" if d.from_data else _named(d.init, initializers, renderer, calls)


def _named(init: str, initializers: dict[str, Function], renderer: Renderer,
           calls: list[tuple[Function, str]]) -> str:
    """`init`'s code; a model file's initializer is named by a placeholder."""
    fn = initializers.get(init)
    if fn is None:
        return init
    renderer.ref(fn, "apply")
    return f"\x00{placeholder(call_slot(calls, fn, 'apply'))}\x00"


# ------------------------------------------------------------- layers of several Denses
#
# Each rule reads the sizes and initializers from the declared leaves, predicts the tree
# its runtime helper declares with them (`_Tree`: (relative path, collection) -> (shape,
# dtype, initializer code)) and answers the helper's arguments only when the prediction
# is exactly the declared tree, so the helper call declares the same variables.

_Tree = dict[tuple[tuple[str, ...], str], tuple[tuple[int, ...], str, str]]
_ORTHOGONAL = "jax.nn.initializers.orthogonal()"
#: ops/linear.py's `flat_init`: Linen's DenseGeneral initializes the flattened shape.
_FLAT = "(lambda key, shape, dtype: jnp.reshape(", "(key, {flat!r}, dtype), shape))"


def _flat(init: str, flat: tuple[int, ...], shape: tuple[int, ...]) -> str:
    """The code `flat_init` writes for `init` on a DenseGeneral leaf of `shape`."""
    if flat == shape or init in (_ZEROS, _ONES):
        return init
    return f"{_FLAT[0]}{init}{_FLAT[1].format(flat=flat)}"


def _unflat(init: str, flat: tuple[int, ...], shape: tuple[int, ...]) -> str | None:
    """The initializer a DenseGeneral leaf declared with `init` was given, if `_flat`
    wrote it (a model file's own initializer gets the real shape: None)."""
    if flat == shape or init in (_ZEROS, _ONES):
        return init
    tail = _FLAT[1].format(flat=flat)
    if init.startswith(_FLAT[0]) and init.endswith(tail):
        return init[len(_FLAT[0]):-len(tail)]
    return None


def _dense_general_tree(path: tuple[str, ...], ins: tuple[int, ...], outs: tuple[int, ...],
                        bias: bool, kernel: str, bias_init: str, dtype: str) -> _Tree:
    """The leaves `_runtime.dense_general_variables(ins, outs, ...)` declares at `path`."""
    flat = (math.prod(ins), math.prod(outs))
    tree = {(path + ("kernel",), ""): (ins + outs, dtype, _flat(kernel, flat, ins + outs))}
    if bias:
        tree[(path + ("bias",), "")] = (outs, dtype, _flat(bias_init, flat[1:], outs))
    return tree


def _declared(leaves: dict[tuple[tuple[str, ...], str], ParamDecl]) -> _Tree:
    return {k: (tuple(int(n) for n in d.shape), d.dtype, d.init) for k, d in leaves.items()}


def _options(dtype: str, named: Callable[[str], str],
             pairs: tuple[tuple[str, str | None, str], ...]) -> list[str]:
    """Keyword arguments of the initializers (name, code or None if unused, default)
    that are not the default, and `param_dtype`."""
    out = [f"{name}={named(code)}" for name, code, default in pairs
           if code is not None and code != default]
    return out + ([f"param_dtype={dtype_code(dtype)}"] if dtype != "float32" else [])


def _dense_general_args(leaves: dict[tuple[tuple[str, ...], str], ParamDecl],
                        named: Callable[[str], str]) -> list[str] | None:
    """`dense_general_variables(in_shape, features, ...)` for a DenseGeneral's leaves."""
    kernel, bias = leaves.get((("kernel",), "")), leaves.get((("bias",), ""))
    if kernel is None:
        return None
    shape = tuple(int(n) for n in kernel.shape)
    splits = [len(shape) - len(bias.shape)] if bias is not None else range(1, len(shape))
    for n in splits:
        ins, outs = shape[:n], shape[n:]
        k = _unflat(kernel.init, (math.prod(ins), math.prod(outs)), shape)
        b = _unflat(bias.init, (math.prod(outs),), outs) if bias is not None else _ZEROS
        if n < 1 or k is None or b is None or _declared(leaves) != _dense_general_tree(
                (), ins, outs, bias is not None, k, b, kernel.dtype):
            continue
        args = [literal(ins), literal(outs)] + ([] if bias is not None else ["use_bias=False"])
        return args + _options(kernel.dtype, named, (("kernel_init", k, _LECUN_NORMAL),
                                                     ("bias_init", b, _ZEROS)))
    return None


def _attention_args(leaves: dict[tuple[tuple[str, ...], str], ParamDecl],
                    named: Callable[[str], str]) -> list[str] | None:
    """`attention_variables(in_features, num_heads=..., ...)` for an attention's leaves:
    query, key and value from one feature size, one initializer pair for all four."""
    query, out = leaves.get((("query", "kernel"), "")), leaves.get((("out", "kernel"), ""))
    if query is None or out is None or len(query.shape) != 3 or len(out.shape) != 3:
        return None
    (n_in, heads, depth), features = (int(n) for n in query.shape), int(out.shape[-1])
    bias = leaves.get((("query", "bias"), ""))
    k = _unflat(query.init, (n_in, heads * depth), (n_in, heads, depth))
    b = _unflat(bias.init, (heads * depth,), (heads, depth)) if bias is not None else _ZEROS
    if k is None or b is None:
        return None
    tree: _Tree = {}
    for name in ("query", "key", "value"):
        tree |= _dense_general_tree((name,), (n_in,), (heads, depth), bias is not None, k, b,
                                    query.dtype)
    tree |= _dense_general_tree(("out",), (heads, depth), (features,), bias is not None, k, b,
                                query.dtype)
    args = [literal(n_in), f"num_heads={heads}"]
    args += [f"qkv_features={heads * depth}"] if heads * depth != n_in else []
    args += [f"out_features={features}"] if features != n_in else []
    cached = leaves.get((("cached_key",), "cache"))
    if cached is not None:
        shape = tuple(int(n) for n in cached.shape)
        if shape[-2:] != (heads, depth):
            return None
        for name in ("cached_key", "cached_value"):
            tree[((name,), "cache")] = (shape, cached.dtype, _ZEROS)
        tree[(("cache_index",), "cache")] = ((), "int32", _ZEROS)
        args.append(f"cache_shape={literal(shape[:-2])}")
        if cached.dtype != "float32":
            args.append(f"cache_dtype={dtype_code(cached.dtype)}")
    if _declared(leaves) != tree:
        return None
    args += [] if bias is not None else ["use_bias=False"]
    return args + _options(query.dtype, named, (("kernel_init", k, _LECUN_NORMAL),
                                                ("bias_init", b, _ZEROS)))


def _lstm_args(leaves: dict[tuple[tuple[str, ...], str], ParamDecl],
               named: Callable[[str], str]) -> list[str] | None:
    """`lstm_cell_variables(in_features, features, ...)` for an LSTMCell's leaves."""
    x, h = leaves.get((("ii", "kernel"), "")), leaves.get((("hi", "kernel"), ""))
    bias = leaves.get((("hi", "bias"), ""))
    if x is None or h is None or bias is None or len(x.shape) != 2:
        return None
    n_in, features = (int(n) for n in x.shape)
    tree: _Tree = {}
    for g in "ifgo":
        tree[((f"i{g}", "kernel"), "")] = ((n_in, features), x.dtype, x.init)
        tree[((f"h{g}", "kernel"), "")] = ((features, features), x.dtype, h.init)
        tree[((f"h{g}", "bias"), "")] = ((features,), x.dtype, bias.init)
    if _declared(leaves) != tree:
        return None
    return [literal(n_in), literal(features)] + _options(x.dtype, named, (
        ("kernel_init", x.init, _LECUN_NORMAL), ("recurrent_kernel_init", h.init, _ORTHOGONAL),
        ("bias_init", bias.init, _ZEROS)))


#: Built-in layers of several Denses: entry -> (helper, the rule answering its arguments).
_COMPOSITES = {
    "nn.DenseGeneral": ("_runtime.dense_general_variables", _dense_general_args),
    "nn.MultiHeadDotProductAttention": ("_runtime.attention_variables", _attention_args),
    "nn.SelfAttention": ("_runtime.attention_variables", _attention_args),
    "nn.LSTMCell": ("_runtime.lstm_cell_variables", _lstm_args),
}


def _leaf(collection: str, d: ParamDecl, init: str) -> str:
    shape = literal(tuple(int(n) for n in d.shape))
    dtype = "" if d.dtype == "float32" else f", {dtype_code(d.dtype)}"
    if collection:
        return f"{_LEAF_STATE}({string(collection)}, {init}, {shape}{dtype})"
    return f"{_LEAF_PARAM}({init}, {shape}{dtype})"


def _value_lines(value: Any, indent: int) -> list[tuple[str, str]]:
    """A tree node as (line, where) at `indent` (the first line is not indented): a dict
    holding one leaf stays on one line, a bigger one takes a line per entry."""
    pad = " " * (indent + 4)
    if isinstance(value, _Both):
        parts = [_value_lines(v, indent + 4) for v in value.items]
        if all(len(p) == 1 for p in parts):
            return [("(" + ", ".join(p[0][0] for p in parts) + ")", parts[0][0][1])]
        out = [("(", "")]
        for p in parts:
            out += [(pad + p[0][0], p[0][1]), *p[1:]]
            out[-1] = (out[-1][0] + ",", out[-1][1])
        return out + [(" " * indent + ")", "")]
    if isinstance(value, dict):
        if not value:
            return [("{}", "")]
        if len(value) == 1:
            (k, v), = value.items()
            if isinstance(v, str):
                return [(f"{{{string(k)}: {v}}}", getattr(v, "where", ""))]
        out = [("{", "")]
        for k, v in value.items():
            lines = _value_lines(v, indent + 4)
            lines[0] = (f"{pad}{string(k)}: {lines[0][0]}", lines[0][1])
            lines[-1] = (lines[-1][0] + ",", lines[-1][1])
            out += lines
        return out + [(" " * indent + "}", "")]
    return [(str(value), getattr(value, "where", ""))]


def dtype_code(name: str) -> str:
    """`jnp.float32`; a typed random key's dtype is the default implementation's."""
    if name.startswith("key<"):
        return "jax.random.key(0).dtype"
    return "jnp." + checked(name, "dtype name")


def input_candidates(fn: Function) -> list[tuple[str, list[int]]]:
    """Names for sizes a declaration takes from its module's inputs (`in_channels`)."""
    arrays = [(n, t) for n, t in fn.inputs if isinstance(t, Tensor)]
    out = []
    for name, t in arrays:
        axes = axis_names(t)
        for axis in range(t.ndim):
            label = f"in_{axes[axis]}" if len(arrays) == 1 else f"{name}_{axes[axis]}"
            out.append((label, [t.shape[axis]]))
    return out
