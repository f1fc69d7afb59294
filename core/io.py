"""Atomic result files: write a temporary file in the target folder, then os.replace.

A crashed or killed run never leaves a half-written result behind, and a reader
never sees one. Every module that writes results, checkpoints of its own or
plots goes through these functions.  In a multi-process run (`jax.distributed`)
only process 0 writes: every process computes the same results (shared work
folder), and the others' writes return without touching the disk.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile

import numpy as np


@contextlib.contextmanager
def _replace_when_done(path: str, suffix: str):
  """Yields a temporary path beside `path`; moves it onto `path` on success."""
  folder = os.path.dirname(os.path.abspath(path))
  os.makedirs(folder, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=folder, suffix=suffix)
  os.close(fd)
  try:
    yield tmp
    os.chmod(tmp, 0o644)  # mkstemp makes 0600 files
    os.replace(tmp, path)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)


def is_writer() -> bool:
  """Whether this process writes result files: process 0, or the only process."""
  import sys
  if "jax" not in sys.modules:  # no JAX in this program: one process
    return True
  import jax
  return jax.process_index() == 0


def atomic_write_text(path: str, text: str) -> None:
  if not is_writer():
    return
  with _replace_when_done(path, ".tmp") as tmp, open(tmp, "w") as fh:
    fh.write(text)


def atomic_save_npz(path: str, *, any_process: bool = False, **arrays) -> None:
  """np.savez of `arrays` (no pickled objects: load with allow_pickle=False).
  `any_process`: this process writes even if it is not process 0 (a per-process file, such
  as a score shard)."""
  if not (any_process or is_writer()):
    return
  with _replace_when_done(path, ".npz.tmp") as tmp, open(tmp, "wb") as fh:
    np.savez(fh, **arrays)


def atomic_savefig(fig, path: str, **savefig_kwargs) -> str:
  """Saves a matplotlib figure as PNG and closes it; returns `path`."""
  import matplotlib.pyplot as plt
  if is_writer():
    with _replace_when_done(path, ".png") as tmp:
      fig.savefig(tmp, format="png", **savefig_kwargs)
  plt.close(fig)
  return path


def fingerprint(obj, *arrays, length: int = 16) -> str:
  """Short sha256 of a result's inputs, for cache keys: ``obj`` as sorted-key JSON (a str
  is hashed as is; other values with ``default=str``), then the bytes of ``arrays``."""
  text = obj if isinstance(obj, str) else json.dumps(obj, sort_keys=True, default=str)
  h = hashlib.sha256(text.encode())
  for a in arrays:
    h.update(np.ascontiguousarray(a).tobytes())
  return h.hexdigest()[:length]


# ----------------------------------------------------------------------------
# Reading our own files back: one place that names the file and says how to recover.


class CorruptFileError(ValueError):
  """A result, cache or checkpoint file that cannot be read (truncated, corrupt, wrong keys)."""


def _recover_hint(path: str) -> str:
  return (f"delete {path} and rerun: it is recomputed (caches and results are rebuilt from "
          f"their inputs)")


def load_npz(path: str, keys=(), what: str = "file") -> dict:
  """The arrays of an npz written by `atomic_save_npz` (never pickle), checked for `keys`."""
  import zipfile
  try:
    with np.load(path, allow_pickle=False) as f:
      out = {k: f[k] for k in f.files}
  except FileNotFoundError:
    raise
  except (zipfile.BadZipFile, OSError, ValueError, EOFError, KeyError) as e:
    raise CorruptFileError(f"{what} {path} is unreadable ({type(e).__name__}: {e}); "
                           f"{_recover_hint(path)}") from e
  missing = [k for k in keys if k not in out]
  if missing:
    raise CorruptFileError(f"{what} {path} lacks arrays {missing}; {_recover_hint(path)}")
  return out


def load_json(path: str, what: str = "file"):
  """A JSON file written by `atomic_write_text`, with a clear error when it is corrupt."""
  try:
    with open(path) as fh:
      return json.load(fh)
  except FileNotFoundError:
    raise
  except (json.JSONDecodeError, UnicodeDecodeError) as e:
    raise CorruptFileError(f"{what} {path} is not valid JSON ({e}); "
                           f"{_recover_hint(path)}") from e


def to_jsonable(x):
  """ConfigDicts, numpy scalars/arrays, tuples -> plain JSON types (dict keys sorted), for
  metadata and cache keys."""
  if hasattr(x, "to_dict"):
    x = x.to_dict()
  if isinstance(x, dict):
    return {str(k): to_jsonable(v) for k, v in sorted(x.items(), key=lambda kv: str(kv[0]))}
  if isinstance(x, (list, tuple)):
    return [to_jsonable(v) for v in x]
  if isinstance(x, np.ndarray):
    return x.tolist()
  if isinstance(x, np.generic):
    return x.item()
  if x is None or isinstance(x, (bool, int, float, str)):
    return x
  return str(x)


def write_rows(workdir: str, rows: list, name: str = "results") -> None:
  """The one results writer: `rows` (dicts) as <name>.json and <name>.csv (columns in order of
  first appearance), both atomic, process 0 only."""
  import csv
  import io as _io
  atomic_write_text(os.path.join(workdir, f"{name}.json"), json.dumps(rows, indent=1) + "\n")
  keys: list = []
  for r in rows:
    keys += [k for k in r if k not in keys]
  buf = _io.StringIO()
  w = csv.DictWriter(buf, fieldnames=keys)
  w.writeheader()
  w.writerows(rows)
  atomic_write_text(os.path.join(workdir, f"{name}.csv"), buf.getvalue())
