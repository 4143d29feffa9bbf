"""The one place validation lives: each check's one-line message, and the fields that use it."""

import pytest

from gatedrnn.tasks.synthetic import ParityTask
from gatedrnn.train.config import default_config, validate
from gatedrnn.validation import ConfigError, check_choice, check_non_negative, check_positive


@pytest.mark.parametrize("check, args, kwargs, message", [
    (check_positive, ("a.n", 0), {}, "a.n must be a positive integer, got 0"),
    (check_positive, ("a.n", True), {}, "a.n must be a positive integer, got True"),
    (check_positive, ("a.x", -0.5), {"integer": False}, "a.x must be a positive number, got -0.5"),
    (check_non_negative, ("a.x", -1), {}, "a.x must be a non-negative number, got -1"),
    (check_non_negative, ("a.x", "1"), {}, "a.x must be a non-negative number, got '1'"),
    (check_choice, ("a.c", "z", ["b", "a"]), {}, "a.c='z' is not valid; choose one of ['a', 'b']"),
])
def test_each_check_names_the_value_and_what_is_valid(check, args, kwargs, message):
    with pytest.raises(ConfigError) as info:
        check(*args, **kwargs)
    assert str(info.value) == message and isinstance(info.value, ValueError)


@pytest.mark.parametrize("value", [-1, 1.5, True])
def test_non_negative_integers_refuse_floats_bools_and_negatives(value):
    with pytest.raises(ConfigError, match=rf"^a\.k must be a non-negative integer \(0: off\), got {value!r}$"):
        check_non_negative("a.k", value, integer=True, note=" (0: off)")
    check_non_negative("a.k", 0, integer=True)
    check_non_negative("a.k", 2.5)


def test_fields_that_use_the_integer_form():
    config = default_config()
    config.task, config.train.seed = "adding", -1
    with pytest.raises(ConfigError, match=r"^train\.seed must be a non-negative integer, got -1$"):
        validate(config, cells=["lstm"], tasks=["adding"])
    with pytest.raises(ConfigError, match=r"^data\.eval_seq_len must be a non-negative integer \(0: data\.seq_len\), "
                                          r"got 1\.5$"):
        ParityTask(seq_len=4, eval_seq_len=1.5)
