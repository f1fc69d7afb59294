"""RHO-LOSS label-noise experiment (thin entry point over experiments.rholoss).

    python scripts/rholoss.py --config=experiments/configs/mnist1d_rholoss.py --workdir=/tmp/rholoss
"""

import json

from core import cli
from experiments import rholoss

cli.define_flags()


def main(config, workdir):
  res = rholoss.run_experiment(config, workdir, log=lambda s: print(s, flush=True))
  print(json.dumps(res["summary"], indent=1))
  print(f"wrote {workdir}/results.json, curves.csv, rholoss.png ({res['wall_time_s']:.0f}s)")


if __name__ == "__main__":
  cli.run(main)
