"""Paired bootstrap CIs over seeds x prompts, against cases whose bootstrap distribution is known by hand."""
import numpy as np
import pytest

from cory.eval.bootstrap import paired_difference_ci
from cory.eval.heldout import distinct_n


def test_a_constant_difference_has_a_zero_width_interval():
    a = [[1.0, 2.0, 5.0], [0.0, 3.0, 4.0]]
    b = [[v + 0.25 for v in row] for row in a]
    ci = paired_difference_ci(a, b)
    assert ci == pytest.approx({"diff": 0.25, "low": 0.25, "high": 0.25})


def test_two_prompts_by_hand():
    # one seed, per-prompt differences (0, 1): a resample of 2 prompts has mean 0, 0.5 or 1 with probability
    # 1/4, 1/2, 1/4, so the 2.5% and 97.5% quantiles are 0 and 1, and the point estimate is 0.5
    ci = paired_difference_ci([[0.0, 0.0]], [[0.0, 1.0]], n_boot=4000)
    assert ci == pytest.approx({"diff": 0.5, "low": 0.0, "high": 1.0})


def test_seeds_are_resampled_too():
    # two seeds, one prompt: differences 0 and 2 -> resampled means 0, 1, 2 (1/4, 1/2, 1/4)
    ci = paired_difference_ci([[0.0], [0.0]], [[0.0], [2.0]], n_boot=4000)
    assert ci == pytest.approx({"diff": 1.0, "low": 0.0, "high": 2.0})


def test_width_matches_the_normal_approximation_for_many_prompts():
    rng = np.random.default_rng(1)
    a = rng.normal(size=(1, 2000))
    b = a + 0.3 + rng.normal(size=(1, 2000))  # paired differences ~ N(0.3, 1)
    ci = paired_difference_ci(a, b, n_boot=2000)
    half_width = 1.96 * np.std(b - a) / np.sqrt(2000)
    assert (ci["high"] - ci["low"]) / 2 == pytest.approx(half_width, rel=0.1)
    assert ci["low"] > 0.2 and ci["high"] < 0.4


def test_a_corpus_statistic_resamples_seeds_only():
    distinct_1 = lambda r: distinct_n(r, 1)  # noqa: E731
    same = [[[1, 2, 3], [1, 2, 3]]]  # distinct-1: 3/6
    varied = [[[1, 2, 3], [4, 5, 6]]]  # 6/6 with both prompts, 3/6 when one is drawn twice: drawing prompts biases it
    biased = paired_difference_ci(same, varied, distinct_1, n_boot=2000)
    assert biased["diff"] == 0.5 and biased["low"] == 0.0  # the estimate sits at the top of its own interval
    # two seeds: differences 0.5 and 0 -> seed resamples give 0.5, 0.25, 0 (1/4, 1/2, 1/4)
    same, varied = [[[1, 2, 3], [1, 2, 3]]] * 2, [[[1, 2, 3], [4, 5, 6]], [[1, 2, 3], [1, 2, 3]]]
    ci = paired_difference_ci(same, varied, distinct_1, n_boot=4000, resample_prompts=False)
    assert ci == pytest.approx({"diff": 0.25, "low": 0.0, "high": 0.5})


def test_unpaired_shapes_are_refused():
    with pytest.raises(ValueError, match="same seeds x prompts"):
        paired_difference_ci([[1.0, 2.0]], [[1.0]])
