"""The main job: pruning vs distillation at equal data budgets, plus the theory.

`run_comparison(config, workdir)`:
  1. validates the config (before any training);
  2. scores every training example once per pruning method (cached score
     files under workdir/scores);
  3. for each budget x seed: keeps examples by each (method, mode) or distils a
     support set (KIP, Label Solve), then evaluates the set twice - by training
     the same finite network with the shared trainer and by kernel ridge
     regression with the NTK - caching each cell under workdir/cells;
  4. writes results.csv / results.json, the plots and report.md / report.html, with two
     sections of their own: the scaling experiment's small grid (experiments.scaling) and
     distilled sets (KIP, Label Solve, DSA, DM, ...) beside random real images and the best
     pruning rule under evaluation controls (experiments.distill_controls: hard / own /
     teacher labels x augmentation at evaluation x cost).

Budgets: `per_class_budgets` (k examples of every class, exactly; all methods
incl. distillation) and `fractions` of the training set (pruning only). Every
selection is class-balanced (fractions are rounded per class), like the
distilled sets, so curves compare like with like. A rerun with the same workdir skips finished cells.
Identical subsets (e.g. every method at fraction 1.0) are trained once: cells are
cached by the hash of their example ids.
"""
from __future__ import annotations

import dataclasses
import json
import os
import time
from typing import Optional

import ml_collections
import numpy as np
from tqdm import tqdm

from experiments import report
from core.cells import CellCache
from core.io import atomic_write_text, fingerprint, is_writer
from core import data as data_lib
from pruning import scores as scores_lib
from pruning import select as select_lib

PRUNING_METHODS = tuple(scores_lib.SCORERS)  # every registered score, by name


def _distill_methods() -> tuple:
  from distill.evaluate import DISTILLERS  # imports neural-tangents: only when distilling
  return tuple(m for m in DISTILLERS if m != "random")


DISTILL_METHODS = ("kip", "label_solve")  # the kernel methods; others by registry name
MODES = ("hard", "easy", "ccs")


@dataclasses.dataclass(frozen=True)
class Cell:
  method: str
  mode: str           # 'hard' | 'easy' | 'ccs' | '-' (random, distillation)
  budget: int         # number of examples kept / distilled
  per_class: int      # k for per-class budgets, -1 for fraction budgets
  fraction: float
  seed: int

  @property
  def family(self) -> str:
    return "pruning" if self.method in PRUNING_METHODS else "distillation"


def validate(config, train: data_lib.ArrayDataset) -> None:
  """Fails fast, before any training, naming the bad value."""
  methods = list(config.pruning_methods) + list(config.distill_methods)
  if not methods:
    raise ValueError("empty method list: set config.pruning_methods and/or config.distill_methods")
  for m in config.pruning_methods:
    if m not in PRUNING_METHODS:
      raise ValueError(f"unknown pruning method {m!r}; choose from {PRUNING_METHODS}")
  if config.distill_methods:
    known = _distill_methods()
    for m in config.distill_methods:
      if m not in known:
        raise ValueError(f"unknown distillation method {m!r}; choose from {known}")
  for mode in config.modes:
    if mode not in MODES:
      raise ValueError(f"unknown selection mode {mode!r}; choose from {MODES}")
  if not list(config.seeds):
    raise ValueError("empty seed list: set config.seeds")
  if not list(config.per_class_budgets) and not list(config.fractions):
    raise ValueError("no budgets: set config.per_class_budgets and/or config.fractions")
  smallest = int(np.bincount(train.labels, minlength=train.num_classes).min())
  for k in config.per_class_budgets:
    if not 1 <= int(k) <= smallest:
      raise ValueError(f"per-class budget {k} is larger than the dataset allows: the smallest "
                       f"class of {train.name} has {smallest} examples (budgets must be in "
                       f"[1, {smallest}])")
  for f in config.fractions:
    select_lib.check_fraction(f)
  if config.distill_methods and not list(config.per_class_budgets):
    raise ValueError("distillation methods need per-class budgets (config.per_class_budgets)")


def plan_cells(config, train: data_lib.ArrayDataset) -> list[Cell]:
  n, c = len(train), train.num_classes
  class_sizes = np.bincount(train.labels, minlength=c)
  cells = []
  for seed in config.seeds:
    for k in config.per_class_budgets:
      budget = int(k) * c
      for m in config.pruning_methods:
        for mode in (("-",) if m == "random" else config.modes):
          cells.append(Cell(m, mode, budget, int(k), budget / n, int(seed)))
      for m in config.distill_methods:
        cells.append(Cell(m, "-", budget, int(k), budget / n, int(seed)))
    for f in config.fractions:
      budget = sum(select_lib.num_keep(f, int(n_c)) for n_c in class_sizes)
      for m in config.pruning_methods:
        for mode in (("-",) if m == "random" else config.modes):
          cells.append(Cell(m, mode, budget, -1, float(f), int(seed)))
  return cells


def keep_ids(cell: Cell, score: Optional[scores_lib.ScoreResult], train: data_lib.ArrayDataset,
             config) -> np.ndarray:
  """Stable ids of the examples a pruning cell keeps."""
  if cell.per_class > 0:
    if cell.method == "random":
      return data_lib.class_balanced_ids(train, cell.per_class, cell.seed)
    labels = train.labels
    out = []
    for c in range(train.num_classes):
      members = labels == c
      out.append(select_lib.select_ids(score.scores[members], score.ids[members],
                                       count=cell.per_class, mode=cell.mode, seed=cell.seed,
                                       ccs_beta=config.ccs_beta))
    return np.concatenate(out)
  if cell.method == "random":
    return select_lib.select_ids(np.zeros(len(train)), train.ids, train.labels,
                                 fraction=cell.fraction, mode="random", class_balanced=True,
                                 seed=cell.seed)
  return select_lib.select_ids(score.scores, score.ids, train.subset(score.ids).labels,
                               fraction=cell.fraction, mode=cell.mode, class_balanced=True,
                               seed=cell.seed, ccs_beta=config.ccs_beta)


def cell_cache(workdir: str, fingerprint: str) -> CellCache:
  """One JSON file per evaluated set, workdir/cells/<key>-<fingerprint>.json, keyed by what
  determines its result: the set's content (or distillation method, budget), the seed, and
  a fingerprint of the data and the evaluation/distillation configs (changing those re-runs).
  A corrupt cell raises CorruptFileError naming it: delete it and rerun."""
  return CellCache(os.path.join(workdir, "cells"), suffix=fingerprint, what="comparison cell",
                   sort_keys=True, default=float)  # the layout of report.write_json


class Evaluator:
  """Evaluates a kept subset (hard labels) or a distilled support set (soft labels)
  both ways: the same finite network trained with the shared trainer, and KRR."""

  def __init__(self, config, data: data_lib.DatasetSplits):
    self.config, self.data = config, data

  def krr_accuracy(self, support) -> float:
    from distill import evaluate as distill_eval
    return distill_eval.krr_test_metrics(support, self.data.test,
                                         self.config.distill)["krr_test_accuracy"]

  def pruned(self, ids: np.ndarray, seed: int) -> dict:
    """Cross-entropy training on the kept examples (Data Diet protocol)."""
    from core import train as train_lib
    from distill import krr
    from distill.support import SupportSet
    sub = self.data.train.subset(ids)
    tc = ml_collections.ConfigDict(self.config.train.to_dict())
    tc.seed = int(seed)
    splits = data_lib.DatasetSplits(sub, self.data.test, self.data.num_classes, self.data.name)
    net = train_lib.train_and_evaluate(tc, None, data=splits).metrics["test_accuracy"]
    support = SupportSet(sub.x, np.asarray(krr.centered_one_hot(sub.labels,
                                                                    self.data.num_classes)),
                         sub.labels, sub.ids)
    return {"network_accuracy": float(net), "krr_accuracy": self.krr_accuracy(support),
            "num_examples": int(len(ids))}

  def distilled(self, method: str, per_class: int, seed: int, workdir: str) -> dict:
    """MSE training on the learned soft labels (centred at init), as distill/ does."""
    from distill import evaluate as distill_eval
    support = distill_eval.distill_support(
        method, self.data.train, per_class, self.config.distill, seed=seed,
        workdir=os.path.join(workdir, "distill", f"{method}_k{per_class}_s{seed}"))
    # the one evaluation network: config.train, as for the pruned cells
    net = distill_eval.finite_network_eval(
        support, self.data, self.config.train, seed=seed,
        center_at_init=bool(self.config.distill.finite.center_at_init))
    return {"network_accuracy": net["finite_test_accuracy"],
            "krr_accuracy": self.krr_accuracy(support), "num_examples": int(len(support.x))}


def run_cell(cell: Cell, scores: dict, evaluator: Evaluator, cache: CellCache, config,
             workdir: str) -> dict:
  row = dict(dataclasses.asdict(cell), family=cell.family)
  t0 = time.time()
  if cell.family == "pruning":
    ids = keep_ids(cell, scores.get(cell.method), evaluator.data.train, config)
    key = "set-" + fingerprint(f"seed={cell.seed}", np.sort(ids), length=20)
    result = cache.get(key)
    if result is None:
      result = evaluator.pruned(ids, cell.seed)
      cache.put(key, result)
  else:
    key = f"{cell.method}-k{cell.per_class}-s{cell.seed}"
    result = cache.get(key)
    if result is None:
      result = evaluator.distilled(cell.method, cell.per_class, cell.seed, workdir)
      cache.put(key, result)
  row.update(result)
  row["seconds"] = round(time.time() - t0, 2)
  return row


def theory_curves(config) -> dict:
  """Replica eps(alpha_prune) at theta = 0 for the configured keep fractions."""
  from theory import replica
  alpha = np.geomspace(*config.theory.alpha_range, config.theory.num_alpha)
  out = {}
  for keep, style in (("hard", "-"), ("easy", "--")):
    for f in config.theory.fractions:
      eps = np.asarray(replica.generalization_error(alpha, f=float(f), theta=0.0, keep=keep))
      out[f"keep {keep}, f={f:g}"] = {"alpha_prune": alpha, "eps": eps, "style": style}
  return out


def protocol_notes(config, data) -> str:
  t = config.train
  text = (
      f"Dataset `{data.name}`: {len(data.train)} train / {len(data.test)} test examples, "
      f"{data.num_classes} classes; seeds {list(config.seeds)}. Every set is class-balanced. "
      f"Pruned sets: the network `{t.model.name}` trained for {t.num_steps} steps with "
      f"cross-entropy (batch {t.batch_size}, {t.optimizer.name} lr {t.optimizer.lr}). "
      f"Distilled sets: the same network and steps, MSE on the learned labels, output centred "
      f"at initialisation. Kernel regression: {config.distill.kernel.architecture.upper()} "
      f"{config.distill.kernel.kernel_type.upper()} (depth {config.distill.kernel.depth}), "
      f"reg {config.distill.kip.reg} x mean diagonal. KIP: {config.distill.kip.steps} Adam "
      f"steps, lr {config.distill.kip.lr}. Scores (EL2N, GraNd, forgetting, prototypes) are "
      f"computed once on the full training set, so keep-hard / keep-easy sets are the same for "
      f"every seed (seeds change the network's initialisation and data order, and the random "
      f"and distilled sets); that is why their kernel-regression spread is 0.")
  return text + ("\n\n" + config.notes if config.get("notes") else "")


def run_comparison(config: ml_collections.ConfigDict, workdir: str) -> list[dict]:
  """Runs (or resumes) the comparison and writes the report; returns the rows.

  Multi-host (`jax.distributed`, a work folder every process sees): every process runs
  the same cells in the same order (the trainer's steps are collective; scoring is split
  over hosts), and only process 0 writes files (`core.io`).
  """
  data = data_lib.load_dataset(**config.dataset)
  validate(config, data.train)
  os.makedirs(workdir, exist_ok=True)
  atomic_write_text(os.path.join(workdir, "config.json"), config.to_json_best_effort(indent=1))
  cells = plan_cells(config, data.train)
  scores, score_seconds = compute_all_scores(config, data, workdir)
  evaluator = Evaluator(config, data)
  cache = cell_cache(workdir, fingerprint(
      [data.train.fingerprint(), data.test.fingerprint(), config.train.to_dict(),
       config.distill.to_dict()], length=20))
  rows = []
  show = config.progress_bar and is_writer()
  for cell in tqdm(cells, desc="comparison cells", disable=not show):
    rows.append(run_cell(cell, scores, evaluator, cache, config, workdir))
  report.write_csv(rows, os.path.join(workdir, "results.csv"))  # process 0 writes (core.io)
  report.write_json(rows, os.path.join(workdir, "results.json"))
  # every process: the sections train networks collectively
  sections = (scaling_sections(config, workdir)
              + controls_sections(config, workdir, rows, data, scores, score_seconds))
  if not is_writer():  # the report is process 0's
    return rows
  plots = {
      "Test error vs budget": report.plot_error_vs_budget(
          rows, os.path.join(workdir, "error_vs_budget.png"), data.name),
      "Pruning vs distillation frontier": report.plot_frontier(
          rows, os.path.join(workdir, "frontier.png"), data.name),
      "Theory beside measured pruning": report.plot_theory_beside_measured(
          rows, theory_curves(config), os.path.join(workdir, "theory_vs_measured.png"),
          data.name, len(data.train)),
  }
  report.write_report(rows, workdir, dataset=data.name,
                      config_json=config.to_json_best_effort(indent=1), plots=plots,
                      notes=protocol_notes(config, data), sections=sections)
  return rows


def compute_all_scores(config, data, workdir: str) -> tuple[dict, dict]:
  """({method: ScoreResult}, {method: seconds}) of every pruning method but random, cached
  under workdir/scores. The seconds are what each score took when it was computed (the score
  file's ``compute_seconds``; NaN for a file written before it was recorded), the cost
  column of the controls section."""
  cache_dir = os.path.join(workdir, "scores")
  scores, seconds = {}, {}
  for m in config.pruning_methods:
    if m == "random":
      continue
    sc = ml_collections.ConfigDict(config.scores.to_dict())
    sc.train = config.score_train
    scores[m] = scores_lib.compute_scores(m, data, sc, cache_dir=cache_dir, log=tqdm.write)
    seconds[m] = float(scores[m].meta.get("compute_seconds", float("nan")))
  return scores, seconds


def best_pruning_sets(config, rows: list, data, scores: dict, controls_config,
                      score_seconds: dict) -> list:
  """The best pruning rule (score x mode, by mean finite-network accuracy over the comparison's
  seeds) at each per-class budget the controls run at, as GivenSets (real examples, hard
  targets) for experiments.distill_controls, one per controls seed. Cost: the seconds the
  score took when it was computed (`score_seconds`; random is never the best rule here)."""
  from distill import controls
  from distill.support import SupportSet
  from experiments.distill_controls import GivenSet
  out = []
  for ipc in controls_config.images_per_class:
    cand = {}
    for r in rows:
      if r["family"] == "pruning" and r["per_class"] == int(ipc) and r["method"] != "random":
        cand.setdefault((r["method"], r["mode"]), []).append(r["network_accuracy"])
    if not cand:
      continue
    (method, mode), _ = max(cand.items(), key=lambda kv: (np.mean(kv[1]), kv[0]))
    budget = int(ipc) * data.num_classes
    for seed in controls_config.seeds:
      cell = Cell(method, mode, budget, int(ipc), budget / len(data.train), int(seed))
      ids = keep_ids(cell, scores.get(method), data.train, config)
      sub = data.train.subset(ids)
      support = SupportSet(x=np.asarray(sub.x),
                           y=controls.hard_targets(sub.labels, data.num_classes),
                           labels=np.asarray(sub.labels), init_ids=np.asarray(ids))
      cost = {"cost_seconds": float(score_seconds[method]), "cost_example_passes": 0.0,
              "cost_kernel_entries": 0.0}
      out.append(GivenSet(method="pruned", display=f"best pruning: {report.label(method, mode)}",
                          images_per_class=int(ipc), seed=int(seed), support=support,
                          cost=cost))
  return out


def controls_sections(config, workdir: str, rows: list, data, scores: dict,
                      score_seconds: dict) -> tuple:
  """Distilled sets beside random real images and the best pruning rule under the evaluation
  controls (experiments.distill_controls), cached under workdir/distill_controls, as a report
  section. Every set is trained by the comparison's own evaluation network (config.train)."""
  dc = config.get("distill_controls")
  if dc is None or not dc.get("enabled", False):
    return ()
  from experiments import distill_controls
  cc = ml_collections.ConfigDict(dc.config.to_dict())
  if dict(cc.dataset) != dict(config.dataset):
    raise ValueError(f"distill_controls.config.dataset {dict(cc.dataset)} differs from the "
                     f"comparison's {dict(config.dataset)}: set them equal")
  cc.finite_train = ml_collections.ConfigDict(config.train.to_dict())  # the one evaluation net
  cc.kip_fc = dict(kernel=config.distill.kernel.to_dict(), kip=config.distill.kip.to_dict())
  cc.label_solve = config.distill.label_solve.to_dict()  # the KIP / Label Solve rows above
  given = []
  if dc.get("best_pruning", True):
    given = best_pruning_sets(config, rows, data, scores, cc, score_seconds)
  out = os.path.join(workdir, "distill_controls")
  res = distill_controls.run_distill_controls(cc, out, data=data, given_sets=given,
                                              progress=bool(config.progress_bar))
  return (distill_controls.controls_section(distill_controls.summarize(res), cc,
                                            image_prefix="distill_controls/", workdir=out),)


def scaling_sections(config, workdir: str) -> tuple:
  """The scaling experiment (experiments.scaling) on a small grid, cached under
  workdir/scaling, as report sections: the headline result beside the comparison."""
  sc = config.get("scaling")
  if sc is None or not sc.get("enabled", False):
    return ()
  from experiments import scaling
  out = os.path.join(workdir, "scaling")
  results = scaling.run_scaling(sc.config, out, verbose=bool(config.progress_bar))
  return (scaling.scaling_section(results, image_prefix="scaling/"),)
