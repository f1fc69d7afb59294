"""Test error vs examples kept across MNIST-1D pool sizes, beside the replica theory.

    python scripts/scaling.py --config=experiments/configs/scaling_mnist1d.py --workdir=runs/scaling
    python scripts/scaling.py --config=experiments/configs/scaling_mnist1d.py:quick --workdir=/tmp/q

Library: `experiments.scaling.run_scaling(config, workdir)`. Rerunning with the same workdir
is served from the cell cache. Multi-host: one process per host with PRUNE_COORDINATOR_ADDRESS
/ PRUNE_NUM_PROCESSES / PRUNE_PROCESS_ID and a shared --workdir; process 0 writes.
"""

from core import cli, parallel
from experiments import scaling

cli.define_flags(default_config="experiments/configs/scaling_mnist1d.py",
                 default_workdir="runs/scaling")


def main(config, workdir):
  res = scaling.run_scaling(config, workdir)
  if parallel.process_index() == 0:
    print(scaling.scaling_section(res))


if __name__ == "__main__":
  cli.run(main)
