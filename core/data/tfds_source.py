"""Reading a prepared TFDS dataset into numpy arrays with stable ids.

Used by `core.data.load_dataset` for every non-bundled name (cifar10,
cifar100, mnist, imagenet2012, ...) and for our offline builders of `digits`
and `mnist1d` (`source='tfds'`). The data must already be prepared in
`data_dir` (a local folder or a gs:// bucket): nothing is downloaded here.

Stable ids: an integer `example_id` feature when the dataset has one (our
offline builders), else the example's position in the un-shuffled split.
Multi-host: with sharding on, process i reads the contiguous slice
`shard_range(n, i, count)` of the split (disjoint and covering, like
`tfds.even_splits`), expressed as a TFDS absolute slice `train[a:b]`.
Everything read is held in host memory: fine for MNIST/CIFAR; for ImageNet
shard the train split across hosts and pass `image_size`.
"""
from __future__ import annotations

import os

import numpy as np

from core.data.bundled import BUNDLED
from core.data.types import DataError, shard_range

IMAGE_KEYS = ("image", "signal", "x")


def _import_tfds():
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  import tensorflow as tf
  try:  # TFDS must never grab a GPU that JAX uses.
    tf.config.set_visible_devices([], "GPU")
  except RuntimeError:
    pass
  import tensorflow_datasets as tfds
  return tf, tfds


def get_builder(name: str, data_dir, num_train=None, num_test=None, seed=None):
  """The TFDS builder for `name`; our offline builders for bundled names."""
  tf, tfds = _import_tfds()
  if not data_dir:
    raise DataError(
        f"TFDS dataset {name!r} needs data_dir (a local folder or gs:// bucket "
        "holding prepared TFDS data)")
  if name in BUNDLED:
    from core.data import tfds_builders
    builder = tfds_builders.offline_builder(name, data_dir, num_train, num_test, seed)
    prepare_hint = (f"python -c \"import core.data.tfds_builders as b; "
                    f"b.prepare('{name}', '{data_dir}')\"")
  else:
    try:
      builder = tfds.builder(name, data_dir=data_dir, try_gcs=False)
    except Exception as e:  # DatasetNotFoundError and friends
      raise DataError(
          f"unknown dataset {name!r}: not bundled ({BUNDLED}) and not a TFDS "
          f"dataset ({type(e).__name__}: {str(e).splitlines()[0][:200]})") from None
    prepare_hint = (f"on a machine with internet: python -c \"import tensorflow_datasets "
                    f"as tfds; tfds.builder('{name}', data_dir='{data_dir}')"
                    f".download_and_prepare()\" (or `tfds build {name} --data_dir "
                    f"{data_dir}`), then copy {data_dir} here")
  if not tf.io.gfile.exists(os.path.join(builder.data_dir, "dataset_info.json")):
    raise DataError(
        f"TFDS dataset {name!r} is not prepared in data_dir={data_dir!r} (looked for "
        f"{builder.data_dir}). Prepare it with: {prepare_hint}")
  return builder


def input_key(builder) -> str:
  """The input feature of a TFDS builder: the first of IMAGE_KEYS it has."""
  features = builder.info.features
  key = next((k for k in IMAGE_KEYS if k in features), None)
  if key is None:
    raise DataError(f"{builder.name}: no input feature among {IMAGE_KEYS}; "
                    f"features are {list(features)}")
  return key


def example_to_xy(builder, image_size=None):
  """The tf.data map from a TFDS example to {'x' float32 (uint8 images / 255, resized to
  image_size x image_size if given), 'y' int32, ['id': example_id]}: shared by the in-memory
  reader and the record writer (core.data.records.prepare_tfds)."""
  tf, _ = _import_tfds()
  key = input_key(builder)
  has_id = "example_id" in builder.info.features

  def to_xy(ex):
    x = ex[key]
    if image_size:
      x = tf.image.resize(x, (image_size, image_size))
    if x.dtype == tf.uint8:
      x = tf.cast(x, tf.float32) / 255.0
    out = {"x": tf.cast(x, tf.float32), "y": tf.cast(ex["label"], tf.int32)}
    if has_id:
      out["id"] = ex["example_id"]
    return out

  return to_xy


def _read_split(builder, split: str, image_size=None):
  """All examples of `split` (a TFDS split string) as (x, y, example_id|None)."""
  tf, tfds = _import_tfds()
  ds = builder.as_dataset(split=split, shuffle_files=False,
                          read_config=tfds.ReadConfig(interleave_cycle_length=1))
  to_xy = example_to_xy(builder, image_size)
  has_id = "example_id" in builder.info.features

  xs, ys, ids = [], [], []
  for b in tfds.as_numpy(ds.map(to_xy).batch(4096)):
    xs.append(b["x"]); ys.append(b["y"])
    if has_id:
      ids.append(b["id"])
  if not xs:
    raise DataError(f"{builder.name}: split {split!r} is empty")
  return (np.concatenate(xs), np.concatenate(ys),
          np.concatenate(ids).astype(np.int64) if has_id else None)


def load_splits(name, *, data_dir, process_index=0, process_count=1, shard="none",
                image_size=None, num_train=None, num_test=None, seed=None):
  """((x, y, ids) train, (x, y, ids) test, num_classes) for this process."""
  builder = get_builder(name, data_dir, num_train, num_test, seed)
  bundled = name in BUNDLED
  out = []
  for split, limit in (("train", None if bundled else num_train),
                       ("test", None if bundled else num_test)):
    if split not in builder.info.splits:
      alt = "validation" if split == "test" else None
      if alt not in builder.info.splits:
        raise DataError(f"{name}: no {split!r} split; has {list(builder.info.splits)}")
      split = alt
    n = builder.info.splits[split].num_examples
    n = min(n, limit) if limit else n
    start, end = 0, n
    if shard in ("both", split if split != "validation" else "test") and process_count > 1:
      start, end = shard_range(n, process_index, process_count)
    x, y, ids = _read_split(builder, f"{split}[{start}:{end}]", image_size)
    if ids is None:
      ids = np.arange(start, end, dtype=np.int64)
    order = np.argsort(ids, kind="stable")
    out.append((x[order], y[order], ids[order]))
  num_classes = builder.info.features["label"].num_classes
  return out[0], out[1], num_classes
