"""Uncertainty and training-dynamics scores (larger = harder / more informative).

From one trained model's logits z (n, C), p = softmax(z) (label-free, as in active learning and
DeepCore, Guo et al. 2022):
  * ``least_confidence``  1 - max_c p_c                      (Lewis & Gale 1994)
  * ``entropy``           -sum_c p_c log p_c                  (Shannon; Coleman et al. 2020)
  * ``margin``            1 - (p_(1) - p_(2)), p_(1) >= p_(2) the two largest probabilities
                          (Scheffer et al. 2001); a small top-2 gap = uncertain = large score.

From the training trajectory:
  * ``aum``  area under the margin (Pleiss et al., NeurIPS 2020): the logit margin
    M_t(x, y) = z_y - max_{c != y} z_c of the training forward pass, averaged over every time
    the example is presented (the trainer's ``step_callback`` delivers 'margin' per example
    per step). Low AUM = mislabeled or hard, so the score is -AUM.
  * ``dyn_unc``  dynamic uncertainty (He et al., CVPR 2023): with P_t = p_y after epoch t
    (t = 1..T), U = mean over windows k of std(P_k, ..., P_{k+J-1}) (population std, window
    J epochs, T - J + 1 windows).
  * ``tdds``  temporal dual-depth scoring (Zhang et al., CVPR 2024), our reading: the
    per-epoch change of the prediction d_t = KL(p_t || p_{t-1}) (t = 2..T), its variance
    within each window of K consecutive values, and over windows an exponential moving
    average favouring late windows: S = sum_w beta^(W-1-w) var_w / sum_w beta^(W-1-w).

Shapes: logits (n, C); margins of a trajectory (T, n); per-epoch true-class probabilities
(T, n); per-epoch probabilities (T, n, C). Trackers (`AUMTracker`, `EpochDynamics`) keep
O(n) (AUM) or O(T n) (dynamics) numbers, never (T, n, C).
"""
from __future__ import annotations

from typing import Optional

import numpy as np

SCORES = ("least_confidence", "entropy", "margin", "aum", "dyn_unc", "tdds")


def _logits(logits) -> np.ndarray:
  z = np.asarray(logits, np.float64)
  if z.ndim != 2 or z.shape[1] < 2:
    raise ValueError(f"logits must be (n, C >= 2), got shape {z.shape}")
  if not np.isfinite(z).all():
    raise ValueError(f"logits contain {int((~np.isfinite(z)).sum())} non-finite values; the "
                     f"scoring network diverged (lower its learning rate)")
  return z


def softmax(logits) -> np.ndarray:
  z = _logits(logits)
  p = np.exp(z - z.max(axis=1, keepdims=True))
  return p / p.sum(axis=1, keepdims=True)


def least_confidence_scores(logits) -> np.ndarray:
  return 1.0 - softmax(logits).max(axis=1)


def entropy_scores(logits) -> np.ndarray:
  p = softmax(logits)
  return -np.sum(np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0), axis=1)


def margin_scores(logits) -> np.ndarray:
  p = np.sort(softmax(logits), axis=1)
  return 1.0 - (p[:, -1] - p[:, -2])


FROM_LOGITS = {"least_confidence": least_confidence_scores, "entropy": entropy_scores,
               "margin": margin_scores}


def logit_margins(logits, labels) -> np.ndarray:
  """z_y - max_{c != y} z_c per row (the AUM margin), logits (..., n, C), labels (n,)."""
  z = np.asarray(logits, np.float64)
  y = np.asarray(labels).astype(np.int64)
  own = np.take_along_axis(z, np.broadcast_to(y[:, None], z.shape[:-1] + (1,)), axis=-1)[..., 0]
  other = np.where(np.eye(z.shape[-1], dtype=bool)[y], -np.inf, z).max(axis=-1)
  return own - other


def aum_from_logits(logit_trajectory, labels) -> np.ndarray:
  """AUM (n,) from a (T, n, C) trajectory of logits: mean over t of the logit margin."""
  z = np.asarray(logit_trajectory, np.float64)
  if z.ndim != 3:
    raise ValueError(f"logit trajectory must be (T, n, C), got shape {z.shape}")
  return logit_margins(z, labels).mean(axis=0)


class AUMTracker:
  """Running mean of each example's margin over its presentations (positions 0..n-1)."""

  def __init__(self, n: int):
    self.total = np.zeros(int(n), np.float64)
    self.count = np.zeros(int(n), np.int64)

  def update(self, positions, margins) -> None:
    positions = np.asarray(positions, np.int64).ravel()
    margins = np.asarray(margins, np.float64).ravel()
    if positions.shape != margins.shape:
      raise ValueError(f"need one margin per position, got {positions.shape} and "
                       f"{margins.shape}")
    np.add.at(self.total, positions, margins)  # repeated positions count each time
    np.add.at(self.count, positions, 1)

  def aum(self) -> np.ndarray:
    if (self.count == 0).any():
      raise ValueError(f"{int((self.count == 0).sum())} examples were never presented; train "
                       f"at least one full epoch before reading AUM")
    return self.total / self.count

  def scores(self) -> np.ndarray:
    """-AUM: larger = harder (lower margin)."""
    return -self.aum()


def _window(k, length: int, name: str) -> int:
  k = int(k)
  if k < 1:
    raise ValueError(f"{name} window must be >= 1, got {k}")
  if length < k:
    raise ValueError(f"{name} needs at least {k} records but got {length}: train more epochs "
                     f"or shorten the window")
  return k


def dyn_unc_scores(p_true, window: int = 10) -> np.ndarray:
  """Dyn-Unc (n,) from (T, n) true-class probabilities per epoch (see module docstring)."""
  p = np.asarray(p_true, np.float64)
  if p.ndim != 2:
    raise ValueError(f"p_true must be (T, n), got shape {p.shape}")
  j = _window(window, p.shape[0], "dyn_unc")
  stds = [p[k:k + j].std(axis=0) for k in range(p.shape[0] - j + 1)]
  return np.mean(stds, axis=0)


def kl_rows(p, q) -> np.ndarray:
  """KL(p || q) per row of (n, C) distributions (0 log 0 = 0; q clipped at 1e-12)."""
  p = np.asarray(p, np.float64)
  q = np.maximum(np.asarray(q, np.float64), 1e-12)
  safe = np.where(p > 0, p, 1.0)
  return np.sum(np.where(p > 0, p * (np.log(safe) - np.log(q)), 0.0), axis=-1)


def tdds_from_changes(changes, window: int = 10, decay: float = 0.9) -> np.ndarray:
  """TDDS (n,) from (T-1, n) per-epoch changes d_t (see module docstring)."""
  d = np.asarray(changes, np.float64)
  if d.ndim != 2:
    raise ValueError(f"changes must be (T-1, n), got shape {d.shape}")
  k = _window(window, d.shape[0], "tdds")
  if not 0.0 < float(decay) <= 1.0:
    raise ValueError(f"tdds decay={decay} must lie in (0, 1]")
  var = np.stack([d[w:w + k].var(axis=0) for w in range(d.shape[0] - k + 1)])
  wts = float(decay) ** np.arange(len(var) - 1, -1, -1, dtype=np.float64)
  return (wts[:, None] * var).sum(axis=0) / wts.sum()


def tdds_scores(probs, window: int = 10, decay: float = 0.9) -> np.ndarray:
  """TDDS (n,) from (T, n, C) per-epoch probabilities."""
  p = np.asarray(probs, np.float64)
  if p.ndim != 3 or p.shape[0] < 2:
    raise ValueError(f"probs must be (T >= 2, n, C), got shape {p.shape}")
  return tdds_from_changes(kl_rows(p[1:], p[:-1]), window, decay)


class EpochDynamics:
  """Per-epoch records for Dyn-Unc and TDDS from eval-mode logits (n, C) after each epoch.

  Keeps the (T, n) true-class probabilities and (T-1, n) KL changes, plus the previous
  epoch's (n, C) probabilities: O(T n + n C) memory.
  """

  def __init__(self, labels):
    self.labels = np.asarray(labels).astype(np.int64)
    self.p_true: list = []
    self.changes: list = []
    self._prev: Optional[np.ndarray] = None

  def update(self, logits) -> None:
    p = softmax(logits)
    if p.shape[0] != len(self.labels):
      raise ValueError(f"logits have {p.shape[0]} rows, expected {len(self.labels)}")
    self.p_true.append(p[np.arange(len(p)), self.labels])
    if self._prev is not None:
      self.changes.append(kl_rows(p, self._prev))
    self._prev = p

  def dyn_unc(self, window: int) -> np.ndarray:
    return dyn_unc_scores(np.stack(self.p_true) if self.p_true else np.zeros((0, 0)), window)

  def tdds(self, window: int, decay: float) -> np.ndarray:
    return tdds_from_changes(np.stack(self.changes) if self.changes else
                             np.zeros((0, len(self.labels))), window, decay)


# ----------------------------------------------------------------------------
# Score-registry entries (pruning.scores.SCORERS).

LOGIT_DEFAULTS = dict(epoch=2, num_runs=1)
AUM_DEFAULTS = dict(num_runs=1, epoch=0)          # epoch 0 = the whole training run
DYN_DEFAULTS = dict(num_runs=1, window=3, decay=0.9)


def make_logit_scorer(name: str):
  """least_confidence / entropy / margin of config.train's network after `epoch` epochs."""
  fn = FROM_LOGITS[name]

  def measure(model, state, *, ds, config, sub, tc):
    from core import predict as predict_lib
    logits = predict_lib.predict(model, state, ds, int(config.predict_batch_size),
                                 num_devices=tc.get("num_devices"))["logits"]
    return fn(logits)

  def scorer(data, config, sub, log):
    import time
    from pruning import scoring_runs
    t0 = time.time()
    sub = scoring_runs.with_defaults(sub, LOGIT_DEFAULTS)
    res = scoring_runs.averaged_over_runs(name, measure)(data, config, sub, log)
    res.meta["wall_time_s"] = round(time.time() - t0, 2)
    return res

  scorer.__name__ = f"{name}_scorer"
  return scorer


def _trajectory_scorer(name: str):
  def scorer(data, config, sub, log):
    import time
    from core import predict as predict_lib, train as train_lib
    from core.models import create_model
    from pruning import scoring_runs
    from pruning.score_io import ScoreResult
    scoring_runs.need_train(config, name)
    t0 = time.time()
    sub = scoring_runs.with_defaults(sub, AUM_DEFAULTS if name == "aum" else DYN_DEFAULTS)
    ds = data.train
    runs = []
    for r in range(int(sub.num_runs)):
      tc = scoring_runs.run_config(config, r)
      stop = int(sub.get("epoch", 0) or 0) or None
      if name == "aum":
        tracker = AUMTracker(len(ds))

        def on_step(step, ids, per_example, tracker=tracker):
          tracker.update(ds.positions_with_repeats(ids), per_example["margin"])

        train_lib.train_and_evaluate(tc, None, data=data, step_callback=on_step,
                                     stop_after_epoch=stop)
        runs.append(tracker.scores())
      else:
        dyn = EpochDynamics(ds.labels)
        model = create_model(tc.model, num_classes=data.num_classes)

        def on_epoch(epoch, state, dyn=dyn, model=model, tc=tc):
          dyn.update(predict_lib.predict(model, state, ds, int(config.predict_batch_size),
                                         num_devices=tc.get("num_devices"))["logits"])

        train_lib.train_and_evaluate(tc, None, data=data, epoch_callback=on_epoch,
                                     stop_after_epoch=stop)
        runs.append(dyn.dyn_unc(int(sub.window)) if name == "dyn_unc"
                    else dyn.tdds(int(sub.window), float(sub.decay)))
      log(f"{name}: run {r + 1}/{int(sub.num_runs)} done")
    per_run = np.stack(runs)
    meta = scoring_runs.score_meta(name, data, config, sub, num_runs=int(sub.num_runs),
                                   wall_time_s=round(time.time() - t0, 2))
    return ScoreResult(ds.ids.copy(), per_run.mean(0), meta, per_run)

  scorer.__name__ = f"{name}_scorer"
  return scorer


aum_scorer = _trajectory_scorer("aum")
dyn_unc_scorer = _trajectory_scorer("dyn_unc")
tdds_scorer = _trajectory_scorer("tdds")
