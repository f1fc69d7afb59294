"""Orbax checkpoints of the trainer state (host numpy arrays, never pickle).

The state pytree is flattened to ``{"leaf_00000": array, ...}`` and saved with
`orbax.checkpoint.CheckpointManager` + StandardSave; restoring unflattens into
the structure of a template state built the same way (same config), so optax
states of any shape round-trip without custom handlers. Under several
processes every process calls save/restore (orbax writes from process 0 and
synchronises); the directory must be shared.

Integrity: in each step folder ``<directory>/<step>/sha256.json`` holds a sha256 over the saved
leaves (dtype, shape and bytes, in tree order). `restore()` without a step tries the newest
step first and verifies it; a step that fails to load or whose leaves do not match their
digest (truncated or flipped bytes) is skipped with a warning naming it, and the newest intact
step is restored instead. Steps saved before digests existed load unverified.
"""
from __future__ import annotations

import hashlib
import json
import os
import warnings
from typing import Any, Optional

import jax
import numpy as np
import orbax.checkpoint as ocp

from core.io import CorruptFileError, atomic_write_text, load_json


def _flat(tree: Any) -> dict:
  leaves = jax.tree.leaves(tree)
  return {f"leaf_{i:05d}": np.asarray(x) for i, x in enumerate(leaves)}


def _digest(arrays) -> str:
  h = hashlib.sha256()
  for a in arrays:
    a = np.ascontiguousarray(a)
    h.update(f"{a.dtype.str}{a.shape}".encode())
    h.update(a.tobytes())
  return h.hexdigest()


class Checkpointer:
  """Thin wrapper over an orbax CheckpointManager in ``<workdir>/checkpoints``."""

  def __init__(self, directory: str, max_to_keep: int = 2):
    self.directory = os.path.abspath(directory)
    self.manager = ocp.CheckpointManager(
        self.directory,
        options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True))

  def latest_step(self) -> Optional[int]:
    return self.manager.latest_step()

  def _digest_path(self, step: int) -> str:
    return os.path.join(self.directory, str(int(step)), "sha256.json")

  def save(self, step: int, state: Any) -> None:
    if self.manager.latest_step() == step:
      return
    flat = _flat(state)
    self.manager.save(int(step), args=ocp.args.StandardSave(flat))
    self.manager.wait_until_finished()
    atomic_write_text(self._digest_path(step), json.dumps(
        {"step": int(step), "leaves": len(flat), "sha256": _digest(flat.values())}) + "\n")

  def _restore_step(self, template: Any, step: int) -> Any:
    leaves, treedef = jax.tree.flatten(template)
    target = _flat(template)
    try:
      restored = self.manager.restore(int(step), args=ocp.args.StandardRestore(target))
    except Exception as e:  # orbax / tensorstore errors on truncated or missing files
      raise CorruptFileError(f"checkpoint {self.directory} step {step} cannot be read "
                             f"({type(e).__name__}: {str(e)[:300]})") from e
    new = [np.asarray(restored[f"leaf_{i:05d}"]).astype(np.asarray(l).dtype)
           for i, l in enumerate(leaves)]
    for i, (a, b) in enumerate(zip(new, leaves)):
      if a.shape != np.shape(b):
        raise ValueError(f"checkpoint {self.directory} step {step}: leaf {i} has shape "
                         f"{a.shape}, expected {np.shape(b)} (different config?)")
    dpath = self._digest_path(step)
    if os.path.exists(dpath):
      want = load_json(dpath, what="checkpoint digest").get("sha256")
      if want != _digest(new):
        raise CorruptFileError(f"checkpoint {self.directory} step {step} does not match its "
                               f"sha256 in {dpath} (corrupt bytes)")
    return jax.tree.unflatten(treedef, new)

  def restore(self, template: Any, step: Optional[int] = None) -> Any:
    """The state at `step`, or at the newest intact step (verified against its digest)."""
    if step is not None:
      return self._restore_step(template, step)
    steps = sorted((int(s) for s in self.manager.all_steps()), reverse=True)
    if not steps:
      raise FileNotFoundError(f"no checkpoint in {self.directory}")
    errors = []
    for s in steps:
      try:
        state = self._restore_step(template, s)
      except CorruptFileError as e:
        errors.append(str(e))
        warnings.warn(f"{e}; trying an older checkpoint", RuntimeWarning, stacklevel=2)
        continue
      if errors:
        bad = sorted(t for t in steps if t > s)
        for t in bad:  # so that training from step s can save those steps again
          self.manager.delete(t)
        warnings.warn(f"resuming from step {s}, the newest intact checkpoint in "
                      f"{self.directory}; deleted the corrupt newer steps {bad}",
                      RuntimeWarning, stacklevel=2)
      self.restored_step = s
      return state
    raise CorruptFileError(f"no intact checkpoint in {self.directory} ({'; '.join(errors)}); "
                           f"delete {self.directory} to restart the run from step 0")

  def close(self) -> None:
    self.manager.close()
