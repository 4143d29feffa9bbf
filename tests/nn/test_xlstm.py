"""The xLSTM blocks (gatedrnn.nn.xlstm) against NX-AI's official PyTorch blocks with copied weights
(mLSTM block with its pure-torch parallel backend, sLSTM block with backend="vanilla", the block
stack), their pieces, and the layer protocol: padding, resets, reverse, carries, the mLSTM's three
forms, the m:s placement, config errors and training through `experiments.train`."""

import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from conftest import xlstm_or_skip
from gatedrnn import ScanOptions, build_rnn, flip_sequences
from gatedrnn.cells.mlstm import MLSTM
from gatedrnn.cells.slstm import SLSTM
from gatedrnn.nn.blocks import BLOCKS, make_block
from gatedrnn.nn.interop import load_official
from gatedrnn.nn.xlstm import (
    GatedFeedForward,
    HeadwiseLinear,
    MLSTMBlock,
    MultiHeadLayerNorm,
    SLSTMBlock,
    XLSTMStack,
    _causal_conv,
    slstm_positions,
    up_projection_size,
)
from gatedrnn.validation import ConfigError

from paths import REPO

B, T, W = 3, 9, 16
LENGTHS = jnp.array([9, 4, 6])
VALID = (jnp.arange(T)[None, :] < LENGTHS[:, None])[..., None]
RESETS = jnp.zeros((B, T), bool).at[0, 3].set(True).at[0, 4].set(True).at[0, 7].set(True).at[2, 5].set(True)
X = jax.random.normal(jax.random.key(3), (B, T, W))


def _close(got, want, atol=1e-5, rtol=1e-5, **kw):
    jax.tree.map(lambda g, w: np.testing.assert_allclose(np.asarray(g), np.asarray(w), atol=atol, rtol=rtol, **kw),
                 got, want)


def _perturb(module, seed=5, scale=0.2):
    """Noise on every param, so that no zero-initialised weight (norms, gates, R) hides a term."""
    state = nnx.state(module, nnx.Param)
    leaves, treedef = jax.tree.flatten(state)
    keys = jax.random.split(jax.random.key(seed), len(leaves))
    nnx.update(module, jax.tree.unflatten(treedef, [p + scale * jax.random.normal(k, p.shape, p.dtype)
                                                    for p, k in zip(leaves, keys)]))
    return module


def _mlstm(scan=None, **kw):
    return _perturb(MLSTMBlock(W, W, rngs=nnx.Rngs(0), num_heads=2, scan=scan, **kw))


def _slstm(**kw):
    return _perturb(SLSTMBlock(W, W, rngs=nnx.Rngs(1), num_heads=2, **kw))


def _stack(**kw):
    return _perturb(XLSTMStack(W, W, rngs=nnx.Rngs(2), num_blocks=2, ratio="1:1", num_heads=2, **kw))


BUILDERS = {"mlstm": _mlstm, "slstm": _slstm, "xlstm": _stack}


# --- the official PyTorch modules -----------------------------------------------------------------


def _torch_perturbed(module, seed=0, scale=0.3):
    import torch

    torch.manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(scale * torch.randn_like(p))
    return module


def _official(kind, *, num_heads=2, conv=4, feedforward=True, seed=0):
    """An official mLSTMBlock / sLSTMBlock / xLSTMBlockStack [1:1] of width W, float32, weights perturbed."""
    xlstm_or_skip()
    import torch
    from xlstm.blocks.mlstm.block import mLSTMBlock, mLSTMBlockConfig
    from xlstm.blocks.mlstm.layer import mLSTMLayerConfig
    from xlstm.blocks.slstm.block import sLSTMBlock, sLSTMBlockConfig
    from xlstm.blocks.slstm.layer import sLSTMLayerConfig
    from xlstm.components.feedforward import FeedForwardConfig
    from xlstm.xlstm_block_stack import xLSTMBlockStack, xLSTMBlockStackConfig

    torch.manual_seed(seed)
    m = lambda: mLSTMLayerConfig(embedding_dim=W, context_length=T, num_heads=num_heads,  # noqa: E731
                                 conv1d_kernel_size=conv)
    s = lambda: sLSTMLayerConfig(embedding_dim=W, num_heads=num_heads, conv1d_kernel_size=conv,  # noqa: E731
                                 backend="vanilla", dtype="float32")
    ff = FeedForwardConfig() if feedforward else None
    if kind == "mlstm":
        module = mLSTMBlock(mLSTMBlockConfig(mlstm=m(), _num_blocks=1, _block_idx=0))
    elif kind == "slstm":
        module = sLSTMBlock(sLSTMBlockConfig(slstm=s(), feedforward=ff, _num_blocks=1, _block_idx=0))
    else:
        module = xLSTMBlockStack(xLSTMBlockStackConfig(
            mlstm_block=mLSTMBlockConfig(mlstm=mLSTMLayerConfig(num_heads=num_heads)),
            slstm_block=sLSTMBlockConfig(slstm=sLSTMLayerConfig(num_heads=num_heads, backend="vanilla",
                                                                dtype="float32"), feedforward=FeedForwardConfig()),
            context_length=T, num_blocks=2, embedding_dim=W, slstm_at=[1]))
    return _torch_perturbed(module, seed)


def _torch_run(module, x, ct):
    """(outputs, d sum(outputs * ct) / dx) of a torch module, as numpy."""
    import torch

    xt = torch.tensor(np.asarray(x), requires_grad=True)
    y = module(xt)
    (y * torch.tensor(np.asarray(ct))).sum().backward()
    return y.detach().numpy(), xt.grad.numpy()


@nnx.jit
def _jax_run(block, x, ct):
    def loss(x):
        y, _ = block(x)
        return jnp.sum(y * ct), y

    (_, y), dx = jax.value_and_grad(loss, has_aux=True)(x)
    return y, dx


@pytest.mark.torch
@pytest.mark.parametrize("mode", [pytest.param("sequential", marks=pytest.mark.slow),
                                  pytest.param("parallel", marks=pytest.mark.slow), "chunkwise"])
def test_mlstm_block_equals_the_official_block_with_copied_weights(mode):
    official = _official("mlstm")
    block = MLSTMBlock(W, W, rngs=nnx.Rngs(0), num_heads=2, scan=ScanOptions(mode=mode, parallel_chunk=4))
    load_official(block, official.state_dict())
    ct = jax.random.normal(jax.random.key(1), X.shape)
    want, want_dx = _torch_run(official, X, ct)
    got, dx = _jax_run(block, X, ct)
    assert np.abs(want).max() > 0.5  # no term vanished
    _close(got, want, atol=5e-5, rtol=1e-4)
    _close(dx, want_dx, atol=5e-5, rtol=1e-4)


@pytest.mark.torch
@pytest.mark.parametrize("conv, feedforward", [(4, True), (0, False), pytest.param(2, True, marks=pytest.mark.slow)])
def test_slstm_block_equals_the_official_vanilla_block_with_copied_weights(conv, feedforward):
    official = _official("slstm", conv=conv, feedforward=feedforward)
    block = SLSTMBlock(W, W, rngs=nnx.Rngs(0), num_heads=2, conv_width=conv, ff_proj_factor=1.3 if feedforward else 0)
    load_official(block, official.state_dict())
    assert (block.conv1d is None) == (conv == 0) and (block.ffn is None) == (not feedforward)
    ct = jax.random.normal(jax.random.key(1), X.shape)
    want, want_dx = _torch_run(official, X, ct)
    got, dx = _jax_run(block, X, ct)
    assert np.abs(want).max() > 0.5
    _close(got, want, atol=5e-5, rtol=1e-4)
    _close(dx, want_dx, atol=5e-5, rtol=1e-4)


@pytest.mark.torch
def test_load_official_reads_the_cuda_backends_slstm_layout_too():
    """A CUDA-trained sLSTM block's state_dict keeps the cell's kernel [n, k, 4 k] and a head-major bias;
    converted from the vanilla one (no GPU needed: the CUDA cell's layout maps only), it loads the same."""
    import dataclasses as dc

    from xlstm.blocks.slstm.cell import sLSTMCell_cuda

    official = _official("slstm")
    vanilla = official.xlstm.slstm_cell
    cuda = sLSTMCell_cuda(dc.replace(vanilla.config, backend="cuda"), skip_backend_init=True)
    state = dict(official.state_dict())
    kernel, bias = vanilla.recurrent_kernel[:], vanilla.bias[:]  # the external layout
    state["xlstm.slstm_cell._recurrent_kernel_"] = cuda._recurrent_kernel_ext2int(kernel)
    state["xlstm.slstm_cell._bias_"] = cuda._bias_ext2int(bias)
    assert tuple(state["xlstm.slstm_cell._recurrent_kernel_"].shape) == (2, 8, 32)
    blocks = [SLSTMBlock(W, W, rngs=nnx.Rngs(0), num_heads=2) for _ in range(2)]
    load_official(blocks[0], official.state_dict())
    load_official(blocks[1], state)
    _close(nnx.to_pure_dict(nnx.state(blocks[1])), nnx.to_pure_dict(nnx.state(blocks[0])), atol=0, rtol=0)
    np.testing.assert_array_equal(blocks[0].rnn.params["r"][...], kernel.numpy())
    np.testing.assert_array_equal(blocks[0].rnn.params["b"][...], bias.numpy())


@pytest.mark.torch
def test_stack_equals_the_official_xlstm_block_stack_1_1():
    official = _official("xlstm")
    stack = XLSTMStack(W, W, rngs=nnx.Rngs(0), num_blocks=2, ratio="1:1", num_heads=2)
    assert stack.slstm_at == (1,)
    assert [type(b).__name__ for b in stack.blocks] == ["MLSTMBlock", "SLSTMBlock"]
    load_official(stack, official.state_dict())
    ct = jax.random.normal(jax.random.key(1), X.shape)
    want, want_dx = _torch_run(official, X, ct)
    got, dx = _jax_run(stack, X, ct)
    _close(got, want, atol=5e-5, rtol=1e-4)
    _close(dx, want_dx, atol=5e-5, rtol=1e-4)


@pytest.mark.torch
def test_pieces_equal_the_official_components():
    xlstm_or_skip()
    import torch
    from xlstm.components.conv import CausalConv1d, CausalConv1dConfig
    from xlstm.components.feedforward import FeedForwardConfig, GatedFeedForward as TorchFFN
    from xlstm.components.linear_headwise import LinearHeadwiseExpand, LinearHeadwiseExpandConfig
    from xlstm.components.ln import LayerNorm as TorchLN, MultiHeadLayerNorm as TorchMHLN

    x = np.asarray(X)
    xt = torch.tensor(x)
    lin = _torch_perturbed(LinearHeadwiseExpand(LinearHeadwiseExpandConfig(in_features=W, num_heads=4, bias=True)))
    mine = HeadwiseLinear(W, 4, rngs=nnx.Rngs(0), bias=True)
    mine.weight[...], mine.bias[...] = lin.weight.detach().numpy(), lin.bias.detach().numpy()
    _close(mine(X), lin(xt).detach().numpy())

    ln, mhln = _torch_perturbed(TorchLN(ndim=W)), _torch_perturbed(TorchMHLN(ndim=W), seed=1)
    for theirs, heads, got_in in ((ln, 1, xt), (mhln, 4, xt.view(B, T, 4, 4).transpose(1, 2))):
        norm = MultiHeadLayerNorm(W, heads)
        norm.weight[...] = theirs.weight.detach().numpy()
        want = theirs(got_in)
        want = want if heads == 1 else want.transpose(1, 2).reshape(B, T, W)
        _close(norm(X), want.detach().numpy())

    ffn = _torch_perturbed(TorchFFN(FeedForwardConfig(embedding_dim=W)))
    mine = GatedFeedForward(W, rngs=nnx.Rngs(0))
    assert mine.expanded == ffn.config._proj_up_dim == 64
    mine.proj_up.kernel[...] = ffn.proj_up.weight.detach().numpy().T
    mine.proj_down.kernel[...] = ffn.proj_down.weight.detach().numpy().T
    _close(mine(X), ffn(xt).detach().numpy())

    conv = _torch_perturbed(CausalConv1d(CausalConv1dConfig(feature_dim=W, kernel_size=4)))
    mine = _causal_conv(W, 4, rngs=nnx.Rngs(0), param_dtype=jnp.float32)
    mine.w[...], mine.b[...] = conv.conv.weight.detach().numpy()[:, 0, :].T, conv.conv.bias.detach().numpy()
    _close(mine(X)[0], conv(xt).detach().numpy())


def test_up_projection_rounds_up_to_a_multiple_as_the_official_mixin():
    assert [up_projection_size(w, 2.0) for w in (16, 32, 48, 64)] == [64, 64, 128, 128]
    assert [up_projection_size(w, 1.3) for w in (16, 64, 100)] == [64, 128, 192]
    assert up_projection_size(10, 2.0, 1) == 20
    block = MLSTMBlock(48, 48, rngs=nnx.Rngs(0))
    assert (block.inner, block.num_heads, block.rnn.cell.num_heads, block.q_proj.weight.shape) == (128, 4, 4,
                                                                                                  (32, 4, 4))


def test_conv_init_is_torch_default_uniform_and_xlstm_init_as_official():
    block = MLSTMBlock(32, 32, rngs=nnx.Rngs(0), num_blocks=4)
    w = np.asarray(block.conv1d.w[...])
    assert np.abs(w).max() <= 0.5 and w.std() > 0.2  # U(-1/2, 1/2) for k = 4: std 0.289
    np.testing.assert_array_equal(block.learnable_skip[...], 1.0)
    np.testing.assert_array_equal(block.outnorm.weight[...], 0.0)
    assert abs(np.asarray(block.proj_down.kernel[...]).std() - 2 / 4 / np.sqrt(32)) < 0.01  # wang init
    assert abs(np.asarray(block.proj_up.kernel[...]).std() - np.sqrt(2 / (5 * 32))) < 0.01  # small init
    stack = XLSTMStack(16, 16, rngs=nnx.Rngs(0), num_blocks=4, slstm_at=[0, 3])
    first, last = stack.blocks[0].rnn.cell, stack.blocks[3].rnn.cell
    assert (first.block_index, first.num_blocks, last.block_index) == (0, 4, 3)  # the forget-bias ramp's depth


# --- the layer protocol ---------------------------------------------------------------------------


@nnx.jit
def _run(block, x, lengths=None, carry=None, resets=None):
    return block(x, seq_lengths=lengths, initial_carry=carry, resets=resets)


def _segments(x, resets, lengths):
    """Every segment of every row as the rows of one padded batch: (xs, lengths, where), where[i] = (row, s, e)."""
    x, resets = np.asarray(x), np.asarray(resets)
    where = []
    for b, n in enumerate(np.asarray(lengths)):
        starts = [t for t in range(n) if t == 0 or resets[b, t]]
        where += [(b, s, e) for s, e in zip(starts, starts[1:] + [n])]
    xs = np.zeros((len(where),) + x.shape[1:], x.dtype)
    for i, (b, s, e) in enumerate(where):
        xs[i, :e - s] = x[b, s:e]
    return jnp.asarray(xs), jnp.array([e - s for _, s, e in where]), where


@pytest.mark.parametrize("name", ["mlstm", pytest.param("slstm", marks=pytest.mark.slow),
                                  pytest.param("xlstm", marks=pytest.mark.slow)])
def test_padding_changes_no_valid_output_and_each_row_equals_it_run_alone(name):
    block = BUILDERS[name]()
    y, carry = _run(block, jnp.where(VALID, X, jnp.nan), LENGTHS)
    np.testing.assert_array_equal(jnp.where(VALID, 0.0, y), 0.0)
    for b, n in enumerate(np.asarray(LENGTHS)):
        alone, c = _run(block, X[b:b + 1, :n])
        _close(y[b:b + 1, :n], alone, atol=2e-5)
        _close(jax.tree.map(lambda a: a[b:b + 1], carry), c, atol=2e-5)
    if name == "mlstm":  # and no gradient sees the padding
        ct = jax.random.normal(jax.random.key(2), y.shape)
        grad = nnx.jit(nnx.grad(lambda m, x: jnp.sum(m(x, seq_lengths=LENGTHS)[0] * ct), argnums=(0, 1)))
        g_nan, gx_nan = grad(block, jnp.where(VALID, X, jnp.nan))
        g_zero, _ = grad(block, jnp.where(VALID, X, 0.0))
        assert all(np.isfinite(a).all() for a in jax.tree.leaves(g_nan))
        _close(nnx.to_pure_dict(g_nan), nnx.to_pure_dict(g_zero), atol=1e-6)
        np.testing.assert_array_equal(jnp.where(VALID, 0.0, gx_nan), 0.0)


@pytest.mark.parametrize("name", ["mlstm", "slstm", pytest.param("xlstm", marks=pytest.mark.slow)])
def test_resets_make_every_segment_run_as_if_alone(name):
    block = BUILDERS[name]()
    y, _ = _run(block, X, LENGTHS, None, RESETS)
    xs, lengths, where = _segments(X, RESETS, LENGTHS)
    assert len(where) == 7
    alone, _ = _run(block, xs, lengths)  # each segment from a zero carry (padding: the test above)
    for i, (b, s, e) in enumerate(where):
        _close(y[b, s:e], alone[i, :e - s], atol=2e-5, err_msg=f"row {b} segment {s}:{e}")


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_reverse_is_the_forward_block_on_each_sequence_flipped_within_its_length(name):
    block = BUILDERS[name]()
    backward = nnx.clone(block)
    backward.reverse = True
    y, _ = _run(backward, X, LENGTHS)
    y_f, _ = _run(block, flip_sequences(X, LENGTHS), LENGTHS)
    _close(y, flip_sequences(y_f, LENGTHS), atol=1e-5)


@pytest.mark.parametrize("name", ["mlstm", "slstm", pytest.param("xlstm", marks=pytest.mark.slow)])
def test_chunks_run_one_after_another_from_the_carry_equal_one_pass(name):
    block = BUILDERS[name]()
    y, carry = _run(block, X, None, None, RESETS)
    y1, c1 = _run(block, X[:, :4], None, None, RESETS[:, :4])
    y2, c2 = _run(block, X[:, 4:], None, c1, RESETS[:, 4:])
    _close(jnp.concatenate([y1, y2], axis=1), y, atol=2e-5)
    _close(c2, carry, atol=2e-5)


def test_mlstm_block_modes_agree_with_lengths_resets_and_a_carry():
    runs = {}
    for mode in ("sequential", "parallel", "chunkwise"):
        block = _mlstm(scan=ScanOptions(mode=mode, parallel_chunk=4))
        _, c0 = _run(block, X[:, :3])
        runs[mode] = _run(block, X, LENGTHS, c0, RESETS)
    for mode in ("parallel", "chunkwise"):
        _close(runs[mode], runs["sequential"], atol=2e-5, err_msg=mode)


def test_stack_runs_slstm_blocks_sequentially_under_a_parallel_mode():
    stack = XLSTMStack(W, W, rngs=nnx.Rngs(0), num_blocks=2, slstm_at=[1], num_heads=2,
                       scan=ScanOptions(mode="parallel"))
    assert stack.blocks[0].scan.mode == "parallel" and stack.blocks[1].scan.mode == "auto"
    seq = nnx.clone(stack)
    seq.blocks[0].scan = seq.blocks[0].rnn.scan = ScanOptions(mode="sequential")
    _close(_run(stack, X, LENGTHS), _run(seq, X, LENGTHS), atol=2e-5)


def test_input_projection_and_bfloat16_compute():
    block = _perturb(MLSTMBlock(5, W, rngs=nnx.Rngs(0), num_heads=2))
    x = X[..., :5]
    y, _ = _run(block, x, LENGTHS)
    assert y.shape == (B, T, W) and block.input_proj is not None
    h = block.input_proj(x)  # the residual is taken after the projection
    same = nnx.clone(block)
    same.proj_down.kernel[...] = jnp.zeros_like(same.proj_down.kernel[...])
    _close(jnp.where(VALID, _run(same, x, LENGTHS)[0], 0), jnp.where(VALID, h, 0), atol=1e-6)
    for name in ("mlstm", "slstm"):
        f32 = BUILDERS[name]()
        b16 = BUILDERS[name](**{"dtype": jnp.bfloat16})
        nnx.update(b16, nnx.state(f32, nnx.Param))
        y16, _ = _run(b16, X, LENGTHS)
        assert y16.dtype == jnp.bfloat16 and all(p.dtype == jnp.float32 for p in jax.tree.leaves(nnx.state(b16)))
        _close(y16.astype(jnp.float32), _run(f32, X, LENGTHS)[0], atol=0.15, rtol=0.05)


@pytest.mark.slow  # every init op compiles anew for each dtype
def test_param_dtype_reaches_every_parameter():
    dtypes = lambda m: {p.dtype for p in jax.tree.leaves(nnx.state(m, nnx.Param))}  # noqa: E731
    build = lambda **kw: XLSTMStack(8, 8, rngs=nnx.Rngs(0), num_blocks=2, ratio="1:1", num_heads=2, **kw)  # noqa: E731
    assert dtypes(build()) == {jnp.dtype(jnp.float32)}
    assert dtypes(build(param_dtype=jnp.bfloat16)) == {jnp.dtype(jnp.bfloat16)}
    with jax.enable_x64():
        assert dtypes(build()) == {jnp.dtype(jnp.float64)}  # None: jnp.zeros' default under x64


# --- placement, registry, configs -----------------------------------------------------------------


def test_slstm_positions_follow_slstm_at_and_spread_a_ratio_evenly():
    assert slstm_positions(8, ratio="7:1") == (7,)
    assert slstm_positions(4, ratio="1:1") == (1, 3)
    assert slstm_positions(8, ratio="3:1") == (3, 7)
    assert slstm_positions(6, ratio="1:2") == (0, 2, 3, 5)  # 4 of 6: floor((j + 1) 6 / 4) - 1
    assert slstm_positions(3, ratio="1:0") == () and slstm_positions(3, ratio="0:1") == (0, 1, 2)
    assert slstm_positions(4) == () and slstm_positions(4, slstm_at="all") == (0, 1, 2, 3)
    assert slstm_positions(4, slstm_at=[2, 0]) == (0, 2)
    for kwargs, match in [({"ratio": "7:1", "slstm_at": [1]}, "not both"), ({"ratio": "7-1"}, "'m:s'"),
                          ({"ratio": "7:1"}, "multiple of 8"), ({"slstm_at": [4]}, r"\[0, 4\)"),
                          ({"slstm_at": "some"}, "'all'")]:
        with pytest.raises(ConfigError, match=match):
            slstm_positions(4, **kwargs)


def test_build_rnn_xlstm_is_one_layer_of_num_layers_blocks_with_the_cell_options_shared():
    rnn = build_rnn("slstm", 3, W, num_layers=4, block="xlstm", block_options={"ratio": "1:1", "conv_width": 2},
                    rngs=nnx.Rngs(0), num_heads=2, forget_gate="exp")
    (stack,) = rnn.layers
    assert [type(b).__name__ for b in stack.blocks] == ["MLSTMBlock", "SLSTMBlock"] * 2
    assert {b.rnn.cell.num_heads for b in stack.blocks} == {2}
    assert {b.rnn.cell.forget_gate for b in stack.blocks} == {"exp"}
    assert {b.conv1d.temporal_width for b in stack.blocks} == {2}
    y, carry = _run(rnn, X[..., :3], LENGTHS)
    assert y.shape == (B, T, W) and len(carry[0]) == 4
    bi = build_rnn("mlstm", 3, 8, num_layers=1, block="xlstm", bidirectional=True, rngs=nnx.Rngs(0), num_heads=2)
    forward, backward = bi.layers[0].forward, bi.layers[0].backward
    assert isinstance(forward, XLSTMStack) and backward.reverse and not forward.reverse
    assert bi.output_size == 16


def test_make_block_builds_each_xlstm_block_and_refuses_bad_combinations():
    assert {"mlstm", "slstm", "xlstm"} <= set(BLOCKS)
    assert isinstance(make_block("mlstm", MLSTM(W, W, num_heads=2), 5, W, rngs=nnx.Rngs(0)), MLSTMBlock)
    assert isinstance(make_block("slstm", SLSTM(W, W, num_heads=2), 5, W, rngs=nnx.Rngs(0)), SLSTMBlock)
    stack = make_block("xlstm", MLSTM(W, W, num_heads=2), 5, W, rngs=nnx.Rngs(0), num_blocks=2, slstm_at=[0])
    assert [type(b).__name__ for b in stack.blocks] == ["SLSTMBlock", "MLSTMBlock"]
    bad = [
        (lambda: build_rnn("lstm", 3, W, block="mlstm", rngs=nnx.Rngs(0)), "needs an MLSTM cell"),
        (lambda: build_rnn("lstm", 3, W, block="xlstm", rngs=nnx.Rngs(0)), "model.cell='mlstm' or 'slstm'"),
        (lambda: build_rnn("mlstm", 3, W, block="xlstm", residual=True, rngs=nnx.Rngs(0)), "model.residual"),
        (lambda: build_rnn("mlstm", 3, W, block="xlstm", dropout=0.1, rngs=nnx.Rngs(0)), "model.dropout"),
        (lambda: build_rnn("mlstm", 3, W, block="xlstm", block_options={"num_blocks": 2}, rngs=nnx.Rngs(0)),
         "model.num_layers"),
        (lambda: build_rnn("mlstm", 3, W, block="xlstm", block_options={"mlp_expansion": 2}, rngs=nnx.Rngs(0)),
         "block_options.mlp_expansion"),
        (lambda: build_rnn("mlstm", 3, W, block="xlstm", rngs=nnx.Rngs(0), peephole=True),
         "cell_options.peephole"),
        (lambda: build_rnn("slstm", 3, W, block="slstm", block_options={"qkv_blocksize": 2}, rngs=nnx.Rngs(0)),
         "block_options.qkv_blocksize"),
        (lambda: MLSTMBlock(W, W, rngs=nnx.Rngs(0), qkv_blocksize=3), "qkv_blocksize=3"),
        (lambda: SLSTMBlock(W, W, rngs=nnx.Rngs(0), num_heads=3), "num_heads=3"),
    ]
    for build, match in bad:
        with pytest.raises(ConfigError, match=match):
            build()


@pytest.mark.slow
def test_training_smoke_through_experiments_train_with_the_xlstm_stack(tmp_path):
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""),
               XLA_FLAGS="--xla_force_host_platform_device_count=1")
    result = subprocess.run(
        [sys.executable, "-m", "experiments.train", "--config=configs/parity.py:smoke", f"--workdir={tmp_path}",
         "--config.model.cell=mlstm", "--config.model.block=xlstm", "--config.model.num_layers=2",
         "--config.model.block_options={'ratio': '1:1', 'num_heads': 2}"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "final: eval_accuracy" in result.stdout
    from gatedrnn.train.metrics import read_metrics

    losses = [m["loss"] for m in read_metrics(str(tmp_path / "metrics.jsonl")) if "loss" in m]
    assert len(losses) >= 8 and np.isfinite(losses).all()


@pytest.mark.slow
@pytest.mark.parametrize("cell", ["mlstm", "slstm"])
def test_config_path_trains_each_block(cell, tmp_path):
    import runpy

    from gatedrnn.train import train_and_evaluate
    from gatedrnn.train.metrics import read_metrics

    config = runpy.run_path(os.path.join(REPO, "configs", "parity.py"))["get_config"]("smoke")
    config.model.cell, config.model.block = cell, cell
    config.model.cell_options = {"num_heads": 2}
    config.train.num_steps = 10
    config.eval.every_steps = 10
    train_and_evaluate(config, str(tmp_path))
    losses = [m["loss"] for m in read_metrics(str(tmp_path / "metrics.jsonl")) if "loss" in m]
    assert losses and np.isfinite(losses).all()
