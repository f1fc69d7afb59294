"""The support set: the examples a pruned or distilled training set consists of, and its file.

x: (n_s, *example_shape) inputs; y: (n_s, C) regression targets (soft labels, centred scale:
one_hot - 1/C at init); labels: (n_s,) class each example was drawn from; init_ids: (n_s,)
stable train ids of the initial examples. Files are npz (no pickle), written atomically.
"""
from __future__ import annotations

from typing import Any

import flax.struct
import numpy as np

from core.data import DataError, class_balanced_ids
from core.io import atomic_save_npz, load_npz
from distill import krr


@flax.struct.dataclass
class SupportSet:
  """A distilled (or sampled) support set.

  x: (n_s, *example_shape) inputs; y: (n_s, C) regression targets (soft labels,
  centred scale: one_hot - 1/C at init); labels: (n_s,) class each image was
  drawn from; init_ids: (n_s,) stable train ids of the initial images.
  """
  x: Any
  y: Any
  labels: Any
  init_ids: Any

  @property
  def num_classes(self) -> int:
    return int(np.shape(self.y)[1])

  def to_numpy(self) -> "SupportSet":
    return SupportSet(np.asarray(self.x), np.asarray(self.y), np.asarray(self.labels),
                      np.asarray(self.init_ids))


def check_finite(x, what: str) -> None:
  x = np.asarray(x)
  if np.issubdtype(x.dtype, np.floating) and not np.isfinite(x).all():
    raise ValueError(f"{what}: contains NaN/inf")


def check_images_per_class(labels: np.ndarray, num_classes: int, images_per_class: int) -> int:
  ipc = int(images_per_class)
  if ipc < 1:
    raise ValueError(f"images_per_class must be >= 1, got {images_per_class}")
  counts = np.bincount(np.asarray(labels), minlength=num_classes)
  if ipc > counts.min():
    c = int(np.argmin(counts))
    raise ValueError(f"images_per_class={ipc} exceeds the size of class {c} "
                     f"({int(counts[c])} training examples)")
  return ipc


def init_support(train, images_per_class: int, seed: int) -> SupportSet:
  """Class-balanced random sample of `train` (an ArrayDataset), sorted by class."""
  check_images_per_class(train.labels, train.num_classes, images_per_class)
  check_finite(train.x, f"{train.name} inputs")
  ids = class_balanced_ids(train, int(images_per_class), seed)
  sub = train.subset(ids)
  return SupportSet(x=np.asarray(sub.x, np.float64),
                    y=krr.targets_of(sub.y, train.num_classes),
                    labels=np.asarray(sub.labels, np.int32),
                    init_ids=np.asarray(ids, np.int64))


def save_support(path: str, support: SupportSet) -> None:
  s = support.to_numpy()
  atomic_save_npz(path, x=s.x, y=s.y, labels=s.labels, init_ids=s.init_ids)


def load_support(path: str) -> SupportSet:
  f = load_npz(path, ("x", "y", "labels", "init_ids"), what="support set")
  return SupportSet(x=f["x"], y=f["y"], labels=f["labels"], init_ids=f["init_ids"])
