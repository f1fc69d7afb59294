"""Reliability of every pruning score: Spearman between independent runs, kept-set overlap at
f = 0.5 / 0.2, wall-clock cost (thin wrapper over `experiments.reliability.run_reliability`).

    python scripts/score_reliability.py --config=experiments/configs/ssl_sweep_mnist1d.py \
        --workdir=runs/reliability_mnist1d \
        --config.reliability.score_cache=runs/ssl_sweep_mnist1d/baselines/scores \
        --config.reliability.ssl_encoder_dir=runs/ssl_sweep_mnist1d/encoders
"""

from core import cli
from experiments import reliability

cli.define_flags()


def main(config, workdir):
  print(reliability.table(reliability.run_reliability(config, workdir)))


if __name__ == "__main__":
  cli.run(main)
