"""Test error vs examples kept across MNIST-1D pool sizes, beside the replica theory.

    python scripts/scaling.py --config=experiments/configs/scaling_mnist1d.py --workdir=runs/scaling
    python scripts/scaling.py --config=experiments/configs/scaling_mnist1d.py:quick --workdir=/tmp/q

Library: `experiments.scaling.run_scaling(config, workdir)`. Rerunning with the same workdir
is served from the cell cache. Multi-host: one process per host with PRUNE_COORDINATOR_ADDRESS
/ PRUNE_NUM_PROCESSES / PRUNE_PROCESS_ID and a shared --workdir; process 0 writes.
"""
from __future__ import annotations

from absl import app, flags
from ml_collections import config_flags

from core import parallel
from experiments import scaling

config_flags.DEFINE_config_file("config", "experiments/configs/scaling_mnist1d.py",
                                "Scaling config (append :quick or :large).")
flags.DEFINE_string("workdir", "runs/scaling", "Output folder (rerun to resume).")


def main(argv):
  del argv
  parallel.maybe_initialize_distributed()
  res = scaling.run_scaling(flags.FLAGS.config, flags.FLAGS.workdir)
  if parallel.process_index() == 0:
    print(scaling.scaling_section(res))


if __name__ == "__main__":
  app.run(main)
