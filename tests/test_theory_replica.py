"""Replica theory: classic max-margin learning curve and internal consistency."""
import numpy as np
import pytest

from theory.replica import solve_replica
from theory.frontier import asymptotic_constant


def test_f1_reproduces_gardner_max_margin_curve():
    alpha = np.array([1.0, 10.0, 300.0, 1000.0])
    r = solve_replica(alpha, 1.0, 0.0, "hard")
    assert np.all(r["residual"] < 1e-8)
    # known values of the maximal-stability teacher-student perceptron
    assert r["eps"][0] == pytest.approx(0.2657, abs=2e-3)
    # eps ~ c / alpha with c ~ 0.50 at large alpha
    np.testing.assert_allclose(r["eps"][2:] * alpha[2:], 0.5005, atol=3e-3)
    assert asymptotic_constant() == pytest.approx(0.5005, abs=2e-3)


def test_f1_independent_of_keep_rule_and_probe_angle():
    alpha = np.array([0.5, 3.0])
    base = solve_replica(alpha, 1.0, 0.0, "hard")["eps"]
    np.testing.assert_allclose(solve_replica(alpha, 1.0, 0.0, "easy")["eps"], base, rtol=1e-6)
    np.testing.assert_allclose(solve_replica(alpha, 1.0, 0.3, "hard")["eps"], base, rtol=2e-3)


def test_pruning_hard_helps_with_abundant_data_and_easy_with_scarce():
    small, large = solve_replica([0.5, 8.0], 0.2, 0.0, "hard"), solve_replica([0.5, 8.0], 0.2, 0.0, "easy")
    assert large["eps"][0] < small["eps"][0]  # scarce data: keep easy wins
    assert small["eps"][1] < large["eps"][1]  # abundant data: keep hard wins
