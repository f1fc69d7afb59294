"""Dataset distillation (random / Label Solve / KIP) with infinite-width kernels.

    python scripts/distill_run.py --config=distill/configs/digits_kip_fc.py[:quick] --workdir=DIR \
        [--config.kip.lr=0.02] [--config.images_per_class="(1,10)"] [--config.seeds="(0,)"]

Writes DIR/results.json, results.csv, summary.json (atomic), DIR/supports/*.npz,
DIR/kip/ipc<k>_seed<s>/{kip_ckpt.npz,kip_log.jsonl} and
DIR/distilled_ipc<k>_seed<s>.png. Rerunning with the same DIR resumes (KIP from
its checkpoints; finished rows are reused).
"""

import json

from core import cli
from experiments.distill import run_distillation, summarize

cli.define_flags()


def main(config, workdir):
  rows = run_distillation(config, workdir, progress=bool(config.get("progress", True)))
  for r in summarize(rows):
    print(json.dumps(r))


if __name__ == "__main__":
  cli.run(main)
