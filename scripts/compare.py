"""Pruning vs distillation comparison with the theory figure; writes a report.

    python scripts/compare.py --config=experiments/configs/compare.py --workdir=runs/compare
"""
import _repo_path  # noqa: F401  (first: lets `import distill` find the package)
from absl import app, flags
from ml_collections import config_flags

from experiments import compare

config_flags.DEFINE_config_file("config", "experiments/configs/compare.py",
                                "Experiment config (append :quick for a short run).")
flags.DEFINE_string("workdir", "runs/compare", "Output folder (rerun to resume).")


def main(argv):
  del argv
  rows = compare.run_comparison(flags.FLAGS.config, flags.FLAGS.workdir)
  print(f"{len(rows)} cells; report: {flags.FLAGS.workdir}/report.html")


if __name__ == "__main__":
  app.run(main)
