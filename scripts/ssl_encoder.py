"""Trains a self-supervised encoder (SimCLR / SwAV) on a dataset's training inputs and reports
linear-probe and k-NN test accuracy against PCA and random-feature embeddings.

    python scripts/ssl_encoder.py --config=pruning/configs/mnist1d_ssl.py[:quick] \
        --workdir=/tmp/ssl_mnist1d [--config.objective=swav]

Thin wrapper over `pruning.ssl.run_encoder`; resumable (same --workdir).
"""
from __future__ import annotations

import json

from absl import app, flags
from ml_collections import config_flags

from core import parallel
from pruning import ssl

_CONFIG = config_flags.DEFINE_config_file("config", None, "encoder config file", lock_config=False)
_WORKDIR = flags.DEFINE_string("workdir", None, "output directory (resumable)")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  del argv
  parallel.maybe_initialize_distributed()
  out = ssl.run_encoder(_CONFIG.value, _WORKDIR.value)
  info = out["info"]
  print(json.dumps({"fingerprint": info["fingerprint"], "probe": info["probe"],
                    "baselines": info["baselines"],
                    "train_time_s": info["train_metrics"]["wall_time_s"]}, indent=1))


if __name__ == "__main__":
  app.run(main)
