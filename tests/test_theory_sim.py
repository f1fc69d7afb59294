"""Replica theory vs N=200 simulations.

Agreement criterion: |mean_sim - theory| <= 3 * SEM + slack, SEM over seeds.  The slack
(0.01, absolute eps) covers finite-N corrections: the theory is the N -> inf limit, and at
N = 200 the pruned pool has P = f alpha_tot N rounded to an integer, the threshold is
empirical rather than gamma, and O(1/sqrt(N)) fluctuations of R around its typical value
bias arccos(R) slightly (we observed |differences| <~ 0.01 in checks with more seeds).
"""
import numpy as np

from theory.replica import solve_replica
from theory.simulate import simulate_eps

SLACK = 0.01


def _check(sim, theory):
    diff = np.abs(sim["mean"] - theory)
    assert np.all(diff <= 3 * sim["sem"] + SLACK), (sim["mean"], sim["sem"], theory)


def test_theta0_theory_matches_simulation():
    alpha = np.array([[0.5, 2.0, 5.0]])
    f = np.array([[1.0], [0.5], [0.2]])
    for keep in ("hard", "easy"):
        sim = simulate_eps(200, alpha, f, 0.0, keep, num_seeds=4, seed=3)
        assert sim["kkt"] < 1e-4
        _check(sim, solve_replica(alpha, f, 0.0, keep)["eps"])


def test_theta_positive_theory_matches_simulation():
    alpha = np.array([[1.0, 6.0]])
    theta = np.array([[0.2], [0.5]])
    sim = simulate_eps(200, alpha, 0.3, theta, "hard", num_seeds=4, seed=4)
    theory = solve_replica(alpha, 0.3, theta, "hard")
    _check(sim, theory["eps"])
    # theta > 0 changes the curve relative to the perfect probe (a real effect, not a no-op)
    assert np.all(theory["eps"][:, 1] > solve_replica(6.0, 0.3, 0.0, "hard")["eps"])
