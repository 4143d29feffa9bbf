"""PyTorch interop: `from_torch(module)` and `to_torch(layer)` (public API; names are stable), and
`load_official(module, state_dict)`, NX-AI's official xLSTM blocks' weights into `gatedrnn.nn.xlstm`'s.

    layer = from_torch(torch.nn.LSTM(8, 32, num_layers=2, bidirectional=True, proj_size=16))
    outputs, carry = layer(x, seq_lengths=lengths)   # x [batch, time, 8], always batch-first

    attn = from_torch(torch.nn.MultiheadAttention(16, 4, batch_first=True))
    context, weights = attn(q, k, v, mask)           # weights [batch, heads, q, s]

`outputs` equal torch's on the packed batch (padded positions zero). `carry` is a list over
layers; a bidirectional layer's carry is (forward, backward); an LSTM carry is
`LSTMCarry(c, h)`, so torch's h_n[layer * num_directions + direction] is the `h` there.

Weight mapping of the recurrent layers: torch's gate order is ours; `w = weight_ih.T`
reshaped to [d, gates, h], `r = weight_hh.T` to [h, gates, h].
  Biases, RNN and LSTM: ours has one, b = bias_ih + bias_hh (exact up to one float32
    rounding). `to_torch` writes that sum into `bias_ih` and zeros into `bias_hh`: torch's
    outputs are the same, but its two bias tensors are not the ones a `from_torch` started
    from (only their sum is kept; no model can tell them apart).
  Biases, GRU (reset_after=True, torch's): both are kept, `b_x = bias_ih`, `b_h = bias_hh`
    (each [3, h], gates r, z, n), both ways, exactly: the candidate
    n = tanh(W_n x + b_xn + r * (R_n h + b_hn)) multiplies b_hn by the reset gate, so b_hn
    cannot be folded into b_xn.

Weight mapping of torch.nn.MultiheadAttention (E = embed_dim, n heads of k = E / n):
  q_proj.kernel [E, n, k] = q_proj_weight.T (in_proj_weight[:E].T) reshaped, bias [n, k] =
  in_proj_bias[:E]; k_proj, v_proj likewise from the next two thirds (or k_proj_weight /
  v_proj_weight when kdim / vdim differ from E); out_proj.kernel [n, k, E] = out_proj.weight.T,
  bias = out_proj.bias (zeros when torch's bias=False). torch's key_padding_mask (True = pad)
  is `~mask` here.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from flax import nnx

from gatedrnn.cells import GRU, LSTM, ElmanRNN
from gatedrnn.nn.attention import MultiHeadAttention
from gatedrnn.nn.layers import RNN, Bidirectional, Stack
from gatedrnn.nn.blocks import Conv1D
from gatedrnn.nn.params import param_values
from gatedrnn.nn.xlstm import HeadwiseLinear, MLSTMBlock, SLSTMBlock, XLSTMStack

_GATES = {"LSTM": 4, "GRU": 3, "RNN_TANH": 1, "RNN_RELU": 1}


def _torch():
    try:
        import torch
    except ImportError as e:  # pragma: no cover - exercised only without the extra
        raise ImportError("gatedrnn.nn.interop needs PyTorch: pip install -e '.[torch]'") from e
    return torch


def _np(t) -> np.ndarray:
    return t.detach().cpu().float().numpy()


def _cell_for(module, input_size: int):
    mode, h, bias = module.mode, module.hidden_size, module.bias
    if mode == "LSTM":
        return LSTM(input_size, h, bias=bias, proj_size=module.proj_size)
    if mode == "GRU":
        return GRU(input_size, h, bias=bias, reset_after=True)
    return ElmanRNN(input_size, h, bias=bias, nonlinearity="tanh" if mode == "RNN_TANH" else "relu")


def _params_from(module, layer: int, suffix: str, cell) -> dict:
    get = lambda name: _np(getattr(module, f"{name}_l{layer}{suffix}"))  # noqa: E731
    g, h = _GATES[module.mode], module.hidden_size
    w_ih, w_hh = get("weight_ih"), get("weight_hh")
    if g == 1:
        params = {"w": w_ih.T, "r": w_hh.T}
    else:
        params = {"w": w_ih.T.reshape(-1, g, h), "r": w_hh.T.reshape(-1, g, h)}
    if module.bias:
        b_ih, b_hh = get("bias_ih"), get("bias_hh")
        if isinstance(cell, GRU):
            params["b_x"], params["b_h"] = b_ih.reshape(g, h), b_hh.reshape(g, h)
        else:
            params["b"] = (b_ih + b_hh).reshape((g, h) if g > 1 else (h,))
    if getattr(module, "proj_size", 0):
        params["w_proj"] = get("weight_hr").T
    return {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in params.items()}


def _attention_from(module) -> MultiHeadAttention:
    """A `MultiHeadAttention` with a torch.nn.MultiheadAttention's weights (see the module docstring)."""
    if module.bias_k is not None or module.add_zero_attn:
        raise ValueError("from_torch: MultiheadAttention with add_bias_kv=True or add_zero_attn=True has no "
                         "gatedrnn equivalent; valid: add_bias_kv=False, add_zero_attn=False")
    e, n = module.embed_dim, module.num_heads
    k = e // n
    bias = module.in_proj_bias is not None
    attn = MultiHeadAttention(e, module.kdim, n, k, value_size=module.vdim, out_size=e, bias=bias,
                              rngs=nnx.Rngs(0))
    if module.in_proj_weight is not None:
        weights = np.split(_np(module.in_proj_weight), 3, axis=0)
    else:
        weights = [_np(getattr(module, f"{name}_proj_weight")) for name in "qkv"]
    biases = np.split(_np(module.in_proj_bias), 3) if bias else [None] * 3
    for proj, w, b in zip((attn.q_proj, attn.k_proj, attn.v_proj), weights, biases):
        proj.kernel[...] = jnp.asarray(w.T.reshape(-1, n, k))
        if b is not None:
            proj.bias[...] = jnp.asarray(b.reshape(n, k))
    attn.out_proj.kernel[...] = jnp.asarray(_np(module.out_proj.weight).T.reshape(n, k, e))
    out_bias = module.out_proj.bias
    attn.out_proj.bias[...] = jnp.zeros((e,), jnp.float32) if out_bias is None else jnp.asarray(_np(out_bias))
    return attn


def from_torch(module) -> Stack | MultiHeadAttention:
    """A gatedrnn `Stack` with the weights of a `torch.nn.RNN`, `LSTM` or `GRU`, or a
    `MultiHeadAttention` with those of a `torch.nn.MultiheadAttention`.

    RNNs: any num_layers, bidirectional, proj_size, bias and batch_first; the returned layer
    always takes batch-first input [batch, time, features]. Inter-layer dropout carries over
    (active only in `train()` mode, as in torch).

    MultiheadAttention: any embed_dim, num_heads, bias, kdim, vdim and batch_first (ours is
    always batch-first; its weights are torch's with `average_attn_weights=False`, [b, n, q, s]).
    Its attention dropout does not carry over: the result equals torch's module in eval() mode.
    """
    torch = _torch()
    if isinstance(module, torch.nn.MultiheadAttention):
        return _attention_from(module)
    if not isinstance(module, (torch.nn.RNN, torch.nn.LSTM, torch.nn.GRU)):
        raise TypeError(f"from_torch takes torch.nn.RNN, LSTM, GRU or MultiheadAttention, got {type(module).__name__}")
    layers, size = [], module.input_size
    for k in range(module.num_layers):
        cell = _cell_for(module, size)
        fwd = RNN(cell, params=_params_from(module, k, "", cell))
        if module.bidirectional:
            bwd = RNN(cell, params=_params_from(module, k, "_reverse", cell), reverse=True)
            layers.append(Bidirectional(fwd, bwd, merge="concat"))
        else:
            layers.append(fwd)
        size = layers[-1].output_size
    return Stack(layers, dropout=float(module.dropout), rngs=nnx.Rngs(dropout=0) if module.dropout else None)


def _mode_of(cell) -> str:
    if isinstance(cell, LSTM) and cell.gate_names == ("i", "f", "z", "o") and not (
        cell.peephole or cell.layer_norm or not cell.input_activation or not cell.output_activation
    ):
        return "LSTM"
    if isinstance(cell, GRU) and cell.reset_after:
        return "GRU"
    if isinstance(cell, ElmanRNN):
        return "RNN_TANH" if cell.nonlinearity == "tanh" else "RNN_RELU"
    raise ValueError(
        f"to_torch: {cell!r} has no torch equivalent; valid are ElmanRNN, GRU(reset_after=True) "
        "and LSTM with all four gates and activations, without peephole, cifg or layer_norm"
    )


def to_torch(layer):
    """A batch-first `torch.nn.RNN`/`LSTM`/`GRU` with the weights of a gatedrnn layer.

    Takes a `Stack` (as `from_torch` and `build_rnn` return), an `RNN` or a `Bidirectional`,
    whose layers share one torch-expressible cell type and hidden size, with concat merge and
    no residual connections. Biases: an RNN's or LSTM's one bias `b` goes to `bias_ih` and
    `bias_hh` is zero (torch adds the two, so its outputs equal ours exactly); a GRU's `b_x`
    and `b_h` go to `bias_ih` and `bias_hh` as they are (the reset gate multiplies b_hn).
    """
    torch = _torch()
    layers = list(layer.layers) if isinstance(layer, Stack) else [layer]
    if isinstance(layer, Stack) and layer.residual:
        raise ValueError("to_torch: torch RNNs have no residual connections; got Stack(residual=True)")
    bidirectional = isinstance(layers[0], Bidirectional)
    directions = []
    for lyr in layers:
        if isinstance(lyr, Bidirectional) != bidirectional:
            raise ValueError("to_torch: layers must be all bidirectional or all unidirectional")
        if bidirectional:
            if lyr.merge != "concat":
                raise ValueError(f"to_torch: torch merges directions by concat, got merge={lyr.merge!r}")
            directions.append((lyr.forward, lyr.backward))
        else:
            if lyr.reverse:
                raise ValueError("to_torch: a lone reversed RNN has no torch equivalent")
            directions.append((lyr,))
    first = directions[0][0].cell
    mode = _mode_of(first)
    for dirs in directions:
        for rnn in dirs:
            c = rnn.cell
            if _mode_of(c) != mode or c.hidden_size != first.hidden_size or getattr(c, "bias") != first.bias:
                raise ValueError("to_torch: every layer needs the same cell type, hidden_size and bias")
            if getattr(c, "proj_size", 0) != getattr(first, "proj_size", 0):
                raise ValueError("to_torch: every layer needs the same proj_size")
    kwargs = dict(
        input_size=first.input_size,
        hidden_size=first.hidden_size,
        num_layers=len(layers),
        bias=first.bias,
        batch_first=True,
        dropout=layer.dropout_rate if isinstance(layer, Stack) else 0.0,
        bidirectional=bidirectional,
    )
    if mode == "LSTM":
        module = torch.nn.LSTM(proj_size=first.proj_size, **kwargs)
    elif mode == "GRU":
        module = torch.nn.GRU(**kwargs)
    else:
        module = torch.nn.RNN(nonlinearity="tanh" if mode == "RNN_TANH" else "relu", **kwargs)

    g, h = _GATES[mode], first.hidden_size
    with torch.no_grad():
        for k, dirs in enumerate(directions):
            for rnn, suffix in zip(dirs, ("", "_reverse")):
                p = {name: np.asarray(a, dtype=np.float32) for name, a in param_values(rnn.params).items()}
                tensors = {
                    "weight_ih": p["w"].reshape(p["w"].shape[0], g * h).T,
                    "weight_hh": p["r"].reshape(p["r"].shape[0], g * h).T,
                }
                if first.bias:
                    if mode == "GRU":
                        tensors["bias_ih"], tensors["bias_hh"] = p["b_x"].reshape(-1), p["b_h"].reshape(-1)
                    else:
                        tensors["bias_ih"], tensors["bias_hh"] = p["b"].reshape(-1), np.zeros(g * h, np.float32)
                if "w_proj" in p:
                    tensors["weight_hr"] = p["w_proj"].T
                for name, value in tensors.items():
                    getattr(module, f"{name}_l{k}{suffix}").copy_(torch.tensor(np.array(value, np.float32)))
    return module


# --- NX-AI's official xLSTM blocks (PyTorch) -> ours ---------------------------------------------------------------


def _array(value) -> np.ndarray:
    """A torch tensor (without importing torch) or any array -> numpy."""
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    return np.asarray(value)


def _set(param: nnx.Variable, value, name: str) -> None:
    value = _array(value)
    if tuple(value.shape) != tuple(param.shape):
        raise ValueError(f"load_official: {name} has shape {tuple(value.shape)}, expected {tuple(param.shape)}")
    param[...] = jnp.asarray(value, param.dtype)


def _load_linear(linear: nnx.Linear, state: dict, name: str) -> None:
    _set(linear.kernel, _array(state[f"{name}.weight"]).T, f"{name}.weight")
    if linear.bias is not None:
        _set(linear.bias, state[f"{name}.bias"], f"{name}.bias")


def _load_headwise(linear: HeadwiseLinear, state: dict, name: str) -> None:
    _set(linear.weight, state[f"{name}.weight"], f"{name}.weight")
    if linear.bias is not None:
        _set(linear.bias, state[f"{name}.bias"], f"{name}.bias")


def _load_conv(conv: Conv1D | None, state: dict, name: str) -> None:
    if conv is None:
        return
    _set(conv.w, _array(state[f"{name}.conv.weight"])[:, 0, :].T, f"{name}.conv.weight")  # [C, 1, k] -> [k, C]
    _set(conv.b, state[f"{name}.conv.bias"], f"{name}.conv.bias")


def _load_mlstm(block: MLSTMBlock, state: dict, p: str) -> None:
    _set(block.xlstm_norm.weight, state[p + "xlstm_norm.weight"], p + "xlstm_norm.weight")
    p += "xlstm."
    _load_linear(block.proj_up, state, p + "proj_up")
    _load_conv(block.conv1d, state, p + "conv1d")
    for name in ("q_proj", "k_proj", "v_proj"):
        _load_headwise(getattr(block, name), state, p + name)
    params = block.rnn.params
    for gate in ("i", "f"):
        name = f"{p}mlstm_cell.{gate}gate"
        _set(params[f"w_{gate}"], _array(state[name + ".weight"]).T, name + ".weight")
        _set(params[f"b_{gate}"], state[name + ".bias"], name + ".bias")
    _set(block.outnorm.weight, state[p + "mlstm_cell.outnorm.weight"], p + "mlstm_cell.outnorm.weight")
    _set(block.learnable_skip, state[p + "learnable_skip"], p + "learnable_skip")
    _load_linear(block.proj_down, state, p + "proj_down")


def _slstm_external(cell, kernel: np.ndarray, bias: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The official sLSTM cell's internal `_recurrent_kernel_` / `_bias_` -> the external layout
    gatedrnn's SLSTM keeps (r [n, k, 4, k], b [n, 4, k]): the vanilla backend's [n, 4 k, k] and
    gate-major bias, or the CUDA backend's [n, k, 4 k] and head-major bias (told apart by the kernel)."""
    n, k = cell.num_heads, cell.head_size
    if kernel.shape == (n, 4 * k, k):  # vanilla (for k = 1 both layouts agree)
        return kernel.reshape(n, 4, k, k).transpose(0, 3, 1, 2), bias.reshape(4, n, k).transpose(1, 0, 2)
    if kernel.shape == (n, k, 4 * k):  # cuda
        return kernel.reshape(n, k, 4, k), bias.reshape(n, 4, k)
    raise ValueError(f"load_official: slstm_cell._recurrent_kernel_ has shape {kernel.shape}, expected "
                     f"{(n, 4 * k, k)} (vanilla) or {(n, k, 4 * k)} (cuda)")


def _load_slstm(block: SLSTMBlock, state: dict, p: str) -> None:
    _set(block.xlstm_norm.weight, state[p + "xlstm_norm.weight"], p + "xlstm_norm.weight")
    q = p + "xlstm."
    _load_conv(block.conv1d, state, q + "conv1d")
    # the official layer: i, f, z, o = fgate(x_conv), igate(x_conv), zgate(x), ogate(x)
    for mine, theirs in (("igate", "fgate"), ("fgate", "igate"), ("zgate", "zgate"), ("ogate", "ogate")):
        _load_headwise(getattr(block, mine), state, q + theirs)
    kernel, bias = _slstm_external(block.rnn.cell, _array(state[q + "slstm_cell._recurrent_kernel_"]),
                                   _array(state[q + "slstm_cell._bias_"]))
    _set(block.rnn.params["r"], kernel, q + "slstm_cell._recurrent_kernel_")
    _set(block.rnn.params["b"], bias, q + "slstm_cell._bias_")
    _set(block.group_norm.weight, state[q + "group_norm.weight"], q + "group_norm.weight")
    if block.ffn is not None:
        _set(block.ffn_norm.weight, state[p + "ffn_norm.weight"], p + "ffn_norm.weight")
        _load_linear(block.ffn.proj_up, state, p + "ffn.proj_up")
        _load_linear(block.ffn.proj_down, state, p + "ffn.proj_down")


def load_official(module: MLSTMBlock | SLSTMBlock | XLSTMStack, state_dict: dict, prefix: str = "") -> None:
    """Copies an official module's weights into `module`, in place: `state_dict` is the
    `state_dict()` of an `mLSTMBlock`, an `sLSTMBlock` (backend "vanilla": the sLSTM cell's
    `_recurrent_kernel_` [H, 4 dh, dh] and `_bias_` [4 w] in its internal layout) or an
    `xLSTMBlockStack` (keys `blocks.<k>.` and `post_blocks_norm.weight`), as torch tensors or
    arrays; `prefix` is prepended to every key. A block with an `input_proj` (input_size !=
    width, which the official blocks have not) keeps its own."""
    if isinstance(module, XLSTMStack):
        for k, block in enumerate(module.blocks):
            load_official(block, state_dict, f"{prefix}blocks.{k}.")
        if module.post_blocks_norm is not None:
            name = prefix + "post_blocks_norm.weight"
            _set(module.post_blocks_norm.weight, state_dict[name], name)
    elif isinstance(module, MLSTMBlock):
        _load_mlstm(module, state_dict, prefix)
    elif isinstance(module, SLSTMBlock):
        _load_slstm(module, state_dict, prefix)
    else:
        raise TypeError(f"load_official takes an MLSTMBlock, SLSTMBlock or XLSTMStack, got {type(module).__name__}")
