"""Selectors users compare against: static selectors in the pruning sweep, costs, InfoBatch.

    python scripts/compare_selectors.py --config=experiments/configs/selectors_mnist1d.py[:quick] \
        --workdir=runs/selectors_mnist1d

Thin wrapper over `experiments.selectors.run_selectors`; resumable (same --workdir).
"""
from core import cli
from experiments import selectors

cli.define_flags()


def main(config, workdir):
  out = selectors.run_selectors(config, workdir)
  for s in out["summary"]:
    cost = "" if s["score_cost_s"] is None else f"  score cost {s['score_cost_s']:.1f}s"
    print(f"{s['method']:>18s}  f={s['fraction']:.2f}  n={s['num_kept']:6d}  "
          f"acc={s['acc_mean']:.4f} +- {s['acc_std']:.4f}  ({s['num_seeds']} seeds){cost}")
  for r in out["infobatch"]["summary"]:
    print(f"{r['kind']:>10s}: acc {r['acc_mean']:.4f} +- {r['acc_std']:.4f}, "
          f"{r['steps_mean']:.0f} steps, {r['wall_mean']:.1f}s")
  for k, v in out["spearman"].items():
    print(f"spearman {k}: {v:+.3f}")


if __name__ == "__main__":
  cli.run(main)
