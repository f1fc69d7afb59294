"""Data-pruning sweep: scores -> selection -> training on the kept subset.

    python scripts/prune_sweep.py --config=experiments/configs/mnist1d_prune_sweep.py[:quick] \
        --workdir=/tmp/prune_sweep_mnist1d [--config.seeds=0,1]

Thin wrapper over `experiments.prune_sweep.run_sweep`; resumable (same --workdir).
"""

from core import cli
from experiments import prune_sweep as sweep

cli.define_flags()


def main(config, workdir):
  out = sweep.run_sweep(config, workdir)
  for s in out["summary"]:
    print(f"{s['method']:>16s}  f={s['fraction']:.2f}  n={s['num_kept']:6d}  "
          f"acc={s['acc_mean']:.4f} +- {s['acc_std']:.4f}  ({s['num_seeds']} seeds)")
  for k, v in out["spearman"].items():
    print(f"spearman {k}: {v:+.3f}")


if __name__ == "__main__":
  cli.run(main)
