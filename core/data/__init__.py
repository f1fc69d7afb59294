"""The data front door: `load_dataset(name, ...)` -> `DatasetSplits` of numpy arrays with ids.

Every example carries a stable integer id: its position in the split as the source defines it
(for TFDS, the position in the un-shuffled split).

Sources
  * ``digits``, ``mnist1d`` - bundled, made offline (`core.data.bundled`).
  * any other name - a TFDS dataset read with ``tfds.builder(name, data_dir)``
    (cifar10, cifar100, mnist, imagenet2012, ...), which must be prepared in
    ``data_dir`` (`core.data.tfds_source`). Our own offline builders
    (`core.data.tfds_builders`) make ``digits`` and ``mnist1d`` available through
    the same TFDS path (``source="tfds"``).
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from core.data.bundled import BUNDLED, bundled_arrays
from core.data.types import (NORMALIZATIONS, ArrayDataset, DataError, DatasetSplits,
                             check_finite, class_balanced_ids, normalize, shard_range)

__all__ = ["load_dataset", "ArrayDataset", "DatasetSplits", "DataError", "BUNDLED",
           "NORMALIZATIONS", "check_finite", "class_balanced_ids", "normalize", "shard_range"]

def load_dataset(name: str, *, source: str = "auto", data_dir: Optional[str] = None,
                 normalization: str = "standardize", num_train: Optional[int] = None,
                 num_test: Optional[int] = None, seed: Optional[int] = None,
                 process_index: int = 0, process_count: int = 1,
                 shard: str = "none", image_size: Optional[int] = None) -> DatasetSplits:
  """Loads `name` as numpy arrays with stable ids.

  Args:
    name: 'digits', 'mnist1d' or a TFDS dataset name ('cifar10', 'mnist', ...).
    source: 'auto' (numpy for bundled names, TFDS otherwise), 'numpy', 'tfds' or 'records'
      (record files in data_dir/{train,test} read by index, never all in memory:
      core.data.records; sizes, seed and shard are fixed when the files are written).
    data_dir: TFDS data directory (local path or bucket); required for TFDS.
    normalization: 'none', 'standardize' or 'per_channel' (train statistics).
    num_train, num_test, seed: size and seed of the MNIST-1D draw.
    process_index, process_count: this host and the number of hosts.
    shard: 'none' (every host holds all examples, the default for datasets
      that fit in host memory), 'train', 'test' or 'both' (each host holds a
      contiguous disjoint slice of that split, for datasets that do not).
    image_size: TFDS only: resize images to image_size x image_size.
  """
  if source not in ("auto", "numpy", "tfds", "records"):
    raise DataError(f"unknown source {source!r}; choose 'auto', 'numpy', 'tfds' or 'records'")
  if source == "records":  # streamed from record files (core.data.records), all hosts alike
    if normalization not in NORMALIZATIONS:
      raise DataError(f"unknown normalization {normalization!r}; choose from {NORMALIZATIONS}")
    from core.data.records import load_record_splits
    return load_record_splits(name, data_dir, normalization=normalization)
  if shard not in ("none", "train", "test", "both"):
    raise DataError(f"unknown shard {shard!r}; choose none/train/test/both")
  if normalization not in NORMALIZATIONS:
    raise DataError(f"unknown normalization {normalization!r}; choose from {NORMALIZATIONS}")
  if source == "numpy" and name not in BUNDLED:
    raise DataError(f"unknown dataset {name!r} for source='numpy'; bundled datasets are "
                    f"{BUNDLED}; other names are read from TFDS (source='tfds', data_dir=...)")
  use_tfds = source == "tfds" or (source == "auto" and name not in BUNDLED)
  if use_tfds:
    from core.data import tfds_source
    (x, y, ids), (xt, yt, idst), num_classes = tfds_source.load_splits(
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
