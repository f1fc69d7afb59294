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
    pmapped over devices (`core.parallel`), so memory stays bounded.
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
"""
from __future__ import annotations

import functools
from typing import Callable, Optional

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from core import parallel, predict as predict_lib, train as train_lib
from core.data import ArrayDataset, DatasetSplits
from core.losses import per_example_loss
from core.models import create_model
from core.sampler import num_train_steps, steps_per_epoch
from core.state import TrainState, create_train_state
from pruning import coreset, proxy, score_io, uncertainty
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


def prototype_scores(embeddings, labels=None, *, k: int = 10, centroids: str = "kmeans",
                     normalize: bool = True, seed: int = 0, n_init: int = 3) -> np.ndarray:
  """Distance of each embedding to its nearest centroid (see module docstring)."""
  from sklearn.cluster import KMeans
  e = np.asarray(embeddings, np.float64).reshape(len(embeddings), -1)
  if normalize:
    e = e / (np.linalg.norm(e, axis=1, keepdims=True) + 1e-12)
  if centroids == "kmeans":
    km = KMeans(n_clusters=min(int(k), len(e)), init="k-means++", n_init=n_init,
                random_state=seed).fit(e)
    return np.min(km.transform(e), axis=1)
  if labels is None:
    raise ValueError(f"prototype centroids={centroids!r} needs labels")
  labels = np.asarray(labels)
  out = np.empty(len(e))
  for c in np.unique(labels):
    m = labels == c
    if centroids == "class_mean":
      out[m] = np.linalg.norm(e[m] - e[m].mean(axis=0), axis=1)
    elif centroids == "kmeans_per_class":
      km = KMeans(n_clusters=min(int(k), int(m.sum())), init="k-means++", n_init=n_init,
                  random_state=seed).fit(e[m])
      out[m] = np.min(km.transform(e[m]), axis=1)
    else:
      raise ValueError(f"unknown prototype centroids {centroids!r}; choose kmeans, "
                       f"kmeans_per_class or class_mean")
  return out


def pca_embedding(x, dim: int, seed: int = 0) -> np.ndarray:
  from sklearn.decomposition import PCA
  x = np.asarray(x, np.float64).reshape(len(x), -1)
  dim = min(int(dim), x.shape[1], len(x))
  return PCA(n_components=dim, random_state=seed).fit_transform(x)


# ----------------------------------------------------------------------------
# GraNd: per-example gradient norms, chunked vmap(grad), pmapped.


def _split_variables(variables: dict):
  variables = dict(variables)
  params = variables.pop("params")
  rest = {k: v for k, v in variables.items() if v}
  return params, rest


def _example_loss_fn(model, loss: str, centered: bool):

  def loss_one(params, rest, init_variables, xi, yi):
    logits = model.apply({"params": params, **rest}, xi[None], train=False)
    if centered:
      logits = logits - model.apply(init_variables, xi[None], train=False)
    return per_example_loss(logits, yi[None], loss)[0]
  return loss_one


def _sq_norm(tree):
  return sum(jnp.sum(jnp.reshape(l, (l.shape[0], -1)).astype(jnp.float32) ** 2, axis=1)
             for l in jax.tree.leaves(tree))


@functools.lru_cache(maxsize=32)
def _p_grand(model, loss: str, centered: bool, devices: tuple):
  loss_one = _example_loss_fn(model, loss, centered)

  def fn(params, rest, init_variables, x, y, pos):
    g = jax.vmap(jax.grad(loss_one), in_axes=(None, None, None, 0, 0))(
        params, rest, init_variables, x, y)
    return parallel.all_gather(jnp.sqrt(_sq_norm(g))), parallel.all_gather(pos)

  return parallel.pmap(fn, devices)


def _variables_of(variables_or_state):
  if isinstance(variables_or_state, TrainState):
    return variables_or_state.variables, variables_or_state.init_variables
  return dict(variables_or_state), None


def grand_scores(model, variables_or_state, dataset: ArrayDataset, *, chunk_size: int = 64,
                 loss: str = "cross_entropy", num_devices: Optional[int] = None,
                 init_variables: Optional[dict] = None) -> np.ndarray:
  """Per-example ||d loss / d params||_2 (eval mode), aligned with dataset rows.

  Each pmapped call handles `chunk_size` examples per device (padding the last
  chunk), so peak memory is that of chunk_size per-example gradients per
  device. With several processes every process calls this and gets all scores.
  """
  variables, state_init = _variables_of(variables_or_state)
  init_variables = init_variables or state_init
  params, rest = _split_variables(variables)
  devices = parallel.local_devices(num_devices)
  step = parallel.round_up_to_devices(int(chunk_size) * len(devices), devices)
  fn = _p_grand(model, loss, init_variables is not None, tuple(devices))
  rp = parallel.replicate(params, devices)
  rr = parallel.replicate(rest, devices)
  ri = parallel.replicate(init_variables or {}, devices)
  sl = parallel.process_slice(step, devices)
  n = len(dataset)
  out = np.full(n, np.nan)
  for start in range(0, n, step):
    idx = np.arange(start, start + step)
    valid = idx < n
    idx = np.where(valid, idx, 0)
    pos = np.where(valid, idx, -1).astype(np.int32)
    batch = parallel.shard((*dataset.gather(idx[sl]), pos[sl]), devices)  # streamed or not
    norms, gpos = parallel.fetch(fn(rp, rr, ri, *batch))
    gpos = np.asarray(gpos)
    ok = gpos >= 0
    out[gpos[ok]] = np.asarray(norms)[ok]
  if np.isnan(out).any():
    raise RuntimeError("grand_scores: some examples were not scored")
  return out


def grand_loop(model, variables, dataset: ArrayDataset, *, loss: str = "cross_entropy",
               init_variables: Optional[dict] = None) -> np.ndarray:
  """Reference: one jitted gradient per example, in a Python loop (slow)."""
  params, rest = _split_variables(variables)
  loss_one = _example_loss_fn(model, loss, init_variables is not None)
  g = jax.jit(lambda *a: jnp.sqrt(sum(jnp.sum(l.astype(jnp.float32) ** 2)
                                      for l in jax.tree.leaves(jax.grad(loss_one)(*a)))))
  out = np.empty(len(dataset))
  for i in range(len(dataset)):
    out[i] = float(g(params, rest, init_variables or {}, jnp.asarray(dataset.x[i]),
                     jnp.asarray(dataset.y[i])))
  return out


# ----------------------------------------------------------------------------
# Scores that train networks with the shared trainer.


def _run_config(config, r: int) -> ml_collections.ConfigDict:
  tc = ml_collections.ConfigDict(config.train.to_dict()) if hasattr(config.train, "to_dict") \
      else ml_collections.ConfigDict(dict(config.train))
  tc.seed = int(config.get("seed", 0)) + 1000 * (r + 1) + int(tc.get("seed", 0) or 0)
  tc.progress_bar = False
  return tc


def _train_until(tc, data: DatasetSplits, epoch: int, measure: Callable):
  """Trains with config `tc` and returns measure(model, state) at `epoch` (0 = init)."""
  model = create_model(tc.model, num_classes=data.num_classes)
  if epoch == 0:
    return measure(model, create_train_state(tc, model, data.example_shape, int(tc.seed)))
  box = {}

  def cb(e, state):
    if e == epoch:
      box["v"] = measure(model, state)

  train_lib.train_and_evaluate(tc, None, data=data, epoch_callback=cb, stop_after_epoch=epoch)
  if "v" not in box:
    raise ValueError(f"scoring epoch {epoch} was never reached: the train config ends "
                     f"earlier (num_steps / num_epochs too small)")
  return box["v"]


def _meta(method, data, config, sub, **extra) -> dict:
  m = dict(method=method, dataset=data.name, fingerprint=data.train.fingerprint(),
           num_examples=len(data.train), mode="eval",
           config={"method": score_io.to_jsonable(sub),
                   "train": score_io.to_jsonable(config.get("train")),
                   "seed": int(config.get("seed", 0))})
  m.update(extra)
  return m


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


def _need_train(config, method):
  if config.get("train") is None:
    raise ValueError(f"{method} scores need config.train (a trainer config)")


def _random(data, config, sub, log) -> ScoreResult:
  s = random_scores(len(data.train), config.seed)
  return ScoreResult(data.train.ids.copy(), s, _meta("random", data, config, sub, num_runs=1))


def _input_norm(data, config, sub, log) -> ScoreResult:
  return ScoreResult(data.train.ids.copy(), input_norm_scores(data.train.x),
                     _meta("input_norm", data, config, sub))


def _averaged_over_runs(method: str, measure_fn: Callable):
  """A scorer that trains `num_runs` networks to `epoch` and averages measure_fn's scores."""
  def scorer(data, config, sub, log) -> ScoreResult:
    _need_train(config, method)
    if int(sub.epoch) < 0:
      raise ValueError(f"{method}.epoch must be >= 0, got {sub.epoch}")
    runs = []
    for r in range(int(sub.num_runs)):
      tc = _run_config(config, r)
      measure = functools.partial(measure_fn, ds=data.train, config=config, sub=sub, tc=tc)
      runs.append(_train_until(tc, data, int(sub.epoch), measure))
      log(f"{method}: run {r + 1}/{int(sub.num_runs)} done")
    per_run = np.stack(runs)
    meta = _meta(method, data, config, sub, epoch=int(sub.epoch), num_runs=int(sub.num_runs))
    return ScoreResult(data.train.ids.copy(), per_run.mean(0), meta, per_run)
  return scorer


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
  _need_train(config, "forgetting")
  ds = data.train
  runs = []
  for r in range(int(sub.num_runs)):
    tc = _run_config(config, r)
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
  meta = _meta("forgetting", data, config, sub, num_runs=int(sub.num_runs), max_records=records)
  return ScoreResult(ds.ids.copy(), per_run.mean(0), meta, per_run)


def _prototype(data, config, sub, log) -> ScoreResult:
  ds = data.train
  emb_kind = sub.embedding
  if emb_kind == "pca":
    emb = pca_embedding(ds.x, int(sub.dim), int(config.seed))
  elif emb_kind in ("random_features", "supervised"):
    _need_train(config, f"prototype/{emb_kind}")
    tc = _run_config(config, 0)
    epoch = 0
    if emb_kind == "supervised":  # the last full epoch of the train config
      epoch = int(num_train_steps(tc, len(ds)) // steps_per_epoch(len(ds), int(tc.batch_size)))
    emb = _train_until(tc, data, epoch, lambda model, st: predict_lib.predict(
        model, st, ds, int(config.predict_batch_size), return_embedding=True,
        num_devices=tc.get("num_devices"), reduce_fn=_no_logits)["embeddings"])
  else:
    raise ValueError(f"unknown prototype embedding {emb_kind!r}; choose pca, random_features "
                     f"or supervised")
  s = prototype_scores(emb, ds.labels, k=int(sub.k), centroids=sub.centroids,
                       normalize=bool(sub.normalize), seed=int(config.seed),
                       n_init=int(sub.get("n_init", 3)))
  uses_labels = emb_kind == "supervised" or sub.centroids != "kmeans"
  return ScoreResult(ds.ids.copy(), s, _meta("prototype", data, config, sub,
                                             uses_labels=uses_labels, embedding=emb_kind))


def _ssl_prototype(data, config, sub, log) -> ScoreResult:
  """k-means prototypes on a self-supervised encoder's embedding (issue #14, `pruning.ssl`)."""
  from pruning import ssl
  return ssl.ssl_prototype_scores(data, config, sub, log)


def _no_logits(logits, targets):
  return {}


# name -> scorer(data, config, sub, log) -> ScoreResult; `needs_train(sub)`: whether the cache
# key includes the trainer config.
SCORERS = {
    "random": _random,
    "input_norm": _input_norm,
    "el2n": _averaged_over_runs("el2n", _el2n_measure),
    "grand": _averaged_over_runs("grand", _grand_measure),
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
    "proxy": proxy.proxy_scorer,
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
