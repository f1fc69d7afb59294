"""SSL prototypes in the MNIST-1D pruning sweep (thin wrapper over
`experiments.ssl_sweep.run_ssl_sweep`; resumable with the same --workdir).

    python scripts/ssl_sweep.py --config=experiments/configs/ssl_sweep_mnist1d.py[:quick] \
        --workdir=runs/ssl_sweep_mnist1d
"""

from core import cli
from experiments import ssl_sweep

cli.define_flags()


def main(config, workdir):
  print(ssl_sweep.tables(ssl_sweep.run_ssl_sweep(config, workdir)))


if __name__ == "__main__":
  cli.run(main)
