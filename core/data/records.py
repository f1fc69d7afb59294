"""Record-file datasets: examples with stable ids on disk, read by index, never all in memory.

A *record set* is one split in a folder::

  <path>/meta.json                       format, name, count, shapes, dtypes, shard files
                                         (name, records, bytes), normalisation statistics,
                                         fingerprints
  <path>/index.npz                       ids (n,) int64 and targets y (n,) int32 | (n, C)
  <path>/records-00000-of-0000K.array_record   the inputs, record i = int64 id || x bytes

The shards are ArrayRecord files (Riegeli, ``group_size:1``: every record is its own chunk,
so reading record i touches only its bytes; chunk hashes detect corruption). We read them with
`array_record`'s `ArrayRecordReader.read(indices)` directly. ``grain`` (0.2.18 installs on
Python 3.11) was not added: its ArrayRecordDataSource is the same reader, and its sampler
and loader would duplicate `core.sampler.IndexSampler`, which already makes each global batch
a pure function of (seed, step, ids) and gives exact resume; TFDS's ``tfds.data_source`` would
tie reading to TensorFlow at training time.

`RecordDataset` has the interface the trainer and `core.predict` use on `ArrayDataset`:
``len``, ``ids``, ``y``, ``labels``, ``num_classes``, ``name``, ``example_shape``,
``subset(ids)``, ``positions(ids)``, ``fingerprint()`` and ``gather(positions) -> (x, y)``,
which reads only the requested records. The ids (8 bytes each) and targets stay in memory:
1.28M ImageNet ids and labels are 15 MB. Normalisation uses the training split's statistics
stored at write time, computed as `core.data.types.normalize` does, so a record set written
from an in-memory dataset gathers bit-identical inputs to `load_dataset(source='numpy')`.

Writers: `write_records(dataset | iterable of chunks, path)`, `write_splits(splits, dir)`,
`prepare_bundled(name, dir, num_train=...)` (digits, MNIST-1D at any size) and
`prepare_tfds(name, tfds_data_dir, dir)` (any prepared TFDS dataset, streamed in chunks).
A missing, truncated or corrupt file raises `CorruptRecordsError` naming the file.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from typing import Iterable, Optional, Sequence, Union

import numpy as np

from core.data.types import (NORMALIZATIONS, ArrayDataset, DataError, DatasetSplits,
                             normalization_stats, positions_of)
from core.io import CorruptFileError, load_json, load_npz

FORMAT = "prune-records-v1"
DEFAULT_OPTIONS = "group_size:1,uncompressed"
ID_BYTES = 8


class CorruptRecordsError(CorruptFileError):
  """A record set file is missing, truncated or corrupt (the message names the file)."""


def _rewrite_hint(folder: str) -> str:
  return (f"rewrite the record set with core.data.records.write_records / prepare_bundled / "
          f"prepare_tfds into {folder}")


# ----------------------------------------------------------------------------
# Normalisation statistics (core.data.types.normalization_stats, as normalize uses).


def _stats(x: np.ndarray) -> dict:
  """{mode: (mean, std)} of the training inputs for every normalisation mode."""
  return {mode: normalization_stats(x, mode) for mode in ("standardize", "per_channel")}


class _RunningStats:
  """Streaming sums for the statistics of a split written in chunks (float64 moments;
  equal to `_stats` up to rounding)."""

  def __init__(self):
    self.n = 0
    self.s = None
    self.s2 = None

  def update(self, x: np.ndarray):
    x = np.asarray(x, np.float64).reshape(len(x), -1, x.shape[-1]) if x.ndim > 1 else \
        np.asarray(x, np.float64).reshape(len(x), 1, 1)
    s, s2 = x.sum(axis=(0, 1)), (x * x).sum(axis=(0, 1))
    self.s = s if self.s is None else self.s + s
    self.s2 = s2 if self.s2 is None else self.s2 + s2
    self.n += x.shape[0] * x.shape[1]

  def result(self, ndim: int) -> dict:
    shape = (1,) * ndim
    ch = (1,) * (ndim - 1) + (len(self.s),)
    mean_c = self.s / self.n
    var_c = np.maximum(self.s2 / self.n - mean_c ** 2, 0)
    mean = self.s.sum() / (self.n * len(self.s))
    var = max(self.s2.sum() / (self.n * len(self.s)) - mean ** 2, 0.0)
    return {"standardize": (np.full(shape, mean), np.full(shape, np.sqrt(var) + 1e-8)),
            "per_channel": (mean_c.reshape(ch), np.sqrt(var_c).reshape(ch) + 1e-8)}


def _stats_to_json(stats: dict) -> dict:
  return {m: {"shape": list(mu.shape), "mean": mu.ravel().tolist(), "std": sd.ravel().tolist()}
          for m, (mu, sd) in stats.items()}


def _stats_from_json(d: dict, mode: str):
  e = d[mode]
  shape = tuple(e["shape"])
  return (np.asarray(e["mean"], np.float64).reshape(shape),
          np.asarray(e["std"], np.float64).reshape(shape))


# ----------------------------------------------------------------------------
# Writing.


def _chunks(dataset) -> Iterable[ArrayDataset]:
  if isinstance(dataset, ArrayDataset):
    yield dataset
  else:
    for c in dataset:
      if not isinstance(c, ArrayDataset):
        raise DataError(f"write_records: chunks must be ArrayDataset, got {type(c).__name__}")
      yield c


def write_records(dataset: Union[ArrayDataset, Iterable[ArrayDataset]], path: str, *,
                  num_shards: int = 1, records_per_shard: Optional[int] = None,
                  stats_from: Union[ArrayDataset, dict, None] = None, name: Optional[str] = None,
                  overwrite: bool = False, options: str = DEFAULT_OPTIONS,
                  x_dtype: Optional[str] = None) -> str:
  """Writes one split as a record set in folder `path` (atomically: a temporary folder renamed).

  dataset: an ArrayDataset (held in memory) or an iterable of ArrayDataset chunks (any size;
    only one chunk in memory at a time; give `records_per_shard`).
  num_shards: for an in-memory dataset, the number of (contiguous) shard files.
  stats_from: whose statistics normalise this split at read time: None = this split's own
    (the training split), an ArrayDataset (the training split, for the test split) or the
    `meta['stats']` dict of a written training split.
  x_dtype: store inputs as this dtype (default: as given; 'uint8' stores images 4x smaller
    and gathers them as float32 / 255, which the chunked TFDS writer uses).
  Returns `path`.
  """
  from array_record.python.array_record_module import ArrayRecordWriter
  path = os.path.abspath(path)
  if os.path.exists(os.path.join(path, "meta.json")) and not overwrite:
    raise DataError(f"a record set already exists at {path}; pass overwrite=True or delete it")
  in_memory = isinstance(dataset, ArrayDataset)
  if in_memory:
    n_all = len(dataset)
    if n_all == 0:
      raise DataError(f"write_records: empty dataset {dataset.name!r}")
    if int(num_shards) < 1:
      raise DataError(f"num_shards must be >= 1, got {num_shards}")
    per_shard = records_per_shard or -(-n_all // int(num_shards))
  else:
    per_shard = int(records_per_shard or 1 << 20)
  if per_shard < 1:
    raise DataError(f"records_per_shard must be >= 1, got {records_per_shard}")
  tmp = f"{path}.tmp-{os.getpid()}"
  shutil.rmtree(tmp, ignore_errors=True)
  os.makedirs(tmp)
  shards, ids_all, y_all = [], [], []
  writer, in_shard = None, 0
  content = hashlib.sha256()
  running = _RunningStats() if (stats_from is None and not in_memory) else None
  meta_x = None
  decode = "raw"

  def close_shard():
    nonlocal writer
    if writer is not None:
      writer.close()
      f = os.path.join(tmp, shards[-1]["file"])
      shards[-1]["bytes"] = os.path.getsize(f)
      writer = None

  for chunk in _chunks(dataset):
    if len(chunk) == 0:
      continue
    x = np.asarray(chunk.x)
    if x_dtype is not None and np.dtype(x_dtype) == np.uint8 and x.dtype != np.uint8:
      x = np.clip(np.rint(x * 255.0), 0, 255).astype(np.uint8)
      decode = "uint8_div255"
    elif x_dtype is not None:
      x = x.astype(x_dtype)
    if meta_x is None:
      meta_x = dict(example_shape=list(x.shape[1:]), x_dtype=x.dtype.str,
                    num_classes=int(chunk.num_classes), name=name or chunk.name,
                    soft=chunk.y.ndim == 2)
    elif list(x.shape[1:]) != meta_x["example_shape"] or x.dtype.str != meta_x["x_dtype"]:
      raise DataError(f"write_records: chunk {chunk.name!r} has shape {x.shape[1:]} / dtype "
                      f"{x.dtype}, earlier chunks {meta_x['example_shape']} / "
                      f"{meta_x['x_dtype']}")
    if running is not None:
      running.update(x.astype(np.float32) / 255.0 if decode == "uint8_div255" else x)
    ids = np.asarray(chunk.ids, np.int64)
    ids_all.append(ids)
    y_all.append(np.asarray(chunk.y))
    xb = np.ascontiguousarray(x).reshape(len(x), -1).view(np.uint8)
    recs = np.concatenate([ids.astype("<i8").reshape(-1, 1).view(np.uint8), xb], axis=1)
    content.update(recs.tobytes())
    for r in recs:
      if writer is None or in_shard == per_shard:
        close_shard()
        shards.append({"file": f"records-{len(shards):05d}.array_record", "num_records": 0})
        writer = ArrayRecordWriter(os.path.join(tmp, shards[-1]["file"]), options)
        in_shard = 0
      writer.write(r.tobytes())
      in_shard += 1
      shards[-1]["num_records"] += 1
  close_shard()
  if meta_x is None:
    shutil.rmtree(tmp, ignore_errors=True)
    raise DataError("write_records: no examples to write")
  ids = np.concatenate(ids_all)
  y = np.concatenate(y_all)
  uniq, counts = np.unique(ids, return_counts=True)
  if (counts > 1).any():
    shutil.rmtree(tmp, ignore_errors=True)
    raise DataError(f"write_records: duplicated ids {uniq[counts > 1][:10].tolist()}")
  # File names carry the shard count once it is known.
  k = len(shards)
  for s in shards:
    new = s["file"].replace(".array_record", f"-of-{k:05d}.array_record")
    os.rename(os.path.join(tmp, s["file"]), os.path.join(tmp, new))
    s["file"] = new
  # Statistics and (for a dataset in memory) the fingerprints `load_dataset` would give.
  fingerprints = {}
  if isinstance(stats_from, dict):
    stats = {m: _stats_from_json(stats_from, m) for m in stats_from}
  elif isinstance(stats_from, ArrayDataset):
    stats = _stats(np.asarray(stats_from.x))
  elif in_memory:
    stats = _stats(np.asarray(dataset.x))
  else:
    stats = running.result(len(meta_x["example_shape"]) + 1)
  if in_memory and decode == "raw":
    for mode in NORMALIZATIONS:
      xn = dataset.x if mode == "none" else _apply(np.asarray(dataset.x), stats[mode])
      fingerprints[mode] = ArrayDataset(xn, dataset.y, dataset.ids, dataset.num_classes,
                                        dataset.name).fingerprint()
  meta = dict(format=FORMAT, num_records=int(len(ids)), shards=shards, options=options,
              decode=decode, stats=_stats_to_json(stats), fingerprints=fingerprints,
              content_sha256=content.hexdigest(), **meta_x)
  np.savez(os.path.join(tmp, "index.npz"), ids=ids, y=y)
  with open(os.path.join(tmp, "meta.json"), "w") as f:
    json.dump(meta, f, indent=1)
  if os.path.exists(path):
    if not overwrite:
      shutil.rmtree(tmp, ignore_errors=True)
      raise DataError(f"{path} exists; pass overwrite=True or delete it")
    shutil.rmtree(path)
  os.makedirs(os.path.dirname(path), exist_ok=True)
  os.replace(tmp, path)
  return path


def _apply(x: np.ndarray, stat) -> np.ndarray:
  mean, std = stat
  return ((x - mean) / std).astype(np.float32)


def write_splits(splits: DatasetSplits, directory: str, *, num_shards: int = 1,
                 overwrite: bool = False) -> str:
  """`directory/train` and `directory/test` from in-memory splits (un-normalised, i.e. loaded
  with normalization='none'); the test split is normalised with the training statistics."""
  write_records(splits.train, os.path.join(directory, "train"), num_shards=num_shards,
                name=f"{splits.name}/train", overwrite=overwrite)
  write_records(splits.test, os.path.join(directory, "test"), num_shards=num_shards,
                stats_from=splits.train, name=f"{splits.name}/test", overwrite=overwrite)
  return directory


def prepare_bundled(name: str, directory: str, *, num_train: Optional[int] = None,
                    num_test: Optional[int] = None, seed: Optional[int] = None,
                    num_shards: int = 1, overwrite: bool = False) -> str:
  """Writes a bundled dataset ('digits', 'mnist1d' at any num_train) as record sets."""
  from core.data import load_dataset
  splits = load_dataset(name, source="numpy", normalization="none", num_train=num_train,
                        num_test=num_test, seed=seed)
  return write_splits(splits, directory, num_shards=num_shards, overwrite=overwrite)


def prepare_tfds(name: str, tfds_data_dir: str, directory: str, *,
                 image_size: Optional[int] = None, chunk_size: int = 4096,
                 records_per_shard: int = 10000, x_dtype: Optional[str] = "uint8",
                 overwrite: bool = False) -> str:
  """Streams a prepared TFDS dataset (e.g. imagenet2012) into record sets, `chunk_size`
  examples in memory at a time. Images are stored as uint8 (gathered as float32 / 255, as the
  in-memory TFDS path scales them); ids are TFDS `example_id` where present, else positions."""
  from core.data import tfds_source
  _, tfds = tfds_source._import_tfds()
  builder = tfds_source.get_builder(name, tfds_data_dir)
  tfds_source.input_key(builder)  # fails early, naming the features, if there is no input
  num_classes = builder.info.features["label"].num_classes
  has_id = "example_id" in builder.info.features
  to_xy = tfds_source.example_to_xy(builder, image_size)
  written = {}
  for split in ("train", "test"):
    src = split if split in builder.info.splits else "validation"
    if src not in builder.info.splits:
      raise DataError(f"{name}: no {split!r} split; has {list(builder.info.splits)}")
    ds = builder.as_dataset(split=src, shuffle_files=False,
                            read_config=tfds.ReadConfig(interleave_cycle_length=1))

    def chunks():
      start = 0
      for b in tfds.as_numpy(ds.map(to_xy).batch(chunk_size)):
        n = len(b["y"])
        ids = (b["id"].astype(np.int64) if has_id else np.arange(start, start + n))
        start += n
        yield ArrayDataset(b["x"], b["y"], ids, num_classes, f"{name}/{split}")

    stats_from = None if split == "train" else written["train"]["stats"]
    p = write_records(chunks(), os.path.join(directory, split), stats_from=stats_from,
                      records_per_shard=records_per_shard, x_dtype=x_dtype,
                      name=f"{name}/{split}", overwrite=overwrite)
    written[split] = load_json(os.path.join(p, "meta.json"), "record set meta")
  return directory


# ----------------------------------------------------------------------------
# Reading.


class RecordDataset:
  """One split on disk; `gather(positions)` reads only those records. Subsets share files."""

  def __init__(self, path: str, *, normalization: str = "none", stats: Optional[dict] = None,
               _state: Optional[dict] = None):
    if _state is not None:
      self.__dict__.update(_state)
      return
    if normalization not in NORMALIZATIONS:
      raise DataError(f"unknown normalization {normalization!r}; choose from {NORMALIZATIONS}")
    self.path = os.path.abspath(path)
    meta_path = os.path.join(self.path, "meta.json")
    if not os.path.exists(meta_path):
      raise DataError(f"no record set at {self.path} (no meta.json); "
                      f"{_rewrite_hint(self.path)}")
    try:
      meta = load_json(meta_path, "record set meta")
    except CorruptFileError as e:
      raise CorruptRecordsError(f"{e}; {_rewrite_hint(self.path)}") from e
    if meta.get("format") != FORMAT:
      raise CorruptRecordsError(f"{meta_path}: format {meta.get('format')!r}, expected "
                                f"{FORMAT!r}; {_rewrite_hint(self.path)}")
    index_path = os.path.join(self.path, "index.npz")
    try:
      index = load_npz(index_path, ("ids", "y"), "record set index")
    except FileNotFoundError:
      raise CorruptRecordsError(f"record set index {index_path} is missing; "
                                f"{_rewrite_hint(self.path)}") from None
    except CorruptFileError as e:
      raise CorruptRecordsError(f"{e}; {_rewrite_hint(self.path)}") from e
    self.meta = meta
    self._all_ids = index["ids"].astype(np.int64)
    self._all_y = index["y"]
    if len(self._all_ids) != meta["num_records"] or len(self._all_y) != meta["num_records"]:
      raise CorruptRecordsError(f"{index_path} holds {len(self._all_ids)} ids, meta.json says "
                                f"{meta['num_records']} records; {_rewrite_hint(self.path)}")
    counts = [int(s["num_records"]) for s in meta["shards"]]
    self._starts = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    self._example_shape = tuple(meta["example_shape"])
    self._x_dtype = np.dtype(meta["x_dtype"])
    self._rec_bytes = ID_BYTES + int(np.prod(self._example_shape, dtype=np.int64)) \
        * self._x_dtype.itemsize
    self.normalization = normalization
    st = stats if stats is not None else meta["stats"]
    self._norm = None if normalization == "none" else _stats_from_json(st, normalization)
    self._rows = None                      # positions into the files; None = all, in order
    self.ids = self._all_ids
    self.y = self._all_y
    self.num_classes = int(meta["num_classes"])
    self.name = meta["name"]
    self._readers = {}
    self.io = {"records_read": 0}          # shared by subsets: what this process has read

  # -- the ArrayDataset interface --
  def __len__(self) -> int:
    return len(self.ids)

  @property
  def labels(self) -> np.ndarray:
    return self.y if self.y.ndim == 1 else np.argmax(self.y, axis=1).astype(np.int32)

  @property
  def example_shape(self) -> tuple:
    return self._example_shape

  @property
  def x(self):
    raise DataError(f"{self.name}: a record dataset ({self.path}) holds no inputs in memory; "
                    f"read batches with gather(positions), or call to_arrays() for a small set")

  def _replace(self, **kw) -> "RecordDataset":
    state = dict(self.__dict__)
    state["_readers"] = self._readers      # share open files and the read counter
    state.update(kw)
    return RecordDataset("", _state=state)

  def subset(self, ids: Sequence[int]) -> "RecordDataset":
    pos = self.positions(ids)
    rows = pos if self._rows is None else self._rows[pos]
    return self._replace(_rows=rows, ids=self.ids[pos], y=self.y[pos])

  def with_targets(self, y: np.ndarray) -> "RecordDataset":
    y = np.asarray(y)
    if len(y) != len(self):
      raise DataError(f"{self.name}: {len(y)} targets for {len(self)} examples")
    return self._replace(y=y)

  def positions(self, ids: Sequence[int]) -> np.ndarray:
    return positions_of(self.ids, ids, self.name)

  def positions_with_repeats(self, ids: Sequence[int]) -> np.ndarray:
    return positions_of(self.ids, ids, self.name, repeats=True)

  def fingerprint(self) -> str:
    """Equal to the in-memory `ArrayDataset.fingerprint` of the same split when the record set
    was written from memory and is read whole; otherwise a hash of (ids, labels, file
    content, normalisation)."""
    fp = self.meta.get("fingerprints", {}).get(self.normalization)
    if fp and self._rows is None and self.y is self._all_y:
      return fp
    h = hashlib.sha256(b"records")
    for a in (self.ids, self.labels, self._rows if self._rows is not None else np.zeros(0)):
      h.update(np.ascontiguousarray(a).tobytes())
    h.update(f"{self.meta['content_sha256']}/{self.normalization}".encode())
    if self._norm is not None:
      h.update(np.ascontiguousarray(self._norm[0]).tobytes())
    return h.hexdigest()[:16]

  # -- reading --
  def _reader(self, k: int):
    r = self._readers.get(k)
    if r is not None:
      return r
    from array_record.python.array_record_module import ArrayRecordReader
    s = self.meta["shards"][k]
    f = os.path.join(self.path, s["file"])
    if not os.path.exists(f):
      raise CorruptRecordsError(f"record file {f} is missing; {_rewrite_hint(self.path)}")
    size = os.path.getsize(f)
    if size != int(s["bytes"]):
      raise CorruptRecordsError(f"record file {f} has {size} bytes, meta.json says "
                                f"{s['bytes']}: truncated or replaced; {_rewrite_hint(self.path)}")
    try:
      r = ArrayRecordReader(f, "readahead_buffer_size:0")
      n = r.num_records()
    except Exception as e:  # Riegeli raises RuntimeError / ValueError
      raise CorruptRecordsError(f"record file {f} cannot be opened ({type(e).__name__}: "
                                f"{e}); {_rewrite_hint(self.path)}") from e
    if n != int(s["num_records"]):
      raise CorruptRecordsError(f"record file {f} holds {n} records, meta.json says "
                                f"{s['num_records']}; {_rewrite_hint(self.path)}")
    self._readers[k] = r
    return r

  def gather(self, positions) -> tuple:
    """(x (b, *example_shape), y (b,) | (b, C)) of the examples at `positions` (into this
    dataset, repeats allowed), reading only those records; inputs normalised as loaded."""
    pos = np.asarray(positions, np.int64).reshape(-1)
    if pos.size and (pos.min() < 0 or pos.max() >= len(self)):
      raise DataError(f"{self.name}: positions outside [0, {len(self)}): "
                      f"{pos[(pos < 0) | (pos >= len(self))][:10].tolist()}")
    rows = pos if self._rows is None else self._rows[pos]
    shard_of = np.searchsorted(self._starts, rows, side="right") - 1
    buf = np.empty((len(rows), self._rec_bytes), np.uint8)
    for k in np.unique(shard_of):
      sel = np.nonzero(shard_of == k)[0]
      f = os.path.join(self.path, self.meta["shards"][k]["file"])
      try:
        recs = self._reader(int(k)).read((rows[sel] - self._starts[k]).tolist())
      except CorruptRecordsError:
        raise
      except Exception as e:
        raise CorruptRecordsError(f"record file {f} is corrupt ({type(e).__name__}: {e}); "
                                  f"{_rewrite_hint(self.path)}") from e
      data = b"".join(recs)
      if len(data) != len(sel) * self._rec_bytes:
        raise CorruptRecordsError(f"record file {f}: records of {sorted({len(r) for r in recs})}"
                                  f" bytes, expected {self._rec_bytes}; "
                                  f"{_rewrite_hint(self.path)}")
      buf[sel] = np.frombuffer(data, np.uint8).reshape(len(sel), self._rec_bytes)
      self.io["records_read"] += len(sel)
    got = np.ascontiguousarray(buf[:, :ID_BYTES]).view("<i8").ravel()
    want = self._all_ids[rows]
    if (got != want).any():
      k = int(shard_of[np.argmax(got != want)])
      f = os.path.join(self.path, self.meta["shards"][k]["file"])
      raise CorruptRecordsError(f"record file {f} holds ids that disagree with index.npz; "
                                f"{_rewrite_hint(self.path)}")
    x = np.ascontiguousarray(buf[:, ID_BYTES:]).view(self._x_dtype).reshape(
        (len(rows),) + self._example_shape)
    if self.meta.get("decode") == "uint8_div255":
      x = x.astype(np.float32) / np.float32(255.0)
    if self._norm is not None:
      x = _apply(x, self._norm)
    return x, self.y[pos]

  def to_arrays(self) -> ArrayDataset:
    """The whole split in memory (small sets and tests only)."""
    x, y = self.gather(np.arange(len(self)))
    return ArrayDataset(x, y, self.ids.copy(), self.num_classes, self.name)

  def close(self):
    for r in self._readers.values():
      r.close()
    self._readers.clear()

  def __repr__(self):
    return f"RecordDataset({self.name!r}, n={len(self)}, path={self.path!r})"


def load_record_splits(name: str, data_dir: Optional[str], *,
                       normalization: str = "standardize") -> DatasetSplits:
  """`data_dir/train` and `data_dir/test` as RecordDatasets, both normalised with the training
  split's statistics (what load_dataset(source='records') returns)."""
  if not data_dir:
    raise DataError(f"source='records' needs data_dir (a folder with train/ and test/ record "
                    f"sets, e.g. from core.data.records.prepare_bundled({name!r}, DIR))")
  train = RecordDataset(os.path.join(data_dir, "train"), normalization=normalization)
  test = RecordDataset(os.path.join(data_dir, "test"), normalization=normalization,
                       stats=train.meta["stats"])
  base = train.name.split("/")[0]
  if base != name:
    raise DataError(f"record set {train.path} holds {train.name!r}, not {name!r}")
  if train.num_classes != test.num_classes:
    raise DataError(f"{data_dir}: train has {train.num_classes} classes, test "
                    f"{test.num_classes}")
  return DatasetSplits(train=train, test=test, num_classes=train.num_classes, name=name)
