"""Replica theory vs N=200 simulations.

Agreement criterion: |mean_sim - theory| <= 3 * SEM + slack, SEM over seeds, with the slack
relative to eps (REL_SLACK * eps + ABS_SLACK; an absolute 0.01 would be 60-75% of eps exactly
where keep-hard pruning matters, f = 0.2 at alpha 5-8).  The slack covers finite-N corrections: the theory is the N -> inf limit, and at
N = 200 the pruned pool has P = f alpha_tot N rounded to an integer, the threshold is
empirical rather than gamma, and O(1/sqrt(N)) fluctuations of R around its typical value
bias arccos(R) slightly (we observed |differences| <~ 0.01 in checks with more seeds).
"""
import jax.numpy as jnp
import numpy as np
import pytest

from theory.frontier import lossless_fraction
from theory.replica import solve_replica
from theory.simulate import simulate_data_probe, simulate_eps, solve_problems, student_eps
from theory.teacher_student import prune_by_probe

REL_SLACK = 0.15
ABS_SLACK = 0.002


def _check(sim, theory):
    diff = np.abs(sim["mean"] - theory)
    assert np.all(diff <= 3 * sim["sem"] + REL_SLACK * theory + ABS_SLACK), (
        sim["mean"], sim["sem"], theory)


@pytest.mark.slow
def test_theta0_theory_matches_simulation():
    alpha = np.array([[0.5, 2.0, 5.0, 8.0]])
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


@pytest.mark.slow
def test_lossless_fraction_theory_matches_paired_simulation():
    """Prune the *same* pool (alpha_tot = 20, N = 100) to f = 0.25 and compare with the whole
    pool.  Theory: f_* = 0.18 at theta = 0 (f = 0.25 is free: the kept hardest examples hold
    every support vector, so the max-margin student is unchanged), f_* = 0.40 at theta = 10 deg
    (f = 0.25 costs Delta eps = 0.0046).  The paired differences must show both."""
    n, alpha_tot, f = 100, 20.0, 0.25
    for theta, free in ((0.0, True), (np.radians(10.0), False)):
        f_star = lossless_fraction([alpha_tot], theta)["f"][0]
        assert (f_star < f) == free
        gap = solve_replica(f * alpha_tot, f, theta, "hard")["eps"] - solve_replica(alpha_tot, 1.0, theta, "hard")["eps"]
        xs, ys = [], []
        for s in range(6):
            rng = np.random.default_rng([7, s])
            x = rng.standard_normal((int(alpha_tot * n), n))
            y = np.where(x[:, 0] >= 0, 1.0, -1.0)  # teacher e_1
            probe = np.zeros(n)
            probe[:2] = np.cos(theta), np.sin(theta)
            x_kept, y_kept = prune_by_probe(jnp.asarray(x), jnp.asarray(y), jnp.asarray(probe), f, "hard")
            xs += [x, np.asarray(x_kept)]
            ys += [y, np.asarray(y_kept)]
        w, kkt = solve_problems(xs, ys)
        assert kkt.max() < 1e-6
        eps = student_eps(w, np.eye(n)[0]).reshape(-1, 2)
        diff = eps[:, 1] - eps[:, 0]
        if free:
            assert gap < 1e-4 and np.abs(diff).max() < 1e-4, diff
        else:
            sem = diff.std(ddof=1) / np.sqrt(len(diff))
            assert gap > 0.003 and diff.mean() > 0 and abs(diff.mean() - gap) <= 3 * sem + 0.002, (diff, gap)


def test_probe_trained_from_data_matches_theory_at_its_angle():
    """simulate_data_probe: a probe trained on alpha_probe N examples sits at the angle the
    replica theory predicts (theta = pi * eps(alpha_probe, f=1)), and the student pruned by it
    has the error of the theta > 0 theory at that angle."""
    n, alpha_probe, alpha_prune, f = 200, 4.0, 2.0, 0.5
    runs = [simulate_data_probe(n, alpha_probe, alpha_prune, f, "hard", seed=s) for s in range(4)]
    theta = np.array([r["theta"] for r in runs])
    eps = np.array([r["eps"] for r in runs])
    theta_theory = np.pi * float(solve_replica(alpha_probe, 1.0, 0.0, "hard")["eps"])
    assert abs(theta.mean() - theta_theory) <= 3 * theta.std(ddof=1) / 2 + 0.1 * theta_theory
    theory = float(solve_replica(alpha_prune, f, theta.mean(), "hard")["eps"])
    _check(dict(mean=eps.mean(), sem=eps.std(ddof=1) / 2), theory)
    # the imperfect probe matters: its error is above the perfect probe's at the same budget
    assert theory > float(solve_replica(alpha_prune, f, 0.0, "hard")["eps"])
