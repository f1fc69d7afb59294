import math

import numpy as np
import pytest

from theory.replica import solve_replica
from theory.simulate import simulate_eps
from theory.teacher_student import sample_pruned_dataset


@pytest.mark.parametrize("kwargs, name", [
    (dict(f=0.0), "f"), (dict(f=1.5), "f"), (dict(f=float("nan")), "f"), (dict(f=-0.1), "f"),
    (dict(theta=-0.1), "theta"), (dict(theta=math.pi / 2 + 0.1), "theta"), (dict(theta=float("nan")), "theta"),
    (dict(alpha_prune=0.0), "alpha_prune"), (dict(alpha_prune=-1.0), "alpha_prune"),
    (dict(alpha_prune=float("nan")), "alpha_prune"), (dict(keep="medium"), "keep"),
])
def test_replica_rejects_invalid(kwargs, name):
    args = dict(alpha_prune=1.0, f=0.5, theta=0.0, keep="hard") | kwargs
    with pytest.raises(ValueError, match=name):
        solve_replica(**args)


@pytest.mark.parametrize("n", [1, 0, 2.5, float("nan")])
def test_simulation_rejects_bad_dimension(n):
    with pytest.raises(ValueError, match="N="):
        simulate_eps(n, 1.0, 0.5)


@pytest.mark.parametrize("kwargs, name", [(dict(f=2.0), "f"), (dict(theta=3.0), "theta"),
                                          (dict(alpha_tot=0.0), "alpha_tot"), (dict(f=np.nan), "f")])
def test_sampler_rejects_invalid(kwargs, name):
    args = dict(n=10, alpha_tot=2.0, f=0.5, theta=0.0, keep="hard") | kwargs
    with pytest.raises(ValueError, match=name):
        sample_pruned_dataset(np.random.default_rng(0), **args)
