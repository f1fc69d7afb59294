"""RHO-LOSS label-noise experiment (thin entry point over pruning.rholoss).

    python scripts/rholoss.py --config=experiments/configs/mnist1d_rholoss.py --workdir=/tmp/rholoss
"""
import json

from absl import app, flags
from ml_collections import config_flags

from experiments import rholoss

config_flags.DEFINE_config_file("config", None, "experiment config (.py[:arg])", lock_config=True)
flags.DEFINE_string("workdir", None, "output directory", required=True)
FLAGS = flags.FLAGS


def main(argv):
  del argv
  res = rholoss.run_experiment(FLAGS.config, FLAGS.workdir, log=lambda s: print(s, flush=True))
  print(json.dumps(res["summary"], indent=1))
  print(f"wrote {FLAGS.workdir}/results.json, curves.csv, rholoss.png "
        f"({res['wall_time_s']:.0f}s)")


if __name__ == "__main__":
  flags.mark_flag_as_required("config")
  app.run(main)
