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

Files are written atomically (temporary file + ``os.replace``) and, under
several processes, only by process 0 after the scores were gathered, so a file
on disk is always complete. Loading checks the ids and the dataset fingerprint
against the dataset the scores are meant for and raises `ScoreFileError` (a
`ValueError`) naming both on mismatch.

`cached(...)` computes scores once per (method, config, dataset) and reuses the
file afterwards; the file name carries a hash of the canonical JSON of those.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from typing import Any, Callable, Optional

import numpy as np

from core import data as data_lib
from core import io as files
from core.io import to_jsonable  # noqa: F401  (re-exported for score metadata)

FORMAT_VERSION = 1


class ScoreFileError(ValueError):
  """A score file that is missing, malformed or for another dataset."""


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

  def aligned_to(self, ids) -> np.ndarray:
    """Scores in the order of `ids` (every id must be scored)."""
    ids = np.asarray(ids, dtype=np.int64)
    order = np.argsort(self.ids, kind="stable")
    pos = np.clip(np.searchsorted(self.ids[order], ids), 0, len(order) - 1)
    bad = self.ids[order][pos] != ids
    if bad.any():
      raise ScoreFileError(f"{bad.sum()} ids have no score, e.g. {ids[bad][:5].tolist()}")
    return self.scores[order[pos]]


def config_key(method: str, config: Any, fingerprint: str) -> str:
  """Short hash identifying (method, scoring config, dataset)."""
  return files.fingerprint({"method": method, "config": to_jsonable(config),
                            "fingerprint": fingerprint, "v": FORMAT_VERSION})


def save(path: str, result: ScoreResult) -> str:
  """Writes `result` atomically (call from one process only)."""
  meta = dict(to_jsonable(result.meta))
  meta.setdefault("format_version", FORMAT_VERSION)
  meta["pair_digest"] = pair_digest(result.ids, result.scores, result.per_run)
  arrays = dict(ids=result.ids, scores=result.scores,
                meta_json=np.asarray(json.dumps(meta, sort_keys=True)))
  if result.per_run is not None:
    arrays["per_run"] = result.per_run
  files.atomic_save_npz(path, **arrays)
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


def cached(cache_dir: Optional[str], method: str, config: Any,
           dataset: data_lib.ArrayDataset, compute: Callable[[], ScoreResult],
           log: Callable[[str], None] = lambda s: None) -> ScoreResult:
  """Loads the score file for (method, config, dataset) or computes and writes it.

  Every process calls this; all compute (the computation may contain
  collectives), process 0 writes, the others wait for the file.
  """
  if not cache_dir:
    return compute()
  path = path_for(cache_dir, method, config, dataset)
  if os.path.exists(path) and not _legacy(path):
    log(f"reusing scores {path}")
    return load(path, dataset, expect={"method": method})
  if os.path.exists(path):
    log(f"recomputing scores {path}: written without an id-score digest")
  res = compute()
  from core import parallel
  if parallel.process_index() == 0:
    save(path, res)
    log(f"wrote scores {path}")
  parallel.sync_processes(f"score_io.cached:{os.path.basename(path)}")
  return res
