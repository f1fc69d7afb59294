"""Datasets as in-memory numpy arrays with stable integer example ids.

One entry point, `load_dataset(name, ...)`, returns `DatasetSplits` (train and
test `ArrayDataset`s plus the number of classes). Every example carries a stable
integer id: its position in the split as the source defines it (for TFDS, the
position in the un-shuffled split). Pruned datasets are formed by `subset(ids)`.

Sources
  * ``digits``  - scikit-learn's bundled 8x8 handwritten digits (1,797 images,
    values 0..16 scaled to [0, 1]); fixed stratified split, `DIGITS_TEST_SIZE`
    test images drawn with `DIGITS_SPLIT_SEED`; x has shape (n, 8, 8, 1).
  * ``mnist1d`` - MNIST-1D (Greydanus 2020) made offline by the `mnist1d`
    package's generator (never its downloader); default 4,000 train / 1,000
    test; x has shape (n, 40, 1). Generated draws are cached on disk.
  * any other name - a TFDS dataset read with ``tfds.builder(name, data_dir)``
    (cifar10, cifar100, mnist, imagenet2012, ...), which must be prepared in
    ``data_dir``. Our own offline builders (`pruning.tfds_builders`) make
    ``digits`` and ``mnist1d`` available through the same TFDS path
    (``source="tfds"``).

Shapes: x (n, *example_shape) float32, y (n,) int32, ids (n,) int64.
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
from typing import Optional, Sequence

import numpy as np

from pruning.files import atomic_save_npz

BUNDLED = ("digits", "mnist1d")
NORMALIZATIONS = ("none", "standardize", "per_channel")
DIGITS_TEST_SIZE = 360
DIGITS_SPLIT_SEED = 0
MNIST1D_DEFAULT = dict(num_train=4000, num_test=1000, seed=42)


class DataError(ValueError):
  """Bad dataset name, ids, shapes or values."""


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
    ids = np.asarray(ids)
    if ids.ndim != 1:
      raise DataError(f"ids must be 1-D, got shape {ids.shape}")
    if ids.size == 0:
      raise DataError(f"{self.name}: empty id list")
    if not np.issubdtype(ids.dtype, np.integer):
      raise DataError(f"ids must be integers, got dtype {ids.dtype}")
    uniq, counts = np.unique(ids, return_counts=True)
    if (counts > 1).any():
      raise DataError(f"{self.name}: duplicated ids {uniq[counts > 1][:10].tolist()}")
    order = np.argsort(self.ids, kind="stable")
    sorted_ids = self.ids[order]
    pos = np.searchsorted(sorted_ids, ids)
    pos = np.clip(pos, 0, len(sorted_ids) - 1)
    bad = sorted_ids[pos] != ids
    if bad.any():
      raise DataError(
          f"{self.name}: ids not in dataset (valid ids {int(self.ids.min())}.."
          f"{int(self.ids.max())}): {ids[bad][:10].tolist()}")
    return order[pos]

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
  axes = tuple(range(train_x.ndim)) if mode == "standardize" else tuple(range(train_x.ndim - 1))
  mean = train_x.mean(axis=axes, keepdims=True, dtype=np.float64)
  std = train_x.std(axis=axes, keepdims=True, dtype=np.float64) + 1e-8
  f = lambda a: ((a - mean) / std).astype(np.float32)
  return f(train_x), f(test_x)


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


# ----------------------------------------------------------------------------
# Bundled datasets (numpy, no network).


def digits_arrays():
  """(train_x, train_y, test_x, test_y) of sklearn digits with the fixed split."""
  from sklearn.datasets import load_digits
  from sklearn.model_selection import train_test_split
  d = load_digits()
  x = (d.images.astype(np.float32) / 16.0)[..., None]
  y = d.target.astype(np.int32)
  tr, te = train_test_split(np.arange(len(y)), test_size=DIGITS_TEST_SIZE,
                            random_state=DIGITS_SPLIT_SEED, stratify=y)
  tr, te = np.sort(tr), np.sort(te)
  return x[tr], y[tr], x[te], y[te]


def _cache_dir() -> str:
  return os.environ.get("PRUNE_DISTILL_CACHE",
                        os.path.join(os.path.expanduser("~"), ".cache", "prune_distill"))


def mnist1d_arrays(num_train: int = 4000, num_test: int = 1000, seed: int = 42):
  """MNIST-1D from the `mnist1d` generator with the authors' default arguments.

  The generator is deterministic given `seed`; a draw is cached in
  $PRUNE_DISTILL_CACHE (default ~/.cache/prune_distill).
  """
  for v, what in ((num_train, "num_train"), (num_test, "num_test")):
    if int(v) < 1:
      raise DataError(f"mnist1d: {what} must be >= 1, got {v}")
  path = os.path.join(_cache_dir(), f"mnist1d_{num_train}_{num_test}_{seed}.npz")
  if os.path.exists(path):
    with np.load(path) as f:
      return f["x"], f["y"], f["x_test"], f["y_test"]
  from mnist1d.data import get_dataset_args, make_dataset
  args = get_dataset_args()
  args.num_samples = num_train + num_test
  args.train_split = num_train / (num_train + num_test)
  args.seed = seed
  d = make_dataset(args)
  x = d["x"].astype(np.float32)[..., None]
  x_test = d["x_test"].astype(np.float32)[..., None]
  y, y_test = d["y"].astype(np.int32), d["y_test"].astype(np.int32)
  if len(x) != num_train or len(x_test) != num_test:  # generator rounding
    x, y, x_test, y_test = x[:num_train], y[:num_train], x_test[:num_test], y_test[:num_test]
  atomic_save_npz(path, x=x, y=y, x_test=x_test, y_test=y_test)
  return x, y, x_test, y_test


def bundled_arrays(name: str, num_train: Optional[int] = None,
                   num_test: Optional[int] = None, seed: Optional[int] = None):
  if name == "digits":
    if num_train or num_test:
      raise DataError("digits has a fixed split; num_train/num_test must be unset")
    return digits_arrays()
  if name == "mnist1d":
    return mnist1d_arrays(num_train or MNIST1D_DEFAULT["num_train"],
                          num_test or MNIST1D_DEFAULT["num_test"],
                          MNIST1D_DEFAULT["seed"] if seed is None else seed)
  raise DataError(f"unknown bundled dataset {name!r}; bundled: {BUNDLED}")


# ----------------------------------------------------------------------------
# Entry point.


def load_dataset(name: str, *, source: str = "auto", data_dir: Optional[str] = None,
                 normalization: str = "standardize", num_train: Optional[int] = None,
                 num_test: Optional[int] = None, seed: Optional[int] = None,
                 process_index: int = 0, process_count: int = 1,
                 shard: str = "none", image_size: Optional[int] = None) -> DatasetSplits:
  """Loads `name` as numpy arrays with stable ids.

  Args:
    name: 'digits', 'mnist1d' or a TFDS dataset name ('cifar10', 'mnist', ...).
    source: 'auto' (numpy for bundled names, TFDS otherwise), 'numpy' or 'tfds'.
    data_dir: TFDS data directory (local path or bucket); required for TFDS.
    normalization: 'none', 'standardize' or 'per_channel' (train statistics).
    num_train, num_test, seed: size and seed of the MNIST-1D draw.
    process_index, process_count: this host and the number of hosts.
    shard: 'none' (every host holds all examples, the default for datasets
      that fit in host memory), 'train', 'test' or 'both' (each host holds a
      contiguous disjoint slice of that split, for datasets that do not).
    image_size: TFDS only: resize images to image_size x image_size.
  """
  if source not in ("auto", "numpy", "tfds"):
    raise DataError(f"unknown source {source!r}; choose 'auto', 'numpy' or 'tfds'")
  if shard not in ("none", "train", "test", "both"):
    raise DataError(f"unknown shard {shard!r}; choose none/train/test/both")
  if normalization not in NORMALIZATIONS:
    raise DataError(f"unknown normalization {normalization!r}; choose from {NORMALIZATIONS}")
  if source == "numpy" and name not in BUNDLED:
    raise DataError(f"unknown dataset {name!r} for source='numpy'; bundled datasets are "
                    f"{BUNDLED}; other names are read from TFDS (source='tfds', data_dir=...)")
  use_tfds = source == "tfds" or (source == "auto" and name not in BUNDLED)
  if use_tfds:
    from pruning import tfds_data
    (x, y, ids), (xt, yt, idst), num_classes = tfds_data.load_splits(
        name, data_dir=data_dir, process_index=process_index,
        process_count=process_count, shard=shard, image_size=image_size,
        num_train=num_train, num_test=num_test, seed=seed)
  else:
    x, y, xt, yt = bundled_arrays(name, num_train, num_test, seed)
    num_classes = 10
    ids, idst = np.arange(len(x), dtype=np.int64), np.arange(len(xt), dtype=np.int64)
    for split, do in (("train", shard in ("train", "both")), ("test", shard in ("test", "both"))):
      if do and process_count > 1:
        arrs = (x, y, ids) if split == "train" else (xt, yt, idst)
        s, e = shard_range(len(arrs[0]), process_index, process_count)
        arrs = tuple(a[s:e] for a in arrs)
        if split == "train":
          x, y, ids = arrs
        else:
          xt, yt, idst = arrs
  check_finite(x, f"{name} train")
  check_finite(xt, f"{name} test")
  x, xt = normalize(x, xt, normalization)
  return DatasetSplits(
      train=ArrayDataset(x, y.astype(np.int32), ids, num_classes, f"{name}/train"),
      test=ArrayDataset(xt, yt.astype(np.int32), idst, num_classes, f"{name}/test"),
      num_classes=num_classes, name=name)
