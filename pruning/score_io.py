"""Score files: per-example scores with their provenance, never pickled.

A score file is one ``.npz`` (read with ``allow_pickle=False``) holding

  * ``ids``       int64 (n,)  stable example ids of the training split;
  * ``scores``    float64 (n,) the score of each id (larger = harder);
  * ``per_run``   float64 (K, n) optional per-run scores before averaging;
  * ``meta_json`` a 0-d unicode array: JSON of the metadata, at least
    ``method``, ``dataset`` (name), ``fingerprint`` (`ArrayDataset.fingerprint`),
    ``num_examples``, ``config`` (the scoring config as plain JSON) and, where
    they apply, ``epoch``, ``num_runs``, ``mode`` ('eval'/'train'), and
    ``pair_digest``: a sha256 over the (id, score[, per_run]) pairs sorted by id.

The digest binds each score to its id, not to a position: a file whose ``ids``
array was reordered (or whose scores were) without the other no longer matches
and is refused on load, while a consistent reordering of whole pairs is fine.
A file without a digest (written before it existed) is refused by `load`; the
cache (`cached`) recomputes it.

Files are written atomically (temporary file + ``os.replace``), so a file on
disk is always complete. Loading checks the ids and the dataset fingerprint
against the dataset the scores are meant for and raises `ScoreFileError` (a
`ValueError`) naming both on mismatch.

`cached(...)` computes scores once per (method, config, dataset) and reuses the
file afterwards; the file name carries a hash of the canonical JSON of those.

Several processes (one per host): each process writes one *score shard*,
``<score file>.shard-0000i-of-0000P.npz`` (a score file of its own with its own digest),
holding the ids of its contiguous slice `core.data.shard_range(n, i, P)` of the dataset
order and their scores. After a barrier process 0 merges the shards (`merge_shards`): every
shard must be present with an intact digest, the same method and dataset fingerprint, and
every dataset id must appear exactly once across them; otherwise `ScoreShardError` names
the shard files and the missing or duplicated ids. It then writes the one score file (`save`)
and removes the shards, and every process reads back that verified file. The shards live
beside the score file, so its folder must be one that every host sees (a shared filesystem
or bucket mount). The scorers in `pruning.scores` still gather each per-example score (a
scalar, 8 bytes per example and run, not logits) to every process, so a shard is that
process's slice of the gathered result: the merge is the verified write, not a memory saving.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
from typing import Any, Callable, Optional

import numpy as np

from core import data as data_lib
from core import io as files
from core.io import to_jsonable  # noqa: F401  (re-exported for score metadata)

FORMAT_VERSION = 1


class ScoreFileError(ValueError):
  """A score file that is missing, malformed or for another dataset."""


class ScoreShardError(ScoreFileError):
  """Score shards that cannot be merged: missing, corrupt, inconsistent, or not covering
  every id exactly once (the message names the shard files)."""


def pair_digest(ids, scores, per_run=None) -> str:
  """sha256 over the (id, score) pairs (and per-run columns) in id order: independent of
  the order pairs are stored in, changed by any re-pairing of ids and scores."""
  ids = np.asarray(ids, dtype="<i8").ravel()
  order = np.argsort(ids, kind="stable")
  h = hashlib.sha256(b"score_io.pairs.v1")
  h.update(np.ascontiguousarray(ids[order]).tobytes())
  h.update(np.ascontiguousarray(np.asarray(scores, dtype="<f8").ravel()[order]).tobytes())
  if per_run is not None:
    h.update(np.ascontiguousarray(np.asarray(per_run, dtype="<f8")[:, order]).tobytes())
  return h.hexdigest()


def _redo(path: str) -> str:
  return f"delete {path} and rerun (the scores are recomputed)"


@dataclasses.dataclass
class ScoreResult:
  """Scores of a training split: ids (n,), scores (n,), metadata, optional per-run scores."""
  ids: np.ndarray
  scores: np.ndarray
  meta: dict
  per_run: Optional[np.ndarray] = None

  def __post_init__(self):
    self.ids = np.asarray(self.ids, dtype=np.int64).ravel()
    self.scores = np.asarray(self.scores, dtype=np.float64).ravel()
    if self.ids.shape != self.scores.shape:
      raise ScoreFileError(f"ids and scores differ in length: {len(self.ids)} vs "
                           f"{len(self.scores)}")
    if self.per_run is not None:
      self.per_run = np.asarray(self.per_run, dtype=np.float64)
      if self.per_run.ndim != 2 or self.per_run.shape[1] != len(self.ids):
        raise ScoreFileError(f"per_run must be (K, {len(self.ids)}), got {self.per_run.shape}")

  @property
  def method(self) -> str:
    return str(self.meta.get("method", ""))

  def subset(self, ids) -> "ScoreResult":
    """The scores (and per-run columns) of `ids`, in that order (every id must be scored)."""
    ids = np.asarray(ids, dtype=np.int64).ravel()
    pos = self._positions(ids)
    return ScoreResult(ids, self.scores[pos], dict(self.meta),
                       None if self.per_run is None else self.per_run[:, pos])

  def _positions(self, ids: np.ndarray) -> np.ndarray:
    order = np.argsort(self.ids, kind="stable")
    pos = np.clip(np.searchsorted(self.ids[order], ids), 0, len(order) - 1)
    bad = self.ids[order][pos] != ids
    if bad.any():
      raise ScoreFileError(f"{bad.sum()} ids have no score, e.g. {ids[bad][:5].tolist()}")
    return order[pos]

  def aligned_to(self, ids) -> np.ndarray:
    """Scores in the order of `ids` (every id must be scored)."""
    return self.scores[self._positions(np.asarray(ids, dtype=np.int64))]


def config_key(method: str, config: Any, fingerprint: str) -> str:
  """Short hash identifying (method, scoring config, dataset)."""
  return files.fingerprint({"method": method, "config": to_jsonable(config),
                            "fingerprint": fingerprint, "v": FORMAT_VERSION})


def save(path: str, result: ScoreResult, *, any_process: bool = False) -> str:
  """Writes `result` atomically. Only process 0 writes unless `any_process` (a shard)."""
  meta = dict(to_jsonable(result.meta))
  meta.setdefault("format_version", FORMAT_VERSION)
  meta["pair_digest"] = pair_digest(result.ids, result.scores, result.per_run)
  arrays = dict(ids=result.ids, scores=result.scores,
                meta_json=np.asarray(json.dumps(meta, sort_keys=True)))
  if result.per_run is not None:
    arrays["per_run"] = result.per_run
  files.atomic_save_npz(path, any_process=any_process, **arrays)
  return path


def load(path: str, dataset: Optional[data_lib.ArrayDataset] = None,
         expect: Optional[dict] = None) -> ScoreResult:
  """Reads a score file; with `dataset`, checks ids and fingerprint.

  The returned scores are reordered to `dataset.ids` when a dataset is given.
  `expect` maps metadata keys to required values (e.g. {'method': 'el2n'}).
  """
  if not os.path.exists(path):
    raise ScoreFileError(f"no score file at {path}")
  try:
    f = files.load_npz(path, ("ids", "scores", "meta_json"), what="score file")
    ids, scores = f["ids"], f["scores"]
    meta = json.loads(str(f["meta_json"]))
    per_run = f.get("per_run")
  except (files.CorruptFileError, ValueError) as e:
    raise ScoreFileError(f"score file {path} is not valid ({e}); {_redo(path)}") from None
  try:
    res = ScoreResult(ids, scores, meta, per_run)
  except ScoreFileError as e:
    raise ScoreFileError(f"score file {path}: {e}; {_redo(path)}") from None
  stored = meta.get("pair_digest")
  if stored is None:
    raise ScoreFileError(f"score file {path} has no id-score digest (written by an older "
                         f"version), so its ids cannot be checked against its scores; "
                         f"{_redo(path)}")
  if stored != pair_digest(res.ids, res.scores, res.per_run):
    raise ScoreFileError(f"score file {path}: the (id, score) pairs do not match the digest "
                         f"stored when it was written (ids or scores were reordered or "
                         f"edited); {_redo(path)}")
  for k, v in (expect or {}).items():
    if to_jsonable(meta.get(k)) != to_jsonable(v):
      raise ScoreFileError(f"{path}: metadata {k}={meta.get(k)!r}, expected {v!r}")
  if dataset is not None:
    if len(ids) != len(dataset) or not np.array_equal(np.sort(ids), np.sort(dataset.ids)):
      missing = np.setdiff1d(dataset.ids, ids)[:5].tolist()
      extra = np.setdiff1d(ids, dataset.ids)[:5].tolist()
      raise ScoreFileError(f"{path}: ids do not match {dataset.name!r} ({len(ids)} scored, "
                           f"{len(dataset)} in dataset; missing {missing}, extra {extra})")
    fp = dataset.fingerprint()
    if meta.get("fingerprint") != fp:
      raise ScoreFileError(
          f"{path}: scores were computed on dataset {meta.get('dataset')!r} with fingerprint "
          f"{meta.get('fingerprint')!r}, but {dataset.name!r} has fingerprint {fp!r}")
    pos = dataset.positions(ids)  # row of each scored id
    inv = np.empty_like(pos)
    inv[pos] = np.arange(len(pos))
    res = ScoreResult(ids[inv], scores[inv], meta,
                      None if per_run is None else per_run[:, inv])
  return res


def _legacy(path: str) -> bool:
  """Whether `path` is a readable score file written before pair digests existed."""
  try:
    f = files.load_npz(path, ("meta_json",), what="score file")
    return "pair_digest" not in json.loads(str(f["meta_json"]))
  except (files.CorruptFileError, ValueError):
    return False  # corrupt: `load` says so, naming the file


def path_for(cache_dir: str, method: str, config: Any, dataset: data_lib.ArrayDataset) -> str:
  key = config_key(method, config, dataset.fingerprint())
  return os.path.join(cache_dir, f"{method}-{key}.npz")


# ----------------------------------------------------------------------------
# One shard per process, merged into one verified score file.

SHARD_KEYS = ("shard_index", "shard_count")
# Metadata each process measures for itself: shards may differ; the merged file keeps the max
# (the slowest host's wall clock is what the scoring cost).
PER_PROCESS_KEYS = ("compute_seconds",)


def shard_path(path: str, index: int, count: int) -> str:
  """The shard of process `index` of `count` for score file `path`."""
  return f"{path}.shard-{int(index):05d}-of-{int(count):05d}.npz"


def process_ids(ids, index: int, count: int) -> np.ndarray:
  """Process `index`'s contiguous slice of `ids` (`core.data.shard_range`): disjoint,
  covering, sizes differing by at most one."""
  ids = np.asarray(ids, dtype=np.int64)
  start, end = data_lib.shard_range(len(ids), int(index), int(count))
  return ids[start:end]


def write_shard(path: str, index: int, count: int, result: ScoreResult) -> str:
  """Writes `result` (the ids this process scored) as shard `index` of `count` of score file
  `path`, atomically, with its own id-score digest. Returns the shard's path."""
  meta = dict(result.meta, shard_index=int(index), shard_count=int(count))
  return save(shard_path(path, index, count),
              ScoreResult(result.ids, result.scores, meta, result.per_run), any_process=True)


def _ids_list(a: np.ndarray, limit: int = 10) -> str:
  a = np.asarray(a)
  more = f" (and {len(a) - limit} more)" if len(a) > limit else ""
  return f"{a[:limit].tolist()}{more}"


def merge_shards(path: str, count: int, dataset, *, remove: bool = True) -> ScoreResult:
  """Merges the `count` shards of score file `path` into that file and returns it.

  Checks: every shard file exists and loads with an intact digest (`load`), all carry the
  same method, dataset and fingerprint as the dataset, shard i says it is i of `count`, and
  every id of `dataset` appears exactly once across the shards; else `ScoreShardError` names
  the shard files and the bad ids. The merged file holds the ids in dataset order and the
  shards' metadata without the shard keys; it is what one process would have written.
  With `remove`, the shards are deleted once the file is written.
  """
  count = int(count)
  paths = [shard_path(path, i, count) for i in range(count)]
  missing = [p for p in paths if not os.path.exists(p)]
  if missing:
    raise ScoreShardError(
        f"score shards missing: {missing} (of {count} for {path}). Each of the {count} "
        f"processes writes its own shard before the merge; the score folder must be one every "
        f"host sees (a shared filesystem), and every process must run the scoring. Rerun "
        f"the scoring (stale shards are overwritten)")
  shards = []
  for i, p in enumerate(paths):
    try:
      r = load(p)
    except ScoreFileError as e:
      raise ScoreShardError(f"score shard {p} is not valid: {e}") from None
    if (r.meta.get("shard_index"), r.meta.get("shard_count")) != (i, count):
      raise ScoreShardError(f"score shard {p} says it is shard {r.meta.get('shard_index')} of "
                            f"{r.meta.get('shard_count')}, expected {i} of {count}; delete "
                            f"{paths} and rerun the scoring")
    shards.append(r)
  skip = SHARD_KEYS + PER_PROCESS_KEYS + ("pair_digest",)
  first = {k: v for k, v in shards[0].meta.items() if k not in skip}
  for p, r in zip(paths[1:], shards[1:]):
    other = {k: v for k, v in r.meta.items() if k not in skip}
    if other != first:
      diff = sorted(k for k in set(first) | set(other) if first.get(k) != other.get(k))
      raise ScoreShardError(f"score shards {paths[0]} and {p} disagree on metadata {diff}: "
                            f"they come from different scoring runs; delete {paths} and rerun")
    if (r.per_run is None) != (shards[0].per_run is None) or (
        r.per_run is not None and r.per_run.shape[0] != shards[0].per_run.shape[0]):
      raise ScoreShardError(f"score shards {paths[0]} and {p} hold different numbers of "
                            f"per-run scores; delete {paths} and rerun")
  fp = dataset.fingerprint()
  if first.get("fingerprint") not in (None, fp):
    raise ScoreShardError(f"score shards {paths} were computed on a dataset with fingerprint "
                          f"{first.get('fingerprint')!r}, but {dataset.name!r} has {fp!r}; "
                          f"delete them and rerun")
  all_ids = np.concatenate([r.ids for r in shards])
  owner = np.concatenate([np.full(len(r.ids), i) for i, r in enumerate(shards)])
  uniq, counts = np.unique(all_ids, return_counts=True)
  dup = uniq[counts > 1]
  if len(dup):
    files_with = sorted({paths[k] for k in owner[np.isin(all_ids, dup)]})
    raise ScoreShardError(f"score shards {files_with} score {len(dup)} ids more than once: "
                          f"{_ids_list(dup)}; each id must be in exactly one shard (were the "
                          f"processes launched with distinct process ids?); delete {paths} and "
                          f"rerun the scoring")
  want = np.asarray(dataset.ids, dtype=np.int64)
  lost = np.setdiff1d(want, all_ids)
  extra = np.setdiff1d(all_ids, want)
  if len(lost) or len(extra):
    raise ScoreShardError(f"score shards {paths} do not cover {dataset.name!r} exactly: "
                          f"{len(lost)} ids missing {_ids_list(lost)}, {len(extra)} ids not in "
                          f"the dataset {_ids_list(extra)}; delete them and rerun the scoring")
  scores = np.concatenate([r.scores for r in shards])
  per_run = (None if shards[0].per_run is None
             else np.concatenate([r.per_run for r in shards], axis=1))
  for k in PER_PROCESS_KEYS:
    vals = [r.meta[k] for r in shards if k in r.meta]
    if vals:
      first[k] = max(vals)
  merged = ScoreResult(all_ids, scores, first, per_run).subset(want)
  save(path, merged)
  if remove:
    for p in paths:
      os.remove(p)
  return merged


def cached(cache_dir: Optional[str], method: str, config: Any,
           dataset: data_lib.ArrayDataset, compute: Callable[[], ScoreResult],
           log: Callable[[str], None] = lambda s: None) -> ScoreResult:
  """Loads the score file for (method, config, dataset) or computes and writes it.

  A computed result's metadata records ``compute_seconds`` (wall clock of `compute`; with
  several processes the slowest one's), so a reused file still says what it cost.

  Every process calls this and all compute (the computation may contain collectives).
  One process: it writes the file. Several: each writes its shard (its `process_ids` slice),
  then, after a barrier, process 0 merges them into the one verified file (`merge_shards`);
  every process then returns that file's scores. A failed merge raises on every process.
  """
  if not cache_dir:
    return compute()
  path = path_for(cache_dir, method, config, dataset)
  if os.path.exists(path) and not _legacy(path):
    log(f"reusing scores {path}")
    return load(path, dataset, expect={"method": method})
  if os.path.exists(path):
    log(f"recomputing scores {path}: written without an id-score digest")
  t0 = time.time()
  res = compute()
  # what the score cost to compute (the controls' cost column; a reused file keeps it)
  res.meta.setdefault("compute_seconds", round(time.time() - t0, 2))
  from core import parallel
  count, index = parallel.process_count(), parallel.process_index()
  name = os.path.basename(path)
  if count == 1:
    save(path, res)
    log(f"wrote scores {path}")
    return res
  mine = res.subset(process_ids(dataset.ids, index, count))
  write_shard(path, index, count, mine)
  parallel.sync_processes(f"score_io.shards:{name}")
  error = None
  if index == 0:
    try:
      merge_shards(path, count, dataset)
      log(f"merged {count} score shards into {path}")
    except ScoreFileError as e:
      error = e
  merged_ok = parallel.broadcast_from_process0(int(error is None))
  if error is not None:
    raise error
  if not merged_ok:
    raise ScoreShardError(f"process 0 could not merge the {count} score shards of {path} "
                          f"(its error names the files); rerun the scoring")
  return load(path, dataset, expect={"method": method})
