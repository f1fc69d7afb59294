"""What a training workdir holds besides checkpoints: a run manifest and a lock.

Run manifest (``<workdir>/manifest.json``): the resolved config of the run (every field that
changes the result: all of `core.config.base_config` and the model's, minus `COSMETIC` fields
such as logging, checkpoint cadence, device count or ``stop_after_steps``) and the fingerprints
of the training and test data. A run that finds checkpoints in its workdir compares its own
config with the manifest and refuses to resume under a different one, naming each field that
differs (saved -> now): silently continuing a run at another learning rate or seed and then
claiming the new values for the whole run is the defect this prevents. ``config.resume``:

  ``"auto"``  (default) resume when the configs agree, refuse otherwise;
  ``"force"`` resume anyway; the manifest records the changed fields under ``"overrides"``.

Workdir lock (``<workdir>/.lock``, `fcntl.flock`, held for the whole run by process 0): a second
run on the same workdir stops at once with a message naming the first run's pid and host,
instead of colliding in its checkpoint saves. The lock goes with the process (a killed run
leaves no stale lock: the kernel drops it), and one process may re-enter its own lock.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
from typing import Optional

from core.io import atomic_write_text, load_json, to_jsonable

MANIFEST = "manifest.json"
LOCK = ".lock"
RESUME_MODES = ("auto", "force")
# Fields that do not change what is computed (or only how fast / how often it is recorded).
COSMETIC = ("progress_bar", "log_every_steps", "stop_after_steps", "resume", "eval_batch_size",
            "checkpoint_every_steps", "max_checkpoints", "num_devices", "checkpoint")


class ResumeConfigError(ValueError):
  """A workdir with checkpoints of a run under another config."""


class WorkdirLockedError(RuntimeError):
  """Another live run holds the workdir."""


def resolved_config(config) -> dict:
  """The config as plain JSON, without the `COSMETIC` fields."""
  d = to_jsonable(config)
  return {k: v for k, v in d.items() if k not in COSMETIC}


def _flatten(d, prefix=""):
  out = {}
  for k, v in d.items():
    if isinstance(v, dict) and v:
      out.update(_flatten(v, f"{prefix}{k}."))
    else:
      out[f"{prefix}{k}"] = v
  return out


def config_diff(saved: dict, now: dict) -> dict:
  """{dotted field: (saved value, current value)} for every field that differs."""
  a, b = _flatten(saved), _flatten(now)
  missing = object()
  return {k: (a.get(k), b.get(k)) for k in sorted(set(a) | set(b))
          if a.get(k, missing) != b.get(k, missing)}


def has_checkpoints(workdir: str) -> bool:
  d = os.path.join(workdir, "checkpoints")
  return os.path.isdir(d) and any(n.isdigit() for n in os.listdir(d))


def check_resume(workdir: str, config, data_fingerprints: Optional[dict] = None,
                 write: bool = True) -> dict:
  """Compares `config` with the workdir's manifest before a run resumes; writes the manifest.

  Raises ResumeConfigError naming the differing fields when the workdir has checkpoints of a
  run under another config (or data) and ``config.resume`` is not "force". Returns the
  manifest now in force.
  """
  mode = config.get("resume", "auto") if hasattr(config, "get") else "auto"
  mode = "auto" if mode is None else mode
  if mode not in RESUME_MODES:
    raise ValueError(f"config.resume={mode!r}; choose from {RESUME_MODES}")
  now = {"config": resolved_config(config), "data": dict(data_fingerprints or {})}
  path = os.path.join(workdir, MANIFEST)
  saved = load_json(path, what="run manifest") if os.path.exists(path) else None
  overrides = list(saved.get("overrides", [])) if saved else []
  if saved is not None and has_checkpoints(workdir):
    diff = config_diff({"config": saved.get("config", {}), "data": saved.get("data", {})}, now)
    if diff and mode != "force":
      lines = "; ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in diff.items())
      raise ResumeConfigError(
          f"{workdir} has checkpoints of a run with another config ({len(diff)} fields differ, "
          f"saved -> now: {lines}). Use a new workdir, restore the saved values, or resume "
          f"anyway with --config.resume=force (recorded in {path})")
    if diff:
      overrides.append({k: [a, b] for k, (a, b) in diff.items()})
  manifest = {**now, "overrides": overrides}
  if write:
    atomic_write_text(path, json.dumps(manifest, indent=1, sort_keys=True) + "\n")
  return manifest


_HELD: dict = {}  # realpath of a workdir -> [open lock file, depth]


@contextlib.contextmanager
def workdir_lock(workdir: Optional[str]):
  """Holds ``<workdir>/.lock`` (flock) for the block; WorkdirLockedError if another process
  holds it. None: no lock. Re-entrant within one process."""
  if not workdir:
    yield
    return
  os.makedirs(workdir, exist_ok=True)
  key = os.path.realpath(workdir)
  if key in _HELD:
    _HELD[key][1] += 1
    try:
      yield
    finally:
      _HELD[key][1] -= 1
    return
  path = os.path.join(workdir, LOCK)
  fh = open(path, "a+")
  try:
    fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
  except BlockingIOError:
    fh.seek(0)
    owner = fh.read().strip() or "unknown"
    fh.close()
    raise WorkdirLockedError(
        f"workdir {workdir} is in use by another run ({owner}); wait for it to finish, stop "
        f"it, or use another --workdir") from None
  fh.seek(0)
  fh.truncate()
  fh.write(f"pid {os.getpid()} on {socket.gethostname()}\n")
  fh.flush()
  _HELD[key] = [fh, 1]
  try:
    yield
  finally:
    _HELD[key][1] -= 1
    if _HELD[key][1] == 0:
      del _HELD[key]
      fh.close()  # releases the flock
