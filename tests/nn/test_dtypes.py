"""param_dtype and dtype on every module of gatedrnn.nn that creates parameters.

param_dtype=None is the default float dtype (jnp.zeros'): float32, float64 under jax_enable_x64;
an explicit one is used whatever x64 says; dtype is the compute dtype (params stay in param_dtype).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from gatedrnn.cells import make_cell
from gatedrnn.nn.attention import make_attention
from gatedrnn.nn.blocks import Conv1D, GatedMLP, LayerNorm, RMSNorm, make_block
from gatedrnn.nn.ctc import CTCModel
from gatedrnn.nn.encoder import SequenceEncoder, carry_bridge
from gatedrnn.nn.heads import AttentionPool, SequenceClassifier, SequenceRegressor, Tagger
from gatedrnn.nn.layers import RNN, build_rnn
from gatedrnn.nn.lm import LanguageModel, OneToMany
from gatedrnn.nn.seq2seq import Seq2Seq

BUILDERS = {
    "RNN": lambda **kw: RNN(make_cell("lstm", 3, 4), rngs=nnx.Rngs(0), **kw),
    "build_rnn": lambda **kw: build_rnn("gru", 3, 4, num_layers=2, bidirectional=True, rngs=nnx.Rngs(0), **kw),
    "hawk": lambda **kw: make_block("hawk", make_cell("rglru", 4, 4), 3, 4, rngs=nnx.Rngs(0), **kw),
    "griffin": lambda **kw: make_block("griffin", make_cell("rglru", 4, 4), 3, 4, rngs=nnx.Rngs(0), **kw),
    "min": lambda **kw: make_block("min", make_cell("mingru", 4, 4), 3, 4, rngs=nnx.Rngs(0), **kw),
    "lru": lambda **kw: make_block("lru", make_cell("lru", 4, 4), 3, 4, rngs=nnx.Rngs(0), **kw),
    "RMSNorm": lambda **kw: RMSNorm(4, **kw),
    "LayerNorm": lambda **kw: LayerNorm(4, **kw),
    "Conv1D": lambda **kw: Conv1D(4, rngs=nnx.Rngs(0), **kw),
    "GatedMLP": lambda **kw: GatedMLP(4, 6, rngs=nnx.Rngs(0), **kw),
    "additive": lambda **kw: make_attention("additive", 4, 6, rngs=nnx.Rngs(0), **kw),
    "concat": lambda **kw: make_attention("concat", 4, 6, rngs=nnx.Rngs(0), **kw),
    "multihead": lambda **kw: make_attention("multihead", 4, 6, rngs=nnx.Rngs(0), **kw),
    "SequenceEncoder": lambda **kw: SequenceEncoder("lstm", 4, vocab_size=5, rngs=nnx.Rngs(0), **kw),
    "carry_bridge": lambda **kw: carry_bridge([jnp.zeros((1, 4))], 3, rngs=nnx.Rngs(0), **kw),
    "AttentionPool": lambda **kw: AttentionPool(4, rngs=nnx.Rngs(0), **kw),
    "SequenceClassifier": lambda **kw: SequenceClassifier("gru", 4, 3, input_size=2, pooling="attention",
                                                          rngs=nnx.Rngs(0), **kw),
    "SequenceRegressor": lambda **kw: SequenceRegressor("gru", 4, input_size=2, rngs=nnx.Rngs(0), **kw),
    "Tagger": lambda **kw: Tagger("gru", 4, 3, vocab_size=5, rngs=nnx.Rngs(0), **kw),
    "LanguageModel": lambda **kw: LanguageModel("lstm", 4, 5, rngs=nnx.Rngs(0), **kw),
    "OneToMany": lambda **kw: OneToMany("lstm", 4, 5, 3, rngs=nnx.Rngs(0), **kw),
    "CTCModel": lambda **kw: CTCModel("gru", 4, 3, input_size=2, rngs=nnx.Rngs(0), **kw),
    "Seq2Seq": lambda **kw: Seq2Seq("lstm", 4, 5, source_vocab=5, attention="multihead", rngs=nnx.Rngs(0), **kw),
}


def _param_dtypes(module):
    return {leaf.dtype for leaf in jax.tree.leaves(nnx.state(module, nnx.Param))}


@pytest.mark.parametrize("name", BUILDERS)
def test_param_dtype(name):
    build = BUILDERS[name]
    f32, f64, bf16 = (jnp.dtype(d) for d in (jnp.float32, jnp.float64, jnp.bfloat16))
    real = lambda dtypes: {d for d in dtypes if not jnp.issubdtype(d, jnp.complexfloating)}  # noqa: E731
    assert real(_param_dtypes(build())) == {f32}
    assert real(_param_dtypes(build(param_dtype=jnp.bfloat16))) == {bf16}
    with jax.enable_x64():
        assert real(_param_dtypes(build(param_dtype=jnp.float64))) == {f64}
        assert real(_param_dtypes(build())) == {f64}  # None: jnp.zeros' default under x64
        assert real(_param_dtypes(build(param_dtype=jnp.float32))) == {f32}


def test_float64_model_computes_in_float64():
    with jax.enable_x64():
        model = SequenceClassifier("lstm", 4, 3, input_size=2, pooling="attention", rngs=nnx.Rngs(0))
        x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 5, 2)))
        assert x.dtype == jnp.float64 and model(x, jnp.array([5, 3])).dtype == jnp.float64


def test_bfloat16_compute_dtype_keeps_float32_params():
    model = SequenceClassifier("gru", 4, 3, input_size=2, pooling="attention", dtype=jnp.bfloat16, rngs=nnx.Rngs(0))
    assert _param_dtypes(model) == {jnp.dtype(jnp.float32)}
    x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 5, 2)), jnp.float32)
    assert model(x, jnp.array([5, 3])).dtype == jnp.bfloat16
