"""Data-pruning sweep: scores -> selection -> training on the kept subset.

    python scripts/prune_sweep.py --config=experiments/configs/mnist1d_prune_sweep.py[:quick] \
        --workdir=/tmp/prune_sweep_mnist1d [--config.seeds=0,1]

Thin wrapper over `experiments.prune_sweep.run_sweep`; resumable (same --workdir).
"""
from absl import app, flags
from ml_collections import config_flags

from core import parallel
from experiments import prune_sweep as sweep

_CONFIG = config_flags.DEFINE_config_file("config", None, "sweep config file", lock_config=False)
_WORKDIR = flags.DEFINE_string("workdir", None, "output directory (resumable)")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  del argv
  parallel.maybe_initialize_distributed()
  out = sweep.run_sweep(_CONFIG.value, _WORKDIR.value)
  for s in out["summary"]:
    print(f"{s['method']:>16s}  f={s['fraction']:.2f}  n={s['num_kept']:6d}  "
          f"acc={s['acc_mean']:.4f} +- {s['acc_std']:.4f}  ({s['num_seeds']} seeds)")
  for k, v in out["spearman"].items():
    print(f"spearman {k}: {v:+.3f}")


if __name__ == "__main__":
  app.run(main)
