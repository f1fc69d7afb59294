"""What the score methods share: trainer runs up to a scoring epoch, embeddings, metadata.

Every score method is a scorer ``scorer(data, config, sub, log) -> ScoreResult`` (``config``
a scoring config like `pruning.scores.default_config()`, ``sub`` the method's own options).
The registry (`pruning.scores.SCORERS`) and the scorer modules (`pruning.coreset`,
`uncertainty`, `proxy`, `ssl`) build on the helpers here, and this module imports none of
them: imports go one way, scores -> scorer modules -> scoring_runs.

Run ``r`` of a score trains with ``config.train`` and trainer seed
``config.seed + 1000 * (r + 1) + config.train.seed``, without a progress bar.
"""
from __future__ import annotations

import functools
from typing import Callable

import ml_collections
import numpy as np

from core import predict as predict_lib, train as train_lib
from core.data import DatasetSplits
from core.models import create_model
from core.state import create_train_state
from pruning import score_io
from pruning.score_io import ScoreResult


def need_train(config, method: str) -> None:
  """Raises unless the scoring config has a trainer config (``config.train``)."""
  if config.get("train") is None:
    raise ValueError(f"{method} scores need config.train (a trainer config)")


def run_config(config, r: int) -> ml_collections.ConfigDict:
  """The trainer config of run `r` (0-based) of a score: config.train with run r's seed."""
  tc = ml_collections.ConfigDict(config.train.to_dict()) if hasattr(config.train, "to_dict") \
      else ml_collections.ConfigDict(dict(config.train))
  tc.seed = int(config.get("seed", 0)) + 1000 * (r + 1) + int(tc.get("seed", 0) or 0)
  tc.progress_bar = False
  return tc


def train_until(tc, data: DatasetSplits, epoch: int, measure: Callable):
  """Trains with config `tc` and returns measure(model, state) at `epoch` (0 = init).

  The run uses tc's whole schedule (learning rate at `epoch` as in the full run) and stops
  after `epoch`; raises when tc's training ends before it.
  """
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


def _no_outputs(logits, targets):
  """A `core.predict.predict` reduce_fn keeping nothing per example (embeddings only)."""
  return {}


def network_embedding(config, data: DatasetSplits, epoch: int, method: str) -> np.ndarray:
  """(n, d) penultimate features of data.train, from run 0 of config.train's network after
  `epoch` epochs (0 = at its random init); `method` names the score in errors."""
  need_train(config, method)
  tc = run_config(config, 0)
  ds = data.train
  return train_until(tc, data, int(epoch), lambda model, st: predict_lib.predict(
      model, st, ds, int(config.predict_batch_size), return_embedding=True,
      num_devices=tc.get("num_devices"), reduce_fn=_no_outputs)["embeddings"])


def score_meta(method: str, data: DatasetSplits, config, sub, **extra) -> dict:
  """The metadata of a score file: method, dataset, train fingerprint, configs, `extra`."""
  m = dict(method=method, dataset=data.name, fingerprint=data.train.fingerprint(),
           num_examples=len(data.train), mode="eval",
           config={"method": score_io.to_jsonable(sub),
                   "train": score_io.to_jsonable(config.get("train")),
                   "seed": int(config.get("seed", 0))})
  m.update(extra)
  return m


def averaged_over_runs(method: str, measure_fn: Callable) -> Callable:
  """A scorer that trains `sub.num_runs` networks to `sub.epoch` and averages their scores.

  ``measure_fn(model, state, *, ds, config, sub, tc)`` -> (n,) scores of ds = data.train;
  the ScoreResult's per_run is (num_runs, n).
  """
  def scorer(data, config, sub, log) -> ScoreResult:
    need_train(config, method)
    if int(sub.epoch) < 0:
      raise ValueError(f"{method}.epoch must be >= 0, got {sub.epoch}")
    runs = []
    for r in range(int(sub.num_runs)):
      tc = run_config(config, r)
      measure = functools.partial(measure_fn, ds=data.train, config=config, sub=sub, tc=tc)
      runs.append(train_until(tc, data, int(sub.epoch), measure))
      log(f"{method}: run {r + 1}/{int(sub.num_runs)} done")
    per_run = np.stack(runs)
    meta = score_meta(method, data, config, sub, epoch=int(sub.epoch),
                      num_runs=int(sub.num_runs))
    return ScoreResult(data.train.ids.copy(), per_run.mean(0), meta, per_run)
  return scorer


def with_defaults(sub, defaults: dict) -> ml_collections.ConfigDict:
  """`sub` over `defaults`, shallow: a nested dict in `sub` replaces the default one."""
  out = dict(defaults)
  if sub is not None:
    out.update(sub.to_dict() if hasattr(sub, "to_dict") else dict(sub))
  return ml_collections.ConfigDict(out)
