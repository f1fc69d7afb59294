"""Trains a model from a config file; thin wrapper over core.train.train_and_evaluate.

    python scripts/train.py --config=core/configs/digits_cnn.py[:quick] --workdir=DIR \
        [--config.optimizer.lr=0.03]

Writes DIR/config.json, DIR/metrics.jsonl and DIR/checkpoints/ (process 0);
rerunning with the same DIR resumes from the last checkpoint. Several processes:
set PRUNE_COORDINATOR_ADDRESS / PRUNE_NUM_PROCESSES / PRUNE_PROCESS_ID (or the
--coordinator_address / --num_processes / --process_id flags) in every process.
"""

import json

from core import cli, parallel
from core.train import train_and_evaluate

cli.define_flags()


def main(config, workdir):
  result = train_and_evaluate(config, workdir)
  if parallel.process_index() == 0:
    print(json.dumps(result.metrics, indent=1))


if __name__ == "__main__":
  cli.run(main)
