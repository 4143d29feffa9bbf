"""The benchmark's contestants, all on one torch module's weights.

  torch        `torch.nn.LSTM`/`GRU` (batch_first), the speed bar on the CPU;
  ours[v]      `gatedrnn.nn.interop.from_torch(torch_module)`, one row per engine VJP variant `v`;
  flax         `flax.linen.RNN` over `OptimizedLSTMCell` / `GRUCell` (Flax's own GRU has the
               reset-after convention and b_hn, so it matches torch exactly), its params mapped
               from our layer's (`flax_params`: interop reads torch, this maps ours to linen);
  bound        `jnp.dot` of [m, d + h] x [d + h, g h] with the FLOPs of the RNN.

A `Contestant` is two zero-argument callables ("forward", "train": the VJP of the outputs with a
fixed cotangent) plus, for the agreement check, its outputs and input gradients.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from gatedrnn.lab.benchmark.sizes import GATES, Config
from gatedrnn.nn.layers import Bidirectional, Stack
from gatedrnn.nn.params import param_values
from gatedrnn.scan import VJPS


@dataclasses.dataclass
class Contestant:
    """Zero-argument callables that run one forward / one forward+backward and block."""

    name: str
    run: dict[str, Callable[[], Any]]
    compile_s: dict[str, float] | None = None
    memory: dict[str, dict[str, int]] | None = None
    outputs: np.ndarray | None = None  # forward outputs [b, t, out], float32
    input_grad: np.ndarray | None = None  # d loss / d x [b, t, d], float32


def engine_vjp_variants() -> tuple[str, ...]:
    """The engine's VJP variants in table order: ("autodiff", "replay", "fused")."""
    return tuple(v for v in ("autodiff", "replay", "fused") if v in VJPS)


def contestant_name(vjp: str | None) -> str:
    return "ours" if vjp is None else f"ours[{vjp}]"


def compute_dtype(config: Config):
    return None if config.dtype == "float32" else jnp.dtype(config.dtype)


# ----------------------------------------------------------------------------- compiling


def jax_compile(fn: Callable, *args) -> tuple[Callable, float, dict[str, int]]:
    """jit(fn) lowered and compiled for args: (compiled, seconds, memory_analysis as a dict)."""
    t0 = time.perf_counter()
    compiled = jax.jit(fn).lower(*args).compile()
    seconds = time.perf_counter() - t0
    return compiled, seconds, memory_stats(compiled)


def memory_stats(compiled) -> dict[str, int]:
    stats = compiled.memory_analysis()
    if stats is None:  # some backends have none
        return {}
    out = {
        key: int(getattr(stats, f"{key}_size_in_bytes", 0) or 0)
        for key in ("temp", "argument", "output", "alias", "generated_code")
    }
    out["total"] = out["temp"] + out["argument"] + out["output"]
    peak = getattr(stats, "peak_memory_in_bytes", None)
    if peak:
        out["peak"] = int(peak)
    return out


def _blocking(fn: Callable, *args) -> Callable[[], Any]:
    return lambda: jax.block_until_ready(fn(*args))


def vjp_loss(apply: Callable) -> Callable:
    """(params, x, cotangent) -> sum(apply(params, x) * cotangent) in float32."""

    def loss(params, x, cotangent):
        return jnp.sum(apply(params, x).astype(jnp.float32) * cotangent)

    return loss


def layer_apply(stack: Stack) -> tuple[Callable, Any]:
    """(apply, state): apply(state, x [b, t, d]) -> outputs [b, t, out] of the NNX `stack`, a pure function."""
    graphdef, state = nnx.split(stack)

    def apply(state, x):
        y, _ = nnx.merge(graphdef, state)(x)
        return y

    return apply, jax.tree.map(jnp.asarray, state)


def jax_contestant(name: str, apply: Callable, params: Any, x: jax.Array, cotangent: jax.Array) -> Contestant:
    """Compiles apply(params, x) -> y and its gradient w.r.t. (params, x); records outputs."""
    train = jax.grad(vjp_loss(apply), argnums=(0, 1))
    fwd, fwd_s, fwd_mem = jax_compile(apply, params, x)
    bwd, bwd_s, bwd_mem = jax_compile(train, params, x, cotangent)
    outputs = np.asarray(jax.block_until_ready(fwd(params, x)), np.float32)
    input_grad = np.asarray(jax.block_until_ready(bwd(params, x, cotangent))[1], np.float32)
    return Contestant(
        name,
        run={"forward": _blocking(fwd, params, x), "train": _blocking(bwd, params, x, cotangent)},
        compile_s={"forward": fwd_s, "train": bwd_s},
        memory={"forward": fwd_mem, "train": bwd_mem},
        outputs=outputs,
        input_grad=input_grad,
    )


# ----------------------------------------------------------------------------- torch, ours, flax, bound


def torch_module(config: Config, seed: int = 0):
    import torch

    torch.manual_seed(seed)
    cls = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[config.cell]
    s = config.size
    return cls(
        s.input_size, s.hidden_size, num_layers=config.num_layers, bidirectional=config.bidirectional, batch_first=True
    )


def torch_contestant(module, x: np.ndarray, cotangent: np.ndarray) -> Contestant:
    import torch

    xt, gt = torch.from_numpy(x), torch.from_numpy(cotangent)
    params = list(module.parameters())

    def forward():
        with torch.no_grad():
            return module(xt)[0]

    def train():
        for p in params:
            p.grad = None
        xr = xt.detach().requires_grad_(True)
        module(xr)[0].backward(gt)
        return xr.grad

    return Contestant(
        "torch",
        run={"forward": forward, "train": train},
        outputs=forward().numpy().astype(np.float32),
        input_grad=train().numpy().astype(np.float32),
    )


def _rnns(stack: Stack):
    """Every `RNN` of `stack`, per layer: (forward,) or (forward, backward)."""
    for layer in stack.layers:
        yield (layer.forward, layer.backward) if isinstance(layer, Bidirectional) else (layer,)


def configure_layers(stack: Stack, *, vjp: str | None = None, dtype: Any = None, unroll: int | None = None) -> Stack:
    """Sets the engine VJP variant, compute dtype and scan unroll on every `RNN` in `stack`, in place.

    None leaves a setting as the layer has it (the fields of the layer's `scan` options). A layer
    without `scan` is an AttributeError (an NNX module would otherwise take it silently and ignore it).
    """
    settings = {name: value for name, value in (("vjp", vjp), ("dtype", dtype), ("unroll", unroll))
                if value is not None}
    for rnns in _rnns(stack):
        for rnn in rnns:
            if not hasattr(rnn, "scan"):
                raise AttributeError(f"{type(rnn).__name__} has no attribute 'scan' to set {sorted(settings)} on")
            rnn.scan = dataclasses.replace(rnn.scan, **settings)
    return stack


def ours_stack(module, config: Config, vjp: str | None, *, unroll: int | None = None) -> Stack:
    """`from_torch(module)` with the config's compute dtype and the given VJP variant and unroll."""
    from gatedrnn.nn.interop import from_torch

    return configure_layers(from_torch(module), vjp=vjp, dtype=compute_dtype(config), unroll=unroll)


def ours_contestant(stack: Stack, vjp: str | None, x: jax.Array, cotangent: jax.Array) -> Contestant:
    apply, state = layer_apply(stack)
    return jax_contestant(contestant_name(vjp), apply, state, x, cotangent)


def flax_contestant(stack: Stack, config: Config, x: jax.Array, cotangent: jax.Array) -> Contestant:
    """Flax's `nn.RNN` with the weights of our `stack` (as `from_torch` built it from the torch module)."""
    import flax.linen as nn

    dtype = compute_dtype(config)
    cell_cls = {"lstm": nn.OptimizedLSTMCell, "gru": nn.GRUCell}[config.cell]
    h = config.size.hidden_size

    def rnn():
        return nn.RNN(cell_cls(h, dtype=dtype))

    layers = [nn.Bidirectional(rnn(), rnn()) if config.bidirectional else rnn() for _ in range(config.num_layers)]
    model = layers[0] if len(layers) == 1 else nn.Sequential(layers)
    params = jax.tree.map(jnp.asarray, flax_params(stack, config.cell))

    def apply(params, x):
        return model.apply({"params": params}, x)

    return jax_contestant("flax", apply, params, x, cotangent)


def flax_params(stack: Stack, cell: str) -> dict:
    """The params of `flax_contestant`'s model holding the weights of our `stack`.

    Ours: w [d, g, h], r [h, g, h] (gates LSTM i, f, z, o; GRU r, z, n); the LSTM's b [g, h] is
    b_ih + b_hh, the GRU keeps b_x and b_h [g, h]. Flax keeps one Dense per gate with kernel
    [in, h]. LSTM: input kernels have no bias, the recurrent ones carry b. GRU: b_hr and b_hz
    fold into the input biases; b_hn stays on `hn`.
    """

    def cell_params(rnn) -> dict:
        p = {k: np.asarray(v, np.float32) for k, v in param_values(rnn.params).items()}
        w, r = lambda k: p["w"][:, k], lambda k: p["r"][:, k]  # noqa: E731
        out = {}
        if cell == "lstm":
            for k, gate in enumerate("ifgo"):
                out[f"i{gate}"] = {"kernel": w(k)}
                out[f"h{gate}"] = {"kernel": r(k), "bias": p["b"][k]}
        else:
            for k, gate in enumerate("rz"):
                out[f"i{gate}"] = {"kernel": w(k), "bias": p["b_x"][k] + p["b_h"][k]}
                out[f"h{gate}"] = {"kernel": r(k)}
            out["in"] = {"kernel": w(2), "bias": p["b_x"][2]}
            out["hn"] = {"kernel": r(2), "bias": p["b_h"][2]}
        return {"cell": jax.tree.map(np.ascontiguousarray, out)}

    layers = []
    for rnns in _rnns(stack):
        if len(rnns) == 2:
            layers.append({"forward_rnn": cell_params(rnns[0]), "backward_rnn": cell_params(rnns[1])})
        else:
            layers.append(cell_params(rnns[0]))
    return layers[0] if len(layers) == 1 else {f"layers_{k}": p for k, p in enumerate(layers)}


def bound_contestant(config: Config, seed: int = 0) -> Contestant:
    """`jnp.dot` [m, d + h] x [d + h, g h] with the RNN's forward FLOPs, and 3x them for train."""
    s = config.size
    k, n = s.input_size + s.hidden_size, GATES[config.cell] * s.hidden_size
    rng = np.random.default_rng(seed)
    w = jnp.asarray(rng.standard_normal((k, n), dtype=np.float32))
    run, compile_s, memory = {}, {}, {}
    for mode, factor in (("forward", 1), ("train", 3)):
        m = max(1, round(factor * config.forward_flops() / (2 * k * n)))
        a = jnp.asarray(rng.standard_normal((m, k), dtype=np.float32))
        fn, compile_s[mode], memory[mode] = jax_compile(jnp.dot, a, w)
        run[mode] = _blocking(fn, a, w)
    return Contestant("bound", run=run, compile_s=compile_s, memory=memory)
