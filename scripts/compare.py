"""Pruning vs distillation comparison with the theory figure; writes a report.

    python scripts/compare.py --config=experiments/configs/compare.py --workdir=runs/compare

Multi-host: one process per host with PRUNE_COORDINATOR_ADDRESS / PRUNE_NUM_PROCESSES /
PRUNE_PROCESS_ID set and a --workdir every host sees; process 0 writes.
"""
import os

from core import cli, parallel
from experiments import compare

cli.define_flags(default_config="experiments/configs/compare.py", default_workdir="runs/compare")


def main(config, workdir):
  parallel.use_compilation_cache(os.path.join(workdir, "jax_cache"))
  rows = compare.run_comparison(config, workdir)
  if parallel.process_index() == 0:
    print(f"{len(rows)} cells; report: {workdir}/report.html")


if __name__ == "__main__":
  cli.run(main)
