"""Orbax checkpoints of the trainer state (host numpy arrays, never pickle).

The state pytree is flattened to ``{"leaf_00000": array, ...}`` and saved with
`orbax.checkpoint.CheckpointManager` + StandardSave; restoring unflattens into
the structure of a template state built the same way (same config), so optax
states of any shape round-trip without custom handlers. Under several
processes every process calls save/restore (orbax writes from process 0 and
synchronises); the directory must be shared.
"""
from __future__ import annotations

import os
from typing import Any, Optional

import jax
import numpy as np
import orbax.checkpoint as ocp


def _flat(tree: Any) -> dict:
  leaves = jax.tree.leaves(tree)
  return {f"leaf_{i:05d}": np.asarray(x) for i, x in enumerate(leaves)}


class Checkpointer:
  """Thin wrapper over an orbax CheckpointManager in ``<workdir>/checkpoints``."""

  def __init__(self, directory: str, max_to_keep: int = 2):
    self.directory = os.path.abspath(directory)
    self.manager = ocp.CheckpointManager(
        self.directory,
        options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True))

  def latest_step(self) -> Optional[int]:
    return self.manager.latest_step()

  def save(self, step: int, state: Any) -> None:
    if self.manager.latest_step() == step:
      return
    self.manager.save(int(step), args=ocp.args.StandardSave(_flat(state)))
    self.manager.wait_until_finished()

  def restore(self, template: Any, step: Optional[int] = None) -> Any:
    step = self.manager.latest_step() if step is None else step
    if step is None:
      raise FileNotFoundError(f"no checkpoint in {self.directory}")
    leaves, treedef = jax.tree.flatten(template)
    target = _flat(template)
    restored = self.manager.restore(int(step), args=ocp.args.StandardRestore(target))
    new = [np.asarray(restored[f"leaf_{i:05d}"]).astype(np.asarray(l).dtype)
           for i, l in enumerate(leaves)]
    for i, (a, b) in enumerate(zip(new, leaves)):
      if a.shape != np.shape(b):
        raise ValueError(f"checkpoint {self.directory} step {step}: leaf {i} has shape "
                         f"{a.shape}, expected {np.shape(b)} (different config?)")
    return jax.tree.unflatten(treedef, new)

  def close(self) -> None:
    self.manager.close()
