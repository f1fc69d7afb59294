"""Pruning vs distillation comparison with the theory figure; writes a report.

    python scripts/compare.py --config=experiments/configs/compare.py --workdir=runs/compare

Multi-host: one process per host with PRUNE_COORDINATOR_ADDRESS / PRUNE_NUM_PROCESSES /
PRUNE_PROCESS_ID set and a --workdir every host sees; process 0 writes.
"""
from absl import app, flags
from ml_collections import config_flags

from experiments import compare
from core import parallel

config_flags.DEFINE_config_file("config", "experiments/configs/compare.py",
                                "Experiment config (append :quick for a short run).")
flags.DEFINE_string("workdir", "runs/compare", "Output folder (rerun to resume).")


def main(argv):
  del argv
  parallel.maybe_initialize_distributed()
  rows = compare.run_comparison(flags.FLAGS.config, flags.FLAGS.workdir)
  if parallel.process_index() == 0:
    print(f"{len(rows)} cells; report: {flags.FLAGS.workdir}/report.html")


if __name__ == "__main__":
  app.run(main)
