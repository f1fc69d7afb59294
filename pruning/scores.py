"""Per-example difficulty scores for data pruning (larger = harder).

Methods (``compute_scores(method, data, config)``):

  * ``el2n``       (Paul et al. 2021) ||softmax(f(x)) - onehot(y)||_2 of a
    network after ``el2n.epoch`` epochs of training, averaged over
    ``el2n.num_runs`` independent inits / data orders (paper: epoch 20 of 200
    on CIFAR-10, 10 runs). The run trains with the full config schedule
    (``train``) and is cut after the scoring epoch, so the learning-rate
    schedule at the scoring epoch is the one of the full run.
  * ``grand``      (Paul et al. 2021) ||grad_theta loss(f(x), y)||_2 over all
    parameters, at init (``grand.epoch = 0``) or after an early epoch, averaged
    over ``grand.num_runs`` inits. Per-example gradients come from
    ``vmap(grad)`` on chunks of ``grand.chunk_size`` examples per device,
    pmapped over devices (`pruning.grand`), so memory stays bounded.
    ``grand.path = "activations"``: per-layer norms from layer inputs and output
    gradients, one backward pass (`pruning.grand_fast`; same scores to ~1e-7).
  * ``forgetting`` (Toneva et al. 2019) number of correct -> incorrect
    transitions of each example's prediction over a full training run.
    ``forgetting.record = "minibatch"`` (default, as in the paper): recorded
    each time the example is presented in a minibatch, from the training
    forward pass before the update (the trainer's ``step_callback``);
    ``"epoch"``: from an eval-mode pass over the whole set after every epoch.
    Examples never classified correctly get the largest number of records
    (more than any learnable example can have, which is at most half of its
    records): most forgotten.
  * ``prototype``  (Sorscher et al. 2022) distance to the nearest k-means
    centroid (scikit-learn KMeans, k-means++) in an embedding space, large =
    hard (atypical). Embeddings (``prototype.embedding``):
      - ``pca``             PCA of the inputs (label-free, no network);
      - ``random_features`` penultimate features of the config's network at a
                            random init (label-free, never trained);
      - ``supervised``      penultimate features of the network trained on the
                            labels (``train`` config): NOT label-free.
    We do not train a self-supervised encoder (SwAV in the paper); the two
    label-free choices above are the cheap stand-ins. ``prototype.centroids``:
      - ``kmeans``          k clusters over all examples (label-free);
      - ``kmeans_per_class`` k clusters within each class (labels group);
      - ``class_mean``      the class-conditional variant: one centroid per
                            class = mean embedding of that class (uses labels).
  * ``input_norm`` ||x||_2 (sanity baseline: GraNd at init correlates with it,
    Kirsch 2023; see `rank_correlation`).
  * ``random``     i.i.d. uniform scores (random pruning).

Everything returns a `score_io.ScoreResult` aligned with ``data.train.ids``;
``cache_dir`` makes the scores computed once per (method, config, dataset).

Imports go one way: this registry -> the scorer modules (`pruning.coreset`, `uncertainty`,
`proxy`, `ssl`, `grand`, `grand_fast`, `prototypes`) -> their shared run helpers
(`pruning.scoring_runs`).
"""
from __future__ import annotations

import functools
from typing import Callable, Optional

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from core import predict as predict_lib, train as train_lib
from core.data import DatasetSplits
from core.models import create_model
from core.sampler import num_train_steps, steps_per_epoch
from pruning import coreset, proxy, score_io, scoring_runs, uncertainty
# GraNd's vmap path and the prototype functions live below the registry; their names stay
# importable from here.
from pruning.grand import grand_loop, grand_scores  # noqa: F401
from pruning.prototypes import pca_embedding, prototype_scores  # noqa: F401
from pruning.score_io import ScoreResult


def default_config() -> ml_collections.ConfigDict:
  """Scoring options per method; ``train`` must be set to a trainer config."""
  c = ml_collections.ConfigDict()
  c.train = ml_collections.config_dict.placeholder(ml_collections.ConfigDict)
  c.seed = 0              # run r uses trainer seed `seed + 1000 * (r + 1)`
  c.predict_batch_size = 1024
  c.el2n = dict(epoch=10, num_runs=10)
  c.grand = dict(epoch=0, num_runs=10, chunk_size=64)
  c.forgetting = dict(num_runs=1, record="minibatch")  # or "epoch"
  c.prototype = dict(embedding="pca", dim=32, k=10, centroids="kmeans", normalize=True,
                     n_init=3)
  c.random = dict()
  c.input_norm = dict()
  return c


# ----------------------------------------------------------------------------
# Pure score functions.


def el2n_reduce(logits, targets):
  """On-device EL2N for `core.predict.predict(reduce_fn=...)`: targets are dense (b, C)."""
  p = jax.nn.softmax(logits.astype(jnp.float32), axis=-1)
  return {"el2n": jnp.sqrt(jnp.sum((p - targets) ** 2, axis=-1))}


def el2n_from_logits(logits, labels) -> np.ndarray:
  """||softmax(logits) - onehot(labels)||_2 per row (labels: ints or soft targets)."""
  logits = np.asarray(logits, np.float64)
  p = np.exp(logits - logits.max(axis=1, keepdims=True))
  p /= p.sum(axis=1, keepdims=True)
  labels = np.asarray(labels)
  t = np.eye(logits.shape[1])[labels] if labels.ndim == 1 else labels.astype(np.float64)
  return np.linalg.norm(p - t, axis=1)


def forgetting_counts(correct) -> np.ndarray:
  """Forgetting events per example from a (T, n) history of correctness.

  An event is a transition correct (t-1) -> incorrect (t). Examples never
  correct in any of the T records score T (above any achievable count).
  """
  c = np.asarray(correct, dtype=bool)
  if c.ndim != 2 or c.shape[0] < 1:
    raise ValueError(f"correctness history must be (T >= 1, n), got shape {c.shape}")
  events = (c[:-1] & ~c[1:]).sum(axis=0).astype(np.float64)
  events[~c.any(axis=0)] = float(c.shape[0])
  return events


class ForgettingTracker:
  """Forgetting events counted over minibatch presentations (Toneva et al. 2019).

  ``update(positions, correct)``: the examples at ``positions`` (indices into the
  scored set) were presented and classified ``correct``; an example repeated in one
  batch (batch larger than the set) counts as presented that many times, in order.
  An event is correct at an example's previous presentation -> incorrect now.
  """

  def __init__(self, n: int):
    self.last = np.zeros(n, bool)          # correct at the previous presentation
    self.events = np.zeros(n, np.int64)
    self.ever_correct = np.zeros(n, bool)
    self.presentations = np.zeros(n, np.int64)

  def update(self, positions, correct):
    positions, correct = np.asarray(positions, np.int64), np.asarray(correct, bool)
    if positions.ndim != 1 or positions.shape != correct.shape:
      raise ValueError(f"need one correctness flag per position, got {positions.shape} "
                       f"positions and {correct.shape} flags")
    # k-th occurrence of each position within this batch -> k-th sequential update
    order = np.argsort(positions, kind="stable")
    first = np.searchsorted(positions[order], positions[order])
    occurrence = np.empty_like(positions)
    occurrence[order] = np.arange(len(positions)) - first
    for k in range(int(occurrence.max(initial=-1)) + 1):
      sel = occurrence == k
      self._update_unique(positions[sel], correct[sel])

  def _update_unique(self, positions, correct):
    self.events[positions] += self.last[positions] & ~correct
    self.last[positions] = correct
    self.ever_correct[positions] |= correct
    self.presentations[positions] += 1

  def counts(self) -> np.ndarray:
    out = self.events.astype(np.float64)
    out[~self.ever_correct] = float(self.presentations.max(initial=0))
    return out


def input_norm_scores(x) -> np.ndarray:
  x = np.asarray(x, np.float64)
  return np.linalg.norm(x.reshape(len(x), -1), axis=1)


def random_scores(n: int, seed: int) -> np.ndarray:
  return np.random.default_rng([int(seed), 7919]).random(int(n))


def rank_correlation(a, b) -> float:
  """Spearman rank correlation of two score vectors."""
  from scipy.stats import spearmanr
  return float(spearmanr(np.asarray(a), np.asarray(b)).statistic)


# ----------------------------------------------------------------------------
# Scorers of the registry (the shared run helpers: `pruning.scoring_runs`).


def _cfg(config) -> ml_collections.ConfigDict:
  base = default_config()
  if config is None:
    return base
  d = config.to_dict() if hasattr(config, "to_dict") else dict(config)
  train_cfg = d.pop("train", None)
  base.update(ml_collections.ConfigDict(d))
  if train_cfg is not None:
    base.train = ml_collections.ConfigDict(train_cfg)
  return base


def _random(data, config, sub, log) -> ScoreResult:
  s = random_scores(len(data.train), config.seed)
  meta = scoring_runs.score_meta("random", data, config, sub, num_runs=1)
  return ScoreResult(data.train.ids.copy(), s, meta)


def _input_norm(data, config, sub, log) -> ScoreResult:
  return ScoreResult(data.train.ids.copy(), input_norm_scores(data.train.x),
                     scoring_runs.score_meta("input_norm", data, config, sub))


def _el2n_measure(model, state, *, ds, config, sub, tc):
  return predict_lib.predict(model, state, ds, int(config.predict_batch_size),
                             num_devices=tc.get("num_devices"), reduce_fn=el2n_reduce)["el2n"]


def _grand_measure(model, state, *, ds, config, sub, tc):
  if sub.get("path", "vmap") == "activations":  # one backward pass (pruning.grand_fast)
    from pruning.grand_fast import grand_scores_fast
    return grand_scores_fast(model, state, ds, batch_size=int(config.predict_batch_size),
                             loss=tc.get("loss") or "cross_entropy",
                             num_devices=tc.get("num_devices"),
                             fallback_chunk_size=int(sub.chunk_size))
  if sub.get("path", "vmap") != "vmap":
    raise ValueError(f"grand.path must be 'vmap' or 'activations', got {sub.get('path')!r}")
  return grand_scores(model, state, ds, chunk_size=int(sub.chunk_size),
                      loss=tc.get("loss") or "cross_entropy", num_devices=tc.get("num_devices"))


def _forgetting(data, config, sub, log) -> ScoreResult:
  scoring_runs.need_train(config, "forgetting")
  ds = data.train
  runs = []
  for r in range(int(sub.num_runs)):
    tc = scoring_runs.run_config(config, r)
    if sub.record == "minibatch":
      tracker = ForgettingTracker(len(ds))

      def on_step(step, batch_ids, per_example, tracker=tracker):
        tracker.update(ds.positions_with_repeats(batch_ids), per_example["correct"])

      res = train_lib.train_and_evaluate(tc, None, data=data, step_callback=on_step)
      runs.append(tracker.counts())
      records = int(tracker.presentations.max(initial=0))
    elif sub.record == "epoch":
      hist = []
      model = create_model(tc.model, num_classes=data.num_classes)

      def cb(e, state, tc=tc, hist=hist):
        out = predict_lib.per_example_losses(model, state, ds, int(config.predict_batch_size),
                                             num_devices=tc.get("num_devices"))
        hist.append(out["correct"] > 0)

      res = train_lib.train_and_evaluate(tc, None, data=data, epoch_callback=cb)
      runs.append(forgetting_counts(np.stack(hist)))
      records = len(hist)
    else:
      raise ValueError(f"forgetting.record must be 'minibatch' or 'epoch', got {sub.record!r}")
    log(f"forgetting: run {r + 1}/{int(sub.num_runs)} ({res.metrics['steps']} steps, "
        f"{records} records per example, per {sub.record}) done")
  per_run = np.stack(runs)
  meta = scoring_runs.score_meta("forgetting", data, config, sub, num_runs=int(sub.num_runs),
                                 max_records=records)
  return ScoreResult(ds.ids.copy(), per_run.mean(0), meta, per_run)


def _prototype(data, config, sub, log) -> ScoreResult:
  ds = data.train
  emb_kind = sub.embedding
  if emb_kind == "pca":
    emb = pca_embedding(ds.x, int(sub.dim), int(config.seed))
  elif emb_kind in ("random_features", "supervised"):
    epoch = 0
    if emb_kind == "supervised":  # the last full epoch of the train config
      scoring_runs.need_train(config, f"prototype/{emb_kind}")
      tc = config.train
      epoch = int(num_train_steps(tc, len(ds)) // steps_per_epoch(len(ds), int(tc.batch_size)))
    emb = scoring_runs.network_embedding(config, data, epoch, f"prototype/{emb_kind}")
  else:
    raise ValueError(f"unknown prototype embedding {emb_kind!r}; choose pca, random_features "
                     f"or supervised")
  s = prototype_scores(emb, ds.labels, k=int(sub.k), centroids=sub.centroids,
                       normalize=bool(sub.normalize), seed=int(config.seed),
                       n_init=int(sub.get("n_init", 3)))
  uses_labels = emb_kind == "supervised" or sub.centroids != "kmeans"
  return ScoreResult(ds.ids.copy(), s, scoring_runs.score_meta(
      "prototype", data, config, sub, uses_labels=uses_labels, embedding=emb_kind))


def _ssl_prototype(data, config, sub, log) -> ScoreResult:
  """k-means prototypes on a self-supervised encoder's embedding (issue #14, `pruning.ssl`)."""
  from pruning import ssl
  return ssl.ssl_prototype_scores(data, config, sub, log)


def _proxy(data, config, sub, log) -> ScoreResult:
  """Selection via proxy (`pruning.proxy`): another registry method under a small trainer."""
  return proxy.proxy_scorer(data, config, sub, log, compute=compute_scores, methods=METHODS)


# name -> scorer(data, config, sub, log) -> ScoreResult; `needs_train(sub)`: whether the cache
# key includes the trainer config.
SCORERS = {
    "random": _random,
    "input_norm": _input_norm,
    "el2n": scoring_runs.averaged_over_runs("el2n", _el2n_measure),
    "grand": scoring_runs.averaged_over_runs("grand", _grand_measure),
    "forgetting": _forgetting,
    "prototype": _prototype,
    "ssl_prototype": _ssl_prototype,  # issue #14 (pruning/ssl.py)
    # issue #19 (pruning/coreset.py, uncertainty.py, proxy.py)
    "kcenter": coreset.make_scorer("kcenter"),
    "herding": coreset.make_scorer("herding"),
    "facility_location": coreset.make_scorer("facility_location"),
    "least_confidence": uncertainty.make_logit_scorer("least_confidence"),
    "entropy": uncertainty.make_logit_scorer("entropy"),
    "margin": uncertainty.make_logit_scorer("margin"),
    "aum": uncertainty.aum_scorer,
    "dyn_unc": uncertainty.dyn_unc_scorer,
    "tdds": uncertainty.tdds_scorer,
    "proxy": _proxy,
}
LABEL_FREE_WITHOUT_TRAINING = {"random": lambda sub: True, "input_norm": lambda sub: True,
                               "prototype": lambda sub: sub.embedding == "pca"}
METHODS = tuple(SCORERS)


def compute_scores(method: str, data: DatasetSplits, config=None, *,
                   cache_dir: Optional[str] = None,
                   log: Callable[[str], None] = lambda s: None) -> ScoreResult:
  """Scores of every example of data.train for `method` (see module docstring).

  `config`: a ConfigDict/dict like `default_config()` (``train`` = trainer
  config for el2n / grand / forgetting / prototype-with-network; the method's
  sub-dict its options). Returns ScoreResult(ids=data.train.ids, scores, meta,
  per_run). With `cache_dir`, computed once and reused (score_io.cached).
  """
  if method not in SCORERS:
    raise ValueError(f"unknown score method {method!r}; choose from {tuple(SCORERS)}")
  config = _cfg(config)
  sub = config[method] if method in config else ml_collections.ConfigDict()
  no_train = LABEL_FREE_WITHOUT_TRAINING.get(method, lambda sub: False)(sub)
  key_cfg = {"method": sub.to_dict(), "seed": int(config.seed),
             "train": None if no_train else score_io.to_jsonable(config.train)}
  compute = functools.partial(SCORERS[method], data, config, sub, log)
  return score_io.cached(cache_dir, method, key_cfg, data.train, compute, log)
