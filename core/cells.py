"""The one per-cell result cache of the experiment drivers: one JSON file per finished cell.

A driver's grid (budgets x methods x seeds, pools x fractions, ...) is a list of cells; each
finished cell is a small dict written to ``<folder>/<key>[-<suffix>].json``, so a rerun with
the same work folder reads it back instead of training again:

    cache = CellCache(os.path.join(workdir, "cells"), suffix=config_fingerprint)
    row = cache.get(key)
    if row is None:
      row = train_the_cell(...)
      cache.put(key, row)

Keys are names the driver chooses (what identifies the cell: method, fraction, seed, a hash of
the kept ids). What makes a finished cell stale (another training config, another data set)
goes either into the file name (``suffix``, usually a `core.io.fingerprint`: a changed config
reads other files and keeps the old ones) or into the row itself (``get(key,
require={"config_hash": h})``: a row that disagrees is recomputed and overwritten).

Writes are atomic and process 0's only (`core.io.atomic_write_text`); a file that cannot be
read raises `core.io.CorruptFileError` naming it. The JSON layout (``indent``, ``sort_keys``,
``default``) is the caller's, so that folders written before this class existed stay cached
byte for byte.
"""
from __future__ import annotations

import json
import os
from typing import Callable, Optional

from core import io as core_io


class CellCache:
  """``<folder>/<key>[-<suffix>].json`` files, one finished cell (a JSON dict) each.

  Args:
    folder: where the files live (created on the first write).
    suffix: appended to every key as ``-<suffix>`` (e.g. a fingerprint of the config every
      cell shares); None for none.
    what: how errors name a file ("sweep cell").
    indent, sort_keys, default: `json.dumps` options of the written files.
    log: called with one line when ``get`` finds a stale row (see ``require``).
  """

  def __init__(self, folder: str, *, suffix: Optional[str] = None, what: str = "cell",
               indent: Optional[int] = 1, sort_keys: bool = False,
               default: Optional[Callable] = None, log: Callable[[str], None] = lambda s: None):
    self.folder = folder
    self.suffix = suffix
    self.what = what
    self._dump = dict(indent=indent, sort_keys=sort_keys, default=default)
    self.log = log

  def path(self, key: str) -> str:
    key = str(key)
    if not key or os.sep in key or key in (".", ".."):
      raise ValueError(f"cell key {key!r} is not a file name: give a non-empty name without "
                       f"{os.sep!r}")
    name = key if self.suffix is None else f"{key}-{self.suffix}"
    return os.path.join(self.folder, name + ".json")

  def get(self, key: str, require: Optional[dict] = None) -> Optional[dict]:
    """The cached cell of `key`, or None when there is none or (with `require`) when one of
    its fields differs from `require` (a stale cell: the caller recomputes and overwrites it).
    Raises core.io.CorruptFileError naming a file that is not valid JSON or not a dict."""
    p = self.path(key)
    if not os.path.exists(p):
      return None
    row = core_io.load_json(p, what=self.what)
    if not isinstance(row, dict):
      raise core_io.CorruptFileError(
          f"{self.what} {p} holds a {type(row).__name__}, not a JSON object; delete {p} and "
          f"rerun: it is recomputed")
    if require and any(row.get(k) != v for k, v in require.items()):
      self.log(f"{os.path.basename(p)} was made with another config: recomputing")
      return None
    return row

  def put(self, key: str, row: dict) -> str:
    """Writes `row` for `key` (atomic; only process 0 writes); returns the file's path."""
    p = self.path(key)
    core_io.atomic_write_text(p, json.dumps(row, **self._dump))
    return p
