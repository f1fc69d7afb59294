"""RHO-LOSS online batch selection (Mindermann et al., ICML 2022).

"Prioritized Training on Points that are Learnable, Worth Learning, and Not Yet
Learnt": at every step draw a large candidate batch of n_B examples, score each
by its *reducible holdout loss*

    rho(x, y) = L[y | x; current model] - L[y | x; irreducible-loss (IL) model]

and take the gradient step on the top n_b. The IL model is a small model trained
once, before the run, on a holdout split; its per-example losses on the training
pool are computed once and stored by example id (a score file). Noisy labels
have a high training loss *and* a high IL loss, so RHO-LOSS skips them, while
highest-loss selection keeps picking them.

Pieces
  * selectors (pure, deterministic, tie-break by smaller id):
    `select(method, candidate_ids, candidate_losses, n_b, il_losses)` for
    method in `METHODS`: 'uniform' (first n_b candidates), 'loss' (highest
    training loss), 'il' (lowest IL loss), 'rholoss' (highest training - IL).
  * `BatchSelector`: the callable for the trainer's `batch_selector` slot,
    ``selector(step, candidate_ids, candidate_losses, n_b) -> selected ids``;
    it also counts how often each id was a candidate / was selected.
  * `ILLosses`: IL losses by example id (`lookup(ids)`), saved / loaded as a
    score file.
  * label noise: `flip_labels` (flip a fixed fraction to a *different* random
    class with a fixed seed, returns the noisy ids); `split_holdout`.
  * IL model: `train_il_model` (the shared trainer on the holdout ids),
    `il_losses_from_model` (its per-example losses on the training pool).
  * the label-noise experiment: `run_experiment(config, workdir)` and
    `plot_results`; entry point ``scripts/rholoss.py``.

Which split trains the IL model: a fixed random part of the *training* split
(`config.il.holdout_fraction`, seed `config.il.holdout_seed`), which then is
excluded from the pool every target model trains on (all methods, uniform
included, see the same pool). The test split is never used for the IL model.
The label noise is applied to the whole training split before the holdout is
cut, so the IL model also sees noisy labels (as a practitioner's holdout would).
"""
from __future__ import annotations

import json
import os
from typing import Callable, Dict, Optional, Sequence

import numpy as np

from pruning.data import ArrayDataset, DataError
from pruning.files import atomic_savefig, atomic_write_text

METHODS = ("uniform", "loss", "il", "rholoss")


# ----------------------------------------------------------------------------
# Selection: pure functions.


def per_example_xent(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
  """Softmax cross-entropy per example (float64), labels int (n,) or soft (n, C)."""
  logits = np.asarray(logits, np.float64)
  labels = np.asarray(labels)
  m = logits.max(axis=1, keepdims=True)
  logz = (m + np.log(np.exp(logits - m).sum(axis=1, keepdims=True)))[:, 0]
  if labels.ndim == 1:
    return logz - logits[np.arange(len(labels)), labels.astype(np.int64)]
  return logz - (labels * logits).sum(axis=1)


def select_top(ids: np.ndarray, priority: np.ndarray, n_b: int) -> np.ndarray:
  """The `n_b` ids of highest priority, in order of decreasing priority.

  Ties are broken by smaller id, so the result does not depend on the order of
  the candidates. Raises on NaN priorities, duplicated ids or n_b > len(ids).
  """
  ids = np.asarray(ids)
  priority = np.asarray(priority, np.float64)
  if ids.ndim != 1 or priority.shape != ids.shape:
    raise ValueError(f"ids {ids.shape} and priorities {priority.shape} must be 1-D, same length")
  if not 1 <= int(n_b) <= len(ids):
    raise ValueError(f"cannot select n_b={n_b} of {len(ids)} candidates")
  if np.isnan(priority).any():
    bad = ids[np.isnan(priority)][:10].tolist()
    raise ValueError(f"NaN selection priority (diverged training loss?) for ids {bad}")
  if len(np.unique(ids)) != len(ids):
    raise ValueError("candidate ids must be distinct")
  order = np.lexsort((ids, -priority))  # last key is primary: priority desc, then id asc
  return ids[order[:int(n_b)]]


def selection_priority(method: str, candidate_losses: np.ndarray,
                       il_losses: Optional[np.ndarray] = None) -> np.ndarray:
  """Higher is selected first. 'uniform' has no priority (see `select`)."""
  losses = np.asarray(candidate_losses, np.float64)
  if method == "loss":
    return losses
  if method in ("il", "rholoss"):
    if il_losses is None:
      raise ValueError(f"method {method!r} needs IL losses")
    il = np.asarray(il_losses, np.float64)
    if il.shape != losses.shape:
      raise ValueError(f"IL losses {il.shape} vs candidate losses {losses.shape}")
    return -il if method == "il" else losses - il
  raise ValueError(f"unknown selection method {method!r}; choose from {METHODS}")


def select(method: str, candidate_ids: np.ndarray, candidate_losses: np.ndarray, n_b: int,
           il_losses: Optional[np.ndarray] = None) -> np.ndarray:
  """Selected ids of one step (pure). `il_losses` aligned with `candidate_ids`.

  'uniform' takes the first n_b candidates (the candidates are a uniform
  random draw, so this is plain uniform training with batch n_b).
  """
  candidate_ids = np.asarray(candidate_ids)
  if method == "uniform":
    if not 1 <= int(n_b) <= len(candidate_ids):
      raise ValueError(f"cannot select n_b={n_b} of {len(candidate_ids)} candidates")
    return candidate_ids[:int(n_b)].copy()
  return select_top(candidate_ids, selection_priority(method, candidate_losses, il_losses), n_b)


# ----------------------------------------------------------------------------
# IL losses by example id.


class ILLosses:
  """Per-example irreducible losses keyed by stable example id."""

  def __init__(self, ids: np.ndarray, losses: np.ndarray, metadata: Optional[dict] = None):
    ids = np.asarray(ids, np.int64)
    losses = np.asarray(losses, np.float64)
    if ids.ndim != 1 or losses.shape != ids.shape:
      raise DataError(f"IL losses: ids {ids.shape} and losses {losses.shape} must match")
    if len(np.unique(ids)) != len(ids):
      raise DataError("IL losses: duplicated ids")
    if not np.isfinite(losses).all():
      raise DataError(f"IL losses: non-finite values at ids {ids[~np.isfinite(losses)][:10].tolist()}")
    order = np.argsort(ids, kind="stable")
    self.ids, self.losses = ids[order], losses[order]
    self.metadata = dict(metadata or {})

  def __len__(self) -> int:
    return len(self.ids)

  def lookup(self, ids: np.ndarray) -> np.ndarray:
    ids = np.asarray(ids, np.int64)
    pos = np.clip(np.searchsorted(self.ids, ids), 0, len(self.ids) - 1)
    bad = self.ids[pos] != ids
    if bad.any():
      raise DataError(f"IL losses: no IL loss for ids {ids[bad][:10].tolist()}")
    return self.losses[pos]

  def save(self, path: str) -> None:
    save_scores(path, self.ids, self.losses, self.metadata)

  @classmethod
  def load(cls, path: str, dataset: Optional[ArrayDataset] = None) -> "ILLosses":
    """With `dataset` (the pool the losses are for), checks ids and fingerprint."""
    ids, scores, meta = load_scores(path, dataset)
    return cls(ids, scores, meta)


def save_scores(path: str, ids: np.ndarray, scores: np.ndarray, metadata: dict) -> None:
  """Score file in the shared `pruning.score_io` format (npz + JSON metadata, atomic)."""
  from pruning import score_io
  meta = dict(metadata)
  meta.setdefault("method", "il_loss")
  meta.setdefault("num_examples", int(len(ids)))
  score_io.save(path, score_io.ScoreResult(ids, scores, meta))


def load_scores(path: str, dataset: Optional[ArrayDataset] = None):
  """(ids, scores, metadata) of a score file; with `dataset`, checks ids + fingerprint."""
  from pruning import score_io
  res = score_io.load(path, dataset)
  return res.ids, res.scores, dict(res.meta)


# ----------------------------------------------------------------------------
# The trainer's batch_selector.


class BatchSelector:
  """``selector(step, candidate_ids, candidate_losses, n_b) -> selected ids``.

  Wraps the pure `select` for one method and tallies, per example id, how often
  it was a candidate and how often it was selected (host-side counters, used for
  the noisy-selection statistics). `noisy_ids` (optional) marks flipped labels.
  """

  def __init__(self, method: str, il: Optional[ILLosses] = None,
               noisy_ids: Optional[Sequence[int]] = None):
    if method not in METHODS:
      raise ValueError(f"unknown selection method {method!r}; choose from {METHODS}")
    if method in ("il", "rholoss") and il is None:
      raise ValueError(f"method {method!r} needs IL losses")
    self.method, self.il = method, il
    self.noisy_ids = np.unique(np.asarray([] if noisy_ids is None else noisy_ids, np.int64))
    self.selected_count: Dict[int, int] = {}
    self.candidate_count: Dict[int, int] = {}
    self.log: list = []  # (step, selected ids) of every call
    self.num_selected = 0
    self.num_noisy_selected = 0
    self.num_candidates = 0
    self.num_noisy_candidates = 0

  def __call__(self, step: int, candidate_ids, candidate_losses, n_b: int) -> np.ndarray:
    candidate_ids = np.asarray(candidate_ids).astype(np.int64)
    il = self.il.lookup(candidate_ids) if self.method in ("il", "rholoss") else None
    out = select(self.method, candidate_ids, np.asarray(candidate_losses), int(n_b), il)
    self._tally(int(step), candidate_ids, out)
    return out

  def _tally(self, step, cand, out):
    self.log.append((step, out.copy()))
    for i in cand.tolist():
      self.candidate_count[i] = self.candidate_count.get(i, 0) + 1
    for i in out.tolist():
      self.selected_count[i] = self.selected_count.get(i, 0) + 1
    self.num_candidates += len(cand)
    self.num_selected += len(out)
    if len(self.noisy_ids):
      self.num_noisy_candidates += int(np.isin(cand, self.noisy_ids).sum())
      self.num_noisy_selected += int(np.isin(out, self.noisy_ids).sum())

  def stats(self) -> dict:
    """Noisy share among selected vs among candidates (the base rate)."""
    sel = self.num_noisy_selected / max(self.num_selected, 1)
    cand = self.num_noisy_candidates / max(self.num_candidates, 1)
    return dict(method=self.method, steps=len(self.log), selected=self.num_selected,
                candidates=self.num_candidates, noisy_selected=self.num_noisy_selected,
                noisy_candidates=self.num_noisy_candidates,
                noisy_selected_frac=sel, noisy_candidate_frac=cand,
                noisy_selection_ratio=sel / cand if cand > 0 else float("nan"))


# ----------------------------------------------------------------------------
# Label noise and the holdout split.


def flip_labels(labels: np.ndarray, ids: np.ndarray, fraction: float, num_classes: int,
                seed: int):
  """Flips round(fraction * n) labels to a different uniformly random class.

  Returns (new_labels, noisy_ids) with noisy_ids sorted. Deterministic in seed.
  """
  labels = np.asarray(labels)
  ids = np.asarray(ids, np.int64)
  if labels.ndim != 1:
    raise DataError("flip_labels needs integer labels (n,)")
  if not 0.0 <= float(fraction) <= 1.0:
    raise DataError(f"label-noise fraction must be in [0, 1], got {fraction}")
  if num_classes < 2 and fraction > 0:
    raise DataError("label noise needs at least 2 classes")
  rng = np.random.default_rng([int(seed), 7])
  k = int(round(float(fraction) * len(labels)))
  pos = np.sort(rng.choice(len(labels), size=k, replace=False))
  new = labels.copy()
  new[pos] = (labels[pos] + rng.integers(1, num_classes, size=k)) % num_classes
  return new.astype(labels.dtype), np.sort(ids[pos])


def split_holdout(ids: np.ndarray, fraction: float, seed: int):
  """(pool_ids, holdout_ids): a fixed random `fraction` of ids held out, both sorted."""
  ids = np.asarray(ids, np.int64)
  if not 0.0 < float(fraction) < 1.0:
    raise DataError(f"holdout fraction must be in (0, 1), got {fraction}")
  k = int(round(float(fraction) * len(ids)))
  if k < 1 or k >= len(ids):
    raise DataError(f"holdout of {k} of {len(ids)} examples is empty or everything")
  perm = np.random.default_rng([int(seed), 11]).permutation(len(ids))
  return np.sort(ids[perm[k:]]), np.sort(ids[perm[:k]])


# ----------------------------------------------------------------------------
# Results: summary, files and plot.
#
# results = {"config": {...}, "methods": {method: {"seeds": {seed: run}}}, ...}
# run = {"steps": [...], "test_acc": [...], "examples_seen": [...],
#        "selection": BatchSelector.stats() or None}


METHOD_STYLE = {"rholoss": ("RHO-LOSS", "tab:red"), "uniform": ("uniform", "tab:blue"),
                "loss": ("highest loss", "tab:green"), "il": ("lowest IL loss", "tab:purple")}


def _curves(results: dict, method: str, key: str = "test_acc"):
  runs = list(results["methods"][method]["seeds"].values())
  steps = np.asarray(runs[0]["steps"])
  for r in runs:
    if len(r["steps"]) != len(steps) or not np.array_equal(r["steps"], steps):
      raise ValueError(f"{method}: seeds were evaluated at different steps")
  return steps, np.asarray([r[key] for r in runs], np.float64)


def steps_to_reach(steps: np.ndarray, acc: np.ndarray, target: float) -> Optional[int]:
  """First evaluated step whose accuracy is >= target (None if never)."""
  hit = np.nonzero(np.asarray(acc) >= target)[0]
  return int(np.asarray(steps)[hit[0]]) if len(hit) else None


def summarize(results: dict, baseline: str = "uniform") -> dict:
  """Per method: final / best mean accuracy, steps (and examples seen) to reach
  the baseline's final mean accuracy (on the seed-mean curve), noisy shares."""
  out = {}
  target = None
  if baseline in results["methods"]:
    _, acc = _curves(results, baseline)
    target = float(acc[:, -1].mean())
  for m in results["methods"]:
    steps, acc = _curves(results, m)
    _, seen = _curves(results, m, "examples_seen")
    mean = acc.mean(0)
    s = dict(final_acc_mean=float(mean[-1]), final_acc_std=float(acc[:, -1].std()),
             best_acc_mean=float(mean.max()), num_seeds=int(acc.shape[0]),
             total_steps=int(steps[-1]))
    if target is not None:
      hit = steps_to_reach(steps, mean, target)
      s["baseline_final_acc"] = target
      s["steps_to_baseline_final"] = hit
      s["examples_seen_to_baseline_final"] = (
          None if hit is None else float(seen.mean(0)[list(steps).index(hit)]))
      s["per_seed_steps_to_baseline_final"] = [steps_to_reach(steps, a, target) for a in acc]
      best = float(_curves(results, baseline)[1].mean(0).max())
      s["baseline_best_acc"] = best
      s["steps_to_baseline_best"] = steps_to_reach(steps, mean, best)
    sel = [r.get("selection") for r in results["methods"][m]["seeds"].values()]
    sel = [x for x in sel if x]
    if sel:
      s["noisy_selected_frac"] = float(np.mean([x["noisy_selected_frac"] for x in sel]))
      s["noisy_candidate_frac"] = float(np.mean([x["noisy_candidate_frac"] for x in sel]))
    out[m] = s
  return out


def write_results(results: dict, workdir: str) -> dict:
  """results.json (everything) and curves.csv (long format), both atomic."""
  paths = dict(json=os.path.join(workdir, "results.json"),
               csv=os.path.join(workdir, "curves.csv"))
  atomic_write_text(paths["json"], json.dumps(results, indent=1, default=_jsonable))
  lines = ["method,seed,step,examples_seen,test_acc"]
  for m, d in results["methods"].items():
    for seed, r in d["seeds"].items():
      for st, ex, a in zip(r["steps"], r["examples_seen"], r["test_acc"]):
        lines.append(f"{m},{seed},{int(st)},{int(ex)},{float(a):.6f}")
  atomic_write_text(paths["csv"], "\n".join(lines) + "\n")
  return paths


def _jsonable(o):
  if isinstance(o, (np.integer,)):
    return int(o)
  if isinstance(o, (np.floating,)):
    return float(o)
  if isinstance(o, np.ndarray):
    return o.tolist()
  return str(o)


def plot_results(results: dict, path: str, title: str = "") -> str:
  """Test accuracy vs gradient steps and vs examples seen (mean +- seed band,
  min..max shaded), plus the share of noisy labels among selected examples."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  fig, axes = plt.subplots(1, 3, figsize=(13.5, 4.0), gridspec_kw=dict(width_ratios=[1, 1, 0.7]))
  summary = summarize(results)
  for m in results["methods"]:
    label, color = METHOD_STYLE.get(m, (m, None))
    steps, acc = _curves(results, m)
    _, seen = _curves(results, m, "examples_seen")
    acc = 100 * acc
    for ax, x in ((axes[0], steps), (axes[1], seen.mean(0))):
      k = (x > 0) if ax is axes[1] else np.ones(len(x), bool)  # the log axis has no 0
      ax.plot(x[k], acc.mean(0)[k], color=color, lw=1.8, label=f"{label} ({acc.shape[0]} seeds)")
      ax.fill_between(x[k], acc.min(0)[k], acc.max(0)[k], color=color, alpha=0.18, lw=0)
  tgt = summary.get("uniform", {}).get("baseline_final_acc")
  for ax, xl in ((axes[0], "gradient steps"), (axes[1], "examples seen (incl. candidates)")):
    if tgt is not None:
      ax.axhline(100 * tgt, color="gray", ls=":", lw=1, label="uniform final acc")
    ax.set_xlabel(xl)
    ax.set_ylabel("test accuracy (%)")
    ax.grid(alpha=0.3)
    lo = min(100 * _curves(results, m)[1].mean(0)[len(_curves(results, m)[0]) // 5]
             for m in results["methods"])
    ax.set_ylim(max(0, lo - 5), None)
  axes[1].set_xscale("log")
  axes[0].legend(fontsize=8, loc="lower right")
  axes[0].set_title("seed mean, band = min..max over seeds", fontsize=9)
  # noisy share among selected examples
  ms = [m for m in results["methods"] if "noisy_selected_frac" in summary[m]]
  ax = axes[2]
  if ms:
    vals = [100 * summary[m]["noisy_selected_frac"] for m in ms]
    ax.bar(range(len(ms)), vals, color=[METHOD_STYLE.get(m, (m, "gray"))[1] for m in ms])
    ax.set_xticks(range(len(ms)), [METHOD_STYLE.get(m, (m,))[0] for m in ms], fontsize=8)
    base = 100 * np.mean([summary[m]["noisy_candidate_frac"] for m in ms])
    ax.axhline(base, color="gray", ls=":", lw=1, label=f"noisy share of candidates {base:.0f}%")
    for i, v in enumerate(vals):
      ax.text(i, v, f"{v:.1f}%", ha="center", va="bottom", fontsize=8)
    ax.set_ylim(0, 1.25 * max(max(vals), base))
    ax.legend(fontsize=8, loc="upper left")
  ax.set_ylabel("noisy labels among selected (%)")
  ax.set_title("selected examples with flipped labels", fontsize=9)
  if title:
    fig.suptitle(title, fontsize=10)
  fig.tight_layout()
  return atomic_savefig(fig, path, dpi=90)


# ----------------------------------------------------------------------------
# IL model and the label-noise experiment (use the shared trainer).


def noisy_splits(config):
  """(data with flipped training labels, noisy_ids, pool_ids, holdout_ids).

  `config.dataset` are load_dataset kwargs; `config.rholoss` holds
  noise_fraction / noise_seed / holdout_fraction / holdout_seed.
  """
  import dataclasses
  from pruning.data import load_dataset
  r = config.rholoss
  data = load_dataset(**dict(config.dataset))
  y, noisy = flip_labels(data.train.labels, data.train.ids, float(r.noise_fraction),
                         data.num_classes, int(r.noise_seed))
  data = dataclasses.replace(data, train=data.train.with_targets(y.astype(np.int32)))
  pool, holdout = split_holdout(data.train.ids, float(r.holdout_fraction), int(r.holdout_seed))
  return data, noisy, pool, holdout


def il_config(config):
  """Trainer config of the IL model: `config` with `config.rholoss.il` overrides,
  no selection, no checkpoints."""
  c = config.copy_and_resolve_references()
  with c.unlocked():
    del c["rholoss"]
    c.selection.candidate_batch_size = 0
    for k in ("num_steps", "num_epochs", "num_examples"):
      c[k] = None
    il = config.rholoss.il
    for k, v in il.items():
      if k == "optimizer":
        c.optimizer.update(dict(v))
      else:
        c[k] = v.to_dict() if hasattr(v, "to_dict") else v
    c.checkpoint = False
    c.eval_every_steps = 0
  return c


def il_losses_from_model(model, variables_or_state, dataset: ArrayDataset, batch_size: int = 1024,
                         loss: str = "cross_entropy", num_devices=None,
                         metadata: Optional[dict] = None) -> ILLosses:
  """Per-example loss of a trained IL model on every example of `dataset`."""
  import jax.numpy as jnp
  from pruning import train
  out = train.predict(model, variables_or_state, dataset, batch_size, num_devices=num_devices)
  l = np.asarray(train.per_example_loss(jnp.asarray(out["logits"]), jnp.asarray(dataset.y), loss))
  return ILLosses(out["ids"], l.astype(np.float64), metadata)


def train_il_model(config, data, holdout_ids, pool_ids, cache_path: Optional[str] = None,
                   log: Callable[[str], None] = print):
  """Trains the IL model on `holdout_ids` and returns (ILLosses on the pool, info).

  With `cache_path`, reuses that score file when it is for the same pool
  (fingerprint) and IL config, else computes and writes it.
  """
  from pruning import score_io, train
  cfg = il_config(config)
  pool = data.train.subset(pool_ids)
  key = score_io.config_key("il_loss", dict(il=cfg.to_dict(), holdout=np.asarray(holdout_ids)),
                            pool.fingerprint())
  if cache_path and os.path.exists(cache_path):
    il = ILLosses.load(cache_path, pool)
    if il.metadata.get("key") == key:
      log(f"reusing IL losses {cache_path}")
      return il, dict(il.metadata.get("il_model", {}))
  res = train.train_and_evaluate(cfg, None, data=data, train_ids=holdout_ids)
  info = dict(test_accuracy=res.metrics.get("test_accuracy"), steps=res.metrics.get("steps"),
              train_loss=res.metrics.get("train_loss"), num_holdout=int(len(holdout_ids)),
              model=cfg.model.to_dict())
  meta = dict(method="il_loss", dataset=data.train.name, fingerprint=pool.fingerprint(),
              num_examples=len(pool), key=key, il_model=info,
              config=score_io.to_jsonable(cfg),
              note="IL model trained on the holdout ids, losses on the pool (noisy labels)")
  il = il_losses_from_model(res.model, res.state, pool, int(cfg.eval_batch_size),
                            cfg.get("loss", "cross_entropy"), cfg.get("num_devices"), meta)
  if cache_path:
    il.save(cache_path)
  log(f"IL model: test acc {info['test_accuracy']:.4f} after {info['steps']} steps on "
      f"{len(holdout_ids)} holdout examples")
  return il, info


def run_method(config, data, pool_ids, method: str, seed: int, il: Optional[ILLosses],
               noisy_ids: np.ndarray) -> dict:
  """One target-model run; returns the curve and the selection statistics.

  'uniform' with `config.rholoss.uniform_plain` trains without a selector on
  batches of n_b (no candidate forward passes); otherwise every method draws
  n_B candidates per step and `BatchSelector(method)` picks n_b.
  """
  from pruning import train
  c = config.copy_and_resolve_references()
  with c.unlocked():
    del c["rholoss"]
    c.seed = int(seed)
    c.checkpoint = False
  plain = method == "uniform" and bool(config.rholoss.get("uniform_plain", True))
  selector = None if plain else BatchSelector(method, il, noisy_ids)
  if plain:
    with c.unlocked():
      c.selection.candidate_batch_size = 0
  res = train.train_and_evaluate(c, None, data=data, train_ids=pool_ids, batch_selector=selector)
  evals = [h for h in res.history if "test_accuracy" in h]
  acc0 = train.evaluate(res.model, train.create_train_state(c, res.model, data.example_shape,
                                                            int(seed)),
                        data.test, int(c.eval_batch_size))["accuracy"]
  steps = [0] + [int(h["step"]) for h in evals]
  per_step = int(c.batch_size) if plain else int(c.selection.candidate_batch_size)
  out = dict(steps=steps, test_acc=[acc0] + [float(h["test_accuracy"]) for h in evals],
             examples_seen=[s * per_step for s in steps],
             gradient_examples=[s * int(c.batch_size) for s in steps],
             wall_time_s=float(res.metrics.get("wall_time_s", 0.0)),
             selection=selector.stats() if selector is not None else None)
  if selector is not None:  # how often each noisy / clean pool example was selected
    cnt = np.asarray([selector.selected_count.get(int(i), 0) for i in pool_ids], np.float64)
    is_noisy = np.isin(pool_ids, noisy_ids)
    out["selection"].update(
        selections_per_noisy_example=float(cnt[is_noisy].mean()) if is_noisy.any() else None,
        selections_per_clean_example=float(cnt[~is_noisy].mean()),
        noisy_examples_never_selected=int((cnt[is_noisy] == 0).sum()))
  return out


def run_experiment(config, workdir: Optional[str] = None,
                   log: Callable[[str], None] = print) -> dict:
  """The label-noise experiment: IL model, then every (method, seed) run.

  Writes (atomically) to `workdir`: il_losses.npz (score file), results.json,
  curves.csv, rholoss.png; results.json is rewritten after every run, and runs
  already in it (same config) are not repeated when the command is re-run.
  """
  import time
  from pruning import score_io
  t0 = time.time()
  r = config.rholoss
  data, noisy, pool, holdout = noisy_splits(config)
  noisy_pool = np.intersect1d(noisy, pool)
  log(f"{data.name}: {len(data.train)} train ({len(pool)} pool, {len(holdout)} IL holdout), "
      f"{len(noisy)} flipped labels ({len(noisy_pool)} in the pool), {len(data.test)} test")
  il, il_info = train_il_model(config, data, holdout, pool,
                               os.path.join(workdir, "il_losses.npz") if workdir else None, log)
  is_noisy = np.isin(il.ids, noisy)
  il_info.update(mean_il_loss_noisy=float(il.losses[is_noisy].mean()) if is_noisy.any() else None,
                 mean_il_loss_clean=float(il.losses[~is_noisy].mean()))
  cfg_json = score_io.to_jsonable(config)
  results = dict(config=cfg_json, dataset=data.name, num_pool=int(len(pool)),
                 num_holdout=int(len(holdout)), num_noisy_pool=int(len(noisy_pool)),
                 noisy_ids=noisy_pool.tolist(), il_model=il_info, methods={})
  old = None
  if workdir and os.path.exists(os.path.join(workdir, "results.json")):
    with open(os.path.join(workdir, "results.json")) as fh:
      old = json.load(fh)
    if old.get("config") != cfg_json:
      old = None
  for m in r.methods:
    results["methods"][m] = {"seeds": {}}
    for seed in r.seeds:
      prev = (old or {}).get("methods", {}).get(m, {}).get("seeds", {}).get(str(seed))
      if prev is not None:
        run = prev
      else:
        run = run_method(config, data, pool, m, int(seed), il, noisy_pool)
      results["methods"][m]["seeds"][str(seed)] = run
      sel = run.get("selection") or {}
      log(f"{m:8s} seed {seed}: final test acc {run['test_acc'][-1]:.4f} "
          f"({run['wall_time_s']:.0f}s)" + (
              f", noisy among selected {100 * sel['noisy_selected_frac']:.1f}% "
              f"(candidates {100 * sel['noisy_candidate_frac']:.1f}%)" if sel else ""))
      if workdir:
        write_results(results, workdir)
  results["summary"] = summarize(results)
  results["wall_time_s"] = time.time() - t0
  if workdir:
    write_results(results, workdir)
    plot_results(results, os.path.join(workdir, "rholoss.png"), title=experiment_title(results))
  return results


def experiment_title(results: dict) -> str:
  c = results["config"]
  sel = c.get("selection", {})
  return (f"{results['dataset']}: {100 * c['rholoss']['noise_fraction']:.0f}% flipped training "
          f"labels, {c['model']['name']}, n_b={c['batch_size']} of n_B="
          f"{sel.get('candidate_batch_size')} candidates; IL model on {results['num_holdout']} "
          f"held-out training examples (test acc {results['il_model'].get('test_accuracy', 0):.2f})")
