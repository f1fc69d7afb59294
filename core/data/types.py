"""The data vocabulary: an in-memory split with stable integer ids, and its checks.

Shapes: x (n, *example_shape) float32, y (n,) int32 labels or (n, C) soft targets,
ids (n,) int64. Pruned datasets are formed by `ArrayDataset.subset(ids)`.
"""
from __future__ import annotations

import dataclasses
import hashlib
from typing import Sequence

import numpy as np

NORMALIZATIONS = ("none", "standardize", "per_channel")


class DataError(ValueError):
  """Bad dataset name, ids, shapes or values."""


def check_ids(ids, name: str = "") -> np.ndarray:
  """`ids` as a non-empty 1-D integer array; DataError naming the dataset otherwise."""
  ids = np.asarray(ids)
  if ids.ndim != 1:
    raise DataError(f"ids must be 1-D, got shape {ids.shape}")
  if ids.size == 0:
    raise DataError(f"{name}: empty id list")
  if not np.issubdtype(ids.dtype, np.integer):
    raise DataError(f"ids must be integers, got dtype {ids.dtype}")
  return ids


def positions_of(all_ids: np.ndarray, ids, name: str = "", repeats: bool = False) -> np.ndarray:
  """Positions in `all_ids` (a split's ids) of the given `ids`: DataError on unknown ids,
  and on repeated ones unless `repeats` (a batch larger than the set). Shared by the
  in-memory `ArrayDataset` and the streamed `core.data.records.RecordDataset`."""
  ids = check_ids(ids, name)
  if not repeats:
    uniq, counts = np.unique(ids, return_counts=True)
    if (counts > 1).any():
      raise DataError(f"{name}: duplicated ids {uniq[counts > 1][:10].tolist()}")
  order = np.argsort(all_ids, kind="stable")
  sorted_ids = all_ids[order]
  pos = np.clip(np.searchsorted(sorted_ids, ids), 0, len(sorted_ids) - 1)
  bad = sorted_ids[pos] != ids
  if bad.any():
    raise DataError(f"{name}: ids not in dataset (valid ids {int(all_ids.min())}.."
                    f"{int(all_ids.max())}): {ids[bad][:10].tolist()}")
  return order[pos]


@dataclasses.dataclass(frozen=True)
class ArrayDataset:
  """Examples of one split. `y` holds int labels (n,) or soft targets (n, C)."""
  x: np.ndarray
  y: np.ndarray
  ids: np.ndarray
  num_classes: int
  name: str = ""

  def __post_init__(self):
    n = len(self.x)
    if len(self.y) != n or len(self.ids) != n:
      raise DataError(f"{self.name}: x, y, ids lengths differ: "
                      f"{len(self.x)}, {len(self.y)}, {len(self.ids)}")
    if self.y.ndim == 2 and self.y.shape[1] != self.num_classes:
      raise DataError(f"{self.name}: soft targets have {self.y.shape[1]} columns, "
                      f"expected num_classes={self.num_classes}")

  def __len__(self) -> int:
    return len(self.x)

  @property
  def labels(self) -> np.ndarray:
    """Hard labels (argmax of soft targets)."""
    return self.y if self.y.ndim == 1 else np.argmax(self.y, axis=1).astype(np.int32)

  @property
  def example_shape(self) -> tuple:
    return tuple(self.x.shape[1:])

  def positions(self, ids: Sequence[int]) -> np.ndarray:
    """Row positions of the given stable ids; raises on unknown or repeated ids."""
    return positions_of(self.ids, ids, self.name)

  def positions_with_repeats(self, ids: Sequence[int]) -> np.ndarray:
    """Row positions of the given ids, which may repeat (a batch larger than the set)."""
    return positions_of(self.ids, ids, self.name, repeats=True)

  def gather(self, positions) -> tuple:
    """(x, y) of the rows at `positions` (repeats allowed): the one way the trainer and
    core.predict read examples, shared with the streamed `core.data.records.RecordDataset`."""
    positions = np.asarray(positions)
    return self.x[positions], self.y[positions]

  def subset(self, ids: Sequence[int]) -> "ArrayDataset":
    """The examples with the given stable ids, in the given order."""
    pos = self.positions(ids)
    return dataclasses.replace(self, x=self.x[pos], y=self.y[pos], ids=self.ids[pos])

  def with_targets(self, y: np.ndarray) -> "ArrayDataset":
    return dataclasses.replace(self, y=np.asarray(y))

  def fingerprint(self) -> str:
    """Short hash of (ids, labels, inputs): detects a different dataset on load."""
    h = hashlib.sha256()
    for a in (self.ids, self.labels, np.ascontiguousarray(self.x)):
      h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()[:16]


@dataclasses.dataclass(frozen=True)
class DatasetSplits:
  train: ArrayDataset
  test: ArrayDataset
  num_classes: int
  name: str

  @property
  def example_shape(self) -> tuple:
    return self.train.example_shape


# ----------------------------------------------------------------------------
# Validation and normalisation.


def check_finite(x: np.ndarray, what: str) -> None:
  if np.issubdtype(x.dtype, np.floating) and not np.isfinite(x).all():
    bad = np.argwhere(~np.isfinite(x.reshape(len(x), -1)).all(axis=1)).ravel()
    raise DataError(f"{what}: non-finite (NaN/inf) inputs in examples at rows "
                    f"{bad[:10].tolist()}")


def normalize(train_x: np.ndarray, test_x: np.ndarray, mode: str):
  """Standardise with statistics of the training split.

  'standardize': one scalar mean/std; 'per_channel': mean/std per last axis.
  """
  if mode not in NORMALIZATIONS:
    raise DataError(f"unknown normalization {mode!r}; choose from {NORMALIZATIONS}")
  if mode == "none":
    return train_x, test_x
  mean, std = normalization_stats(train_x, mode)
  f = lambda a: ((a - mean) / std).astype(np.float32)
  return f(train_x), f(test_x)


def normalization_stats(x: np.ndarray, mode: str) -> tuple:
  """(mean, std + 1e-8), float64, broadcastable to x: one scalar ('standardize') or one per
  last-axis channel ('per_channel'), over the training inputs `x` (n, ...)."""
  if mode not in ("standardize", "per_channel"):
    raise DataError(f"no statistics for normalization {mode!r}")
  axes = tuple(range(x.ndim)) if mode == "standardize" else tuple(range(x.ndim - 1))
  mean = x.mean(axis=axes, keepdims=True, dtype=np.float64)
  std = x.std(axis=axes, keepdims=True, dtype=np.float64) + 1e-8
  return mean, std


def class_balanced_ids(ds: ArrayDataset, per_class: int, seed: int) -> np.ndarray:
  """`per_class` ids of each class drawn without replacement (sorted by class)."""
  labels = ds.labels
  rng = np.random.default_rng(seed)
  out = []
  for c in range(ds.num_classes):
    members = ds.ids[labels == c]
    if per_class > len(members):
      raise DataError(f"{ds.name}: asked for {per_class} examples of class {c}, "
                      f"which has only {len(members)}")
    out.append(rng.choice(members, size=per_class, replace=False))
  return np.concatenate(out).astype(np.int64)


def shard_range(n: int, process_index: int, process_count: int) -> tuple[int, int]:
  """Contiguous, disjoint, covering [start, end) of n examples for one process."""
  if not 0 <= process_index < process_count:
    raise DataError(f"process_index {process_index} not in [0, {process_count})")
  base, extra = divmod(n, process_count)
  start = process_index * base + min(process_index, extra)
  return start, start + base + (process_index < extra)
