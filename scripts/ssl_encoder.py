"""Trains a self-supervised encoder (SimCLR / SwAV) on a dataset's training inputs and reports
linear-probe and k-NN test accuracy against PCA and random-feature embeddings.

    python scripts/ssl_encoder.py --config=pruning/configs/mnist1d_ssl.py[:quick] \
        --workdir=/tmp/ssl_mnist1d [--config.objective=swav]

Thin wrapper over `pruning.ssl.run_encoder`; resumable (same --workdir).
"""

import json

from core import cli
from pruning import ssl

cli.define_flags()


def main(config, workdir):
  info = ssl.run_encoder(config, workdir)["info"]
  print(json.dumps({"fingerprint": info["fingerprint"], "probe": info["probe"],
                    "baselines": info["baselines"],
                    "train_time_s": info["train_metrics"]["wall_time_s"]}, indent=1))


if __name__ == "__main__":
  cli.run(main)
