"""Property tests (hypothesis): padding and batching never change a valid result."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gatedrnn import flip_sequences, scan_cell

from zoo import ZOO

BATCH, TIME = 3, 6
CELLS = ["lstm_everything", "lstm_peephole", "gru", "gru_cho", "mgu", "ugrnn", "mingru", "minlstm", "rnn_relu"]


@functools.cache
def _runner(name, reverse):
    cell, _ = ZOO[name]
    params = cell.init(jax.random.key(0))
    run = jax.jit(lambda x, n: scan_cell(cell, params, x, seq_lengths=n, reverse=reverse))
    alone = jax.jit(lambda x: scan_cell(cell, params, x, reverse=reverse))
    return cell, run, alone


batches = st.tuples(
    st.sampled_from(CELLS),
    st.booleans(),
    st.lists(st.integers(0, TIME), min_size=BATCH, max_size=BATCH),
    st.integers(0, 2**31 - 1),
    st.sampled_from([0.0, 1e3, -7.0, np.nan]),
)


def _inputs(cell, seed, lengths, pad_value):
    x = np.random.default_rng(seed).normal(size=(BATCH, TIME, cell.input_size)).astype(np.float32)
    for b, n in enumerate(lengths):
        x[b, n:] = pad_value
    return x


@pytest.mark.slow
@given(batches)
def test_padded_batch_equals_each_sequence_alone(case):
    name, reverse, lengths, seed, _ = case
    cell, run, alone = _runner(name, reverse)
    x = _inputs(cell, seed, lengths, 0.0)
    ys, carry = run(jnp.asarray(x), jnp.asarray(lengths, jnp.int32))
    for b, n in enumerate(lengths):
        if n == 0:
            want_carry = cell.initial_carry((1,))
        else:
            want_ys, want_carry = alone(jnp.asarray(x[b:b + 1, :n]))
            np.testing.assert_allclose(ys[b, :n], want_ys[0], atol=1e-5)
        jax.tree.map(lambda got, want: np.testing.assert_allclose(got[b], want[0], atol=1e-5), carry, want_carry)
        assert np.all(np.asarray(ys[b, n:]) == 0.0)


@given(batches)
def test_padding_values_never_change_valid_outputs_or_final_carry(case):
    name, reverse, lengths, seed, pad_value = case
    cell, run, _ = _runner(name, reverse)
    n = jnp.asarray(lengths, jnp.int32)
    clean = run(jnp.asarray(_inputs(cell, seed, lengths, 0.0)), n)
    dirty = run(jnp.asarray(_inputs(cell, seed, lengths, pad_value)), n)
    jax.tree.map(lambda a, b: np.testing.assert_array_equal(np.asarray(a), np.asarray(b)), dirty, clean)


@given(st.lists(st.integers(0, TIME), min_size=1, max_size=4), st.integers(0, 2**31 - 1))
def test_flip_sequences_is_an_involution_within_lengths(lengths, seed):
    x = jnp.asarray(np.random.default_rng(seed).normal(size=(len(lengths), TIME, 2)).astype(np.float32))
    n = jnp.asarray(lengths, jnp.int32)
    flipped = flip_sequences(x, n)
    np.testing.assert_array_equal(flip_sequences(flipped, n), x)
    for b, k in enumerate(lengths):
        np.testing.assert_array_equal(flipped[b, :k], x[b, :k][::-1])
        np.testing.assert_array_equal(flipped[b, k:], x[b, k:])
