"""Dataset distillation (random / Label Solve / KIP) with infinite-width kernels.

    python scripts/distill_run.py --config=distill/configs/digits_kip_fc.py[:quick] --workdir=DIR \
        [--config.kip.lr=0.02] [--config.images_per_class="(1,10)"] [--config.seeds="(0,)"]

Writes DIR/results.json, results.csv, summary.json (atomic), DIR/supports/*.npz,
DIR/kip/ipc<k>_seed<s>/{kip_ckpt.npz,kip_log.jsonl} and
DIR/distilled_ipc<k>_seed<s>.png. Rerunning with the same DIR resumes (KIP from
its checkpoints; finished rows are reused).
"""
import json

from absl import app, flags, logging
from ml_collections import config_flags

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Config file (distill/configs/*.py[:arg]).",
                                lock_config=False)
flags.DEFINE_string("workdir", None, "Output directory (results, supports, checkpoints, PNG).")
flags.DEFINE_bool("progress", True, "tqdm progress bars and one JSON line per result.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)
  from experiments.distill import run_distillation, summarize
  rows = run_distillation(FLAGS.config, FLAGS.workdir, progress=FLAGS.progress)
  for r in summarize(rows):
    print(json.dumps(r))


if __name__ == "__main__":
  app.run(main)
