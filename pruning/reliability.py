"""How reliable is each pruning score? Rank agreement between independent runs, and cost.

For a score computed R times independently (EL2N / GraNd: R network inits and data orders;
forgetting: R training runs; prototypes: R encoder seeds, or several k), we report

  * Spearman rank correlation rho(s_a, s_b) between runs, averaged over pairs; for the
    scores that are averages over runs (EL2N, GraNd with ``num_runs``), also between
    disjoint averages of m runs (m = 1, 2, ...: how much averaging buys);
  * the overlap |K_a ∩ K_b| / |K_a| of the kept sets K at keep fractions f (default 0.5 and
    0.2; class-balanced keep-hard selection, `pruning.select.select_ids`), averaged over
    pairs; two independent random selections overlap by f in expectation;
  * the wall-clock cost of computing the score (seconds per run and in total).

The measurements live here; the driver that computes them for every score on a dataset and
writes the report is `experiments.reliability.run_reliability`.
"""
from __future__ import annotations

import itertools
from typing import Sequence

import numpy as np

from pruning import scores as scores_lib
from pruning import select


def spearman(a, b) -> float:
  return scores_lib.rank_correlation(a, b)


def kept_overlap(a, b, ids, labels, fraction: float, class_balanced: bool = True) -> float:
  """|K_a ∩ K_b| / |K_a| for the keep-hard sets of scores a and b at `fraction`."""
  ka = select.select_ids(a, ids, labels, fraction=fraction, mode="hard",
                         class_balanced=class_balanced)
  kb = select.select_ids(b, ids, labels, fraction=fraction, mode="hard",
                         class_balanced=class_balanced)
  return float(len(np.intersect1d(ka, kb)) / max(len(ka), 1))


def pairwise(runs: Sequence[np.ndarray], ids, labels, fractions=(0.5, 0.2)) -> dict:
  """Mean (and min/max) over pairs of runs of Spearman and kept-set overlaps."""
  runs = [np.asarray(r, np.float64) for r in runs]
  if len(runs) < 2:
    raise ValueError(f"reliability needs at least 2 runs, got {len(runs)}")
  pairs = list(itertools.combinations(range(len(runs)), 2))
  rho = [spearman(runs[i], runs[j]) for i, j in pairs]
  out = {"num_runs": len(runs), "num_pairs": len(pairs), "spearman": float(np.mean(rho)),
         "spearman_min": float(np.min(rho)), "spearman_max": float(np.max(rho))}
  for f in fractions:
    ov = [kept_overlap(runs[i], runs[j], ids, labels, f) for i, j in pairs]
    out[f"overlap@{f:g}"] = float(np.mean(ov))
  return out


def averaged_runs(per_run: np.ndarray, m: int) -> list:
  """Disjoint averages of m consecutive runs: floor(R / m) score vectors."""
  per_run = np.asarray(per_run)
  g = len(per_run) // int(m)
  return [per_run[i * m:(i + 1) * m].mean(0) for i in range(g)]
