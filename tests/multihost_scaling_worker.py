"""One process of the multi-process scaling test (launched by tests/test_scaling.py).

    python tests/multihost_scaling_worker.py PROCESS_ID NUM_PROCESSES PORT LOCAL_DEVICES WORKDIR

Runs `experiments.scaling.run_scaling` on a tiny MNIST-1D grid with the CPU backend (gloo
collectives when NUM_PROCESSES > 1); process 0 writes the work folder.
"""
import os
import sys

pid, nproc, port, ndev = (int(a) for a in sys.argv[1:5])
workdir = sys.argv[5]
os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={ndev}"
os.environ["JAX_PLATFORMS"] = "cpu"

from core import parallel  # noqa: E402

parallel.maybe_initialize_distributed(f"localhost:{port}" if nproc > 1 else None, nproc, pid)

import jax  # noqa: E402

from experiments import scaling  # noqa: E402
from experiments.configs import scaling_mnist1d  # noqa: E402

c = scaling_mnist1d.get_config("quick")
c.dataset.update(num_train=400, num_test=300)
c.pools = (200, 400)
c.fractions = (1.0, 0.5)
c.metrics = ("random", "el2n")
c.seeds = (0,)
c.budget.update(epochs=2.0, min_steps=16, num_evals=2)
c.scores.el2n.num_runs = 1
c.theory.update(num_alpha=10, thetas_deg=(0.0,))
c.bootstrap = 10
res = scaling.run_scaling(c, workdir, verbose=False)
assert jax.process_count() == nproc and jax.device_count() == nproc * ndev
print(f"process {pid}: done", res["cells_trained"], flush=True)
