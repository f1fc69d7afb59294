"""Reliability of every pruning score: Spearman between independent runs, kept-set overlap at
f = 0.5 / 0.2, wall-clock cost (thin wrapper over `pruning.reliability.run_reliability`).

    python scripts/score_reliability.py --config=experiments/configs/ssl_sweep_mnist1d.py \
        --workdir=runs/reliability_mnist1d \
        --config.reliability.score_cache=runs/ssl_sweep_mnist1d/baselines/scores \
        --config.reliability.ssl_encoder_dir=runs/ssl_sweep_mnist1d/encoders
"""
from __future__ import annotations

from absl import app, flags
from ml_collections import config_flags

from core import parallel
from pruning import reliability

_CONFIG = config_flags.DEFINE_config_file("config", None, "ssl sweep config", lock_config=False)
_WORKDIR = flags.DEFINE_string("workdir", None, "output directory")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  del argv
  parallel.maybe_initialize_distributed()
  out = reliability.run_reliability(_CONFIG.value, _WORKDIR.value)
  print(reliability.table(out))


if __name__ == "__main__":
  app.run(main)
