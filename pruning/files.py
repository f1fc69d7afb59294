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


def atomic_save_npz(path: str, **arrays) -> None:
  """np.savez of `arrays` (no pickled objects: load with allow_pickle=False)."""
  if not is_writer():
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
