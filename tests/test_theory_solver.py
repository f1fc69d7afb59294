"""Max-margin solver vs scikit-learn's hard-margin SVC on exactly the same problem.

SVC always fits a bias b.  Mirroring the data, {(x_i, y_i)} U {(-x_i, -y_i)}, makes the
constraints y_i(w.x_i + b) >= 1 and y_i(w.x_i - b) >= 1, i.e. y_i w.x_i >= 1 + |b|, so the
optimum has b = 0 and is the no-bias hard-margin solution.  C = 1e6 exceeds every dual
variable of these small separable problems, so the soft-margin solution is the hard one.
"""
import numpy as np
import pytest
from sklearn.svm import SVC

from theory.max_margin import _compact_sizes, adatron_batch, max_margin_batch, pad_problems
from theory.simulate import solve_problems


def _problem(rng, p, n):
    teacher = rng.standard_normal(n)
    x = rng.standard_normal((p, n))
    return x, np.where(x @ teacher >= 0, 1.0, -1.0), teacher


def _sklearn_w(x, y):
    clf = SVC(kernel="linear", C=1e6, tol=1e-8).fit(np.concatenate([x, -x]), np.concatenate([y, -y]))
    assert abs(clf.intercept_[0]) < 1e-5
    return clf.coef_[0]


def _assert_batch_matches_svc_and_adatron(probs):
    """Solve the padded batch; every w equals SVC's and AdaTron's.  Returns the batch's w."""
    X, Y, M = pad_problems([p[0] for p in probs], [p[1] for p in probs])
    res = max_margin_batch(X, Y, M)
    assert res["kkt"].max() < 1e-6
    ada = adatron_batch(X, Y, M, tol=1e-9)
    for b, (x, y, _) in enumerate(probs):
        w = res["w"][b]
        np.testing.assert_allclose(w, _sklearn_w(x, y), rtol=1e-4, atol=1e-4 * np.abs(w).max())
        np.testing.assert_allclose(w, ada["w"][b], rtol=1e-5, atol=1e-6 * np.abs(w).max())
    return res["w"]


def test_solver_matches_sklearn_hard_margin_svc():
    rng = np.random.default_rng(0)
    probs = [_problem(rng, p, n) for p, n in [(15, 25), (40, 25), (60, 25), (120, 25)]]
    X, Y, M = pad_problems([p[0] for p in probs], [p[1] for p in probs])
    res = max_margin_batch(X, Y, M)
    assert res["kkt"].max() < 1e-6
    ada = adatron_batch(X, Y, M, tol=1e-9)
    for b, (x, y, teacher) in enumerate(probs):
        w_ref = _sklearn_w(x, y)
        w = res["w"][b]
        R = w @ teacher / np.linalg.norm(w) / np.linalg.norm(teacher)
        R_ref = w_ref @ teacher / np.linalg.norm(w_ref) / np.linalg.norm(teacher)
        assert abs(R - R_ref) < 1e-3
        np.testing.assert_allclose(w, w_ref, rtol=1e-4, atol=1e-4 * np.abs(w_ref).max())
        np.testing.assert_allclose(w, ada["w"][b], rtol=1e-5, atol=1e-6 * np.abs(w).max())
        assert (y * (x @ w)).min() == pytest.approx(1.0, abs=1e-6)  # hard margin: min functional margin 1


def test_padding_does_not_change_solution():
    rng = np.random.default_rng(1)
    x, y, _ = _problem(rng, 40, 15)
    alone = max_margin_batch(x[None], y[None])["w"][0]
    X, Y, M = pad_problems([x, x[:10]], [y, y[:10]])
    padded = max_margin_batch(X, Y, M)["w"][0]
    np.testing.assert_allclose(alone, padded, rtol=1e-8, atol=1e-10)


def test_dual_path_matches_adatron_and_sklearn():
    """P_max < N runs the dual (P x P) Newton; same solution as AdaTron and SVC, padding-invariant."""
    rng = np.random.default_rng(2)
    probs = [_problem(rng, p, 60) for p in (10, 30, 50)]
    w_batch = _assert_batch_matches_svc_and_adatron(probs)
    for (x, y, _), w in zip(probs, w_batch):
        np.testing.assert_allclose(w, max_margin_batch(x[None], y[None])["w"][0], rtol=1e-8, atol=1e-10)


def test_compacted_dual_for_p_between_n_and_3n_matches_sklearn():
    """N < P <= 3N runs the dual Newton whose Cholesky is taken on the gathered active rows
    (a static size below P once the active set has shrunk to about the support vectors,
    at most N = 30 here); the solution is still SVC's and AdaTron's."""
    rng = np.random.default_rng(3)
    probs = [_problem(rng, p, 30) for p in (45, 60, 90)]
    assert _compact_sizes(90)[-1] < 45  # smaller sizes exist, so the compacted branches run
    _assert_batch_matches_svc_and_adatron(probs)


def test_solve_problems_same_answer_per_problem_threads_or_batched():
    """The CPU default (one problem per call, a thread pool) and lock-step batches agree."""
    rng = np.random.default_rng(4)
    probs = [_problem(rng, p, 20) for p in (8, 25, 33, 40, 50, 61)]
    xs, ys = [p[0] for p in probs], [p[1] for p in probs]
    w_threads, kkt_threads = solve_problems(xs, ys, batch_size=1, threads=2)
    w_batched, kkt_batched = solve_problems(xs, ys, batch_size=4, threads=1)
    assert max(kkt_threads.max(), kkt_batched.max()) < 1e-6
    np.testing.assert_allclose(w_threads, w_batched, rtol=1e-7, atol=1e-9 * np.abs(w_batched).max())
    for (x, y, _), w in zip(probs, w_threads):
        assert (y * (x @ w)).min() == pytest.approx(1.0, abs=1e-6)
