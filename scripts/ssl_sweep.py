"""SSL prototypes in the MNIST-1D pruning sweep (thin wrapper over
`experiments.ssl_sweep.run_ssl_sweep`; resumable with the same --workdir).

    python scripts/ssl_sweep.py --config=experiments/configs/ssl_sweep_mnist1d.py[:quick] \
        --workdir=runs/ssl_sweep_mnist1d
"""
from __future__ import annotations

from absl import app, flags
from ml_collections import config_flags

from core import parallel
from experiments import ssl_sweep

_CONFIG = config_flags.DEFINE_config_file("config", None, "sweep config file", lock_config=False)
_WORKDIR = flags.DEFINE_string("workdir", None, "output directory (resumable)")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  del argv
  parallel.maybe_initialize_distributed()
  out = ssl_sweep.run_ssl_sweep(_CONFIG.value, _WORKDIR.value)
  print(ssl_sweep.tables(out))


if __name__ == "__main__":
  app.run(main)
