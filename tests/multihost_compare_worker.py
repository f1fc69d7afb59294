"""One process of the multi-process comparison test (launched by tests/test_multihost.py).

    python tests/multihost_compare_worker.py PROCESS_ID NUM_PROCESSES PORT LOCAL_DEVICES WORKDIR

Runs the main job (`experiments.compare.run_comparison`) on a tiny digits grid with the CPU
backend (gloo collectives when NUM_PROCESSES > 1); process 0 writes the work folder.
"""
import os
import sys

pid, nproc, port, ndev = (int(a) for a in sys.argv[1:5])
workdir = sys.argv[5]
os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={ndev}"
os.environ["JAX_PLATFORMS"] = "cpu"

from core import parallel  # noqa: E402

parallel.maybe_initialize_distributed(f"localhost:{port}", nproc, pid)

import jax  # noqa: E402

from experiments import compare  # noqa: E402
from experiments.configs import compare as compare_config  # noqa: E402

c = compare_config.get_config("quick")
c.pruning_methods = ("random", "el2n")
c.modes = ("hard",)
c.per_class_budgets = (4,)  # 40 examples: batches divide over the 4 devices
c.fractions = ()
c.train.num_steps = 40
c.distill.kip.steps = 5
c.scores.el2n = dict(epoch=1, num_runs=1)
c.score_train.num_epochs = 1
c.progress_bar = False
# the controls section on a pod: the teacher and every evaluation train collectively
c.distill_controls.config.methods = ("random",)
c.distill_controls.config.images_per_class = (4,)
c.distill_controls.config.finite_train_teacher.num_steps = 40
rows = compare.run_comparison(c, workdir)
assert jax.process_count() == nproc and jax.device_count() == nproc * ndev
print(f"process {pid}: done", [(r["method"], r["network_accuracy"]) for r in rows], flush=True)
