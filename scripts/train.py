"""Trains a model from a config file; thin wrapper over core.train.train_and_evaluate.

    python scripts/train.py --config=core/configs/digits_cnn.py[:quick] --workdir=DIR \
        [--config.optimizer.lr=0.03]

Writes DIR/config.json, DIR/metrics.jsonl and DIR/checkpoints/ (process 0);
rerunning with the same DIR resumes from the last checkpoint. Several processes:
set PRUNE_COORDINATOR_ADDRESS / PRUNE_NUM_PROCESSES / PRUNE_PROCESS_ID (or the
--coordinator_address / --num_processes / --process_id flags) in every process.
"""
import json

from absl import app, flags, logging
from ml_collections import config_flags

from core import parallel

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Config file (pruning/configs/*.py[:arg]).",
                                lock_config=False)
flags.DEFINE_string("workdir", None, "Directory for config.json, metrics.jsonl, checkpoints.")
flags.DEFINE_string("coordinator_address", None, "host:port of process 0 (multi-process).")
flags.DEFINE_integer("num_processes", None, "Number of processes (multi-process).")
flags.DEFINE_integer("process_id", None, "This process's index (multi-process).")
flags.mark_flags_as_required(["config"])


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)  # orbax logs every file at INFO
  parallel.maybe_initialize_distributed(FLAGS.coordinator_address, FLAGS.num_processes,
                                        FLAGS.process_id)
  from core.train import train_and_evaluate
  result = train_and_evaluate(FLAGS.config, FLAGS.workdir)
  if parallel.process_index() == 0:
    print(json.dumps(result.metrics, indent=1))


if __name__ == "__main__":
  app.run(main)
