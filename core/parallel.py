"""Every device and pmap line of the codebase lives here.

The trainer is data-parallel with `jax.pmap` over a device axis named
``AXIS``; a later move to `jax.jit` + `NamedSharding` should only touch this
file. Conventions:

  * a *replicated* pytree has a leading axis of size ``len(devices)`` (one copy
    per local device), placed with `jax.device_put` and a sharding (no
    deprecated `device_put_replicated` / `device_put_sharded`);
  * a *sharded* host batch has shape (n_local_devices, per_device, ...);
  * with several processes each process feeds only its own local devices;
    collectives (`lax.pmean`, `lax.all_gather`) over ``AXIS`` span the devices of
    all processes, so metrics computed inside a pmapped function are global.
"""
from __future__ import annotations

import functools
import os
from typing import Any, Callable, Optional, Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

AXIS = "batch"

# Environment variables read by `maybe_initialize_distributed`.
ENV_COORDINATOR = "PRUNE_COORDINATOR_ADDRESS"
ENV_NUM_PROCESSES = "PRUNE_NUM_PROCESSES"
ENV_PROCESS_ID = "PRUNE_PROCESS_ID"


def maybe_initialize_distributed(coordinator_address: Optional[str] = None,
                                 num_processes: Optional[int] = None,
                                 process_id: Optional[int] = None) -> bool:
  """Calls `jax.distributed.initialize` when launched as several processes.

  Arguments default to the env vars PRUNE_COORDINATOR_ADDRESS,
  PRUNE_NUM_PROCESSES, PRUNE_PROCESS_ID. With one process (or none given) this
  does nothing. On the CPU backend the cross-process collectives use gloo.
  Must run before any JAX computation. Returns True if initialised here.
  """
  coordinator_address = coordinator_address or os.environ.get(ENV_COORDINATOR)
  num_processes = int(num_processes or os.environ.get(ENV_NUM_PROCESSES, 1) or 1)
  if process_id is None and os.environ.get(ENV_PROCESS_ID) is not None:
    process_id = int(os.environ[ENV_PROCESS_ID])
  if num_processes <= 1:
    return False
  if not coordinator_address or process_id is None:
    raise ValueError(f"num_processes={num_processes} needs a coordinator_address and a "
                     f"process_id (got {coordinator_address!r}, {process_id!r})")
  platforms = os.environ.get("JAX_PLATFORMS", "") or str(jax.config.jax_platforms or "")
  if platforms in ("", "cpu") or platforms.startswith("cpu"):
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
  jax.distributed.initialize(coordinator_address=coordinator_address,
                             num_processes=num_processes, process_id=int(process_id))
  return True


def process_index() -> int:
  return jax.process_index()


def process_count() -> int:
  return jax.process_count()


def local_devices(num_devices: Optional[int] = None) -> list:
  """The first `num_devices` local devices (all if None)."""
  devs = jax.local_devices()
  if num_devices is None or num_devices == 0:
    return devs
  num_devices = int(num_devices)
  if num_devices < 1 or num_devices > len(devs):
    raise ValueError(f"num_devices={num_devices}: this process has {len(devs)} local devices")
  if num_devices != len(devs) and jax.process_count() > 1:
    raise ValueError(f"num_devices={num_devices}: with {jax.process_count()} processes "
                     f"every local device must be used ({len(devs)})")
  return devs[:num_devices]


def total_device_count(devices: Sequence) -> int:
  """Devices taking part in a pmap over `devices` (local) across all processes."""
  return len(devices) * jax.process_count()


@functools.lru_cache(maxsize=None)
def _sharding(devices: tuple) -> NamedSharding:
  return NamedSharding(Mesh(np.asarray(devices), (AXIS,)), PartitionSpec(AXIS))


def replicate(tree: Any, devices: Sequence) -> Any:
  """One copy of every leaf per device (leading axis len(devices))."""
  devices = tuple(devices)
  sh = _sharding(devices)
  n = len(devices)
  return jax.tree.map(
      lambda x: jax.device_put(np.broadcast_to(np.asarray(x)[None], (n,) + np.shape(x)), sh),
      tree)


def unreplicate(tree: Any) -> Any:
  """The first copy of a replicated pytree, as host numpy arrays."""
  return jax.tree.map(lambda x: np.asarray(jax.device_get(x[0])), tree)


def fetch(tree: Any) -> Any:
  """Host copy of pmapped outputs that are identical on every device (pmean'd or
  all_gather'ed): the first device's copy of each leaf, in one device_get."""
  return jax.device_get(jax.tree.map(lambda a: a[0], tree))


def round_up_to_devices(n: int, devices: Sequence) -> int:
  """The smallest multiple of the total device count that is >= n (padded batch size)."""
  total = total_device_count(devices)
  return int(-(-int(n) // total) * total)


def shard(tree: Any, devices: Sequence) -> Any:
  """Splits host arrays (n, ...) into (len(devices), n // len(devices), ...) on devices."""
  devices = tuple(devices)
  n_dev = len(devices)

  def put(x):
    x = np.asarray(x)
    if x.shape[0] % n_dev:
      raise ValueError(f"batch of {x.shape[0]} not divisible by {n_dev} local devices")
    return jax.device_put(x.reshape((n_dev, x.shape[0] // n_dev) + x.shape[1:]),
                          _sharding(devices))

  return jax.tree.map(put, tree)


def pmap(fn: Callable, devices: Sequence, **kwargs) -> Callable:
  """`jax.pmap` over ``AXIS`` on the given local devices (all processes' in multi-host)."""
  devices = list(devices)
  if jax.process_count() > 1 or len(devices) == jax.local_device_count():
    return jax.pmap(fn, axis_name=AXIS, **kwargs)  # default: all devices of all processes
  return jax.pmap(fn, axis_name=AXIS, devices=devices, **kwargs)


def pmean(x, axis_name: str = AXIS):
  return jax.lax.pmean(x, axis_name)


def all_gather(x, axis_name: str = AXIS):
  """Inside pmap: concatenation of every device's `x` (in device order) along axis 0."""
  return jax.lax.all_gather(x, axis_name, tiled=True)


def process_slice(n: int, devices: Sequence) -> slice:
  """This process's contiguous slice of a global batch of n examples.

  n must be divisible by the total device count; processes take equal
  consecutive chunks in process-index order.
  """
  total = total_device_count(devices)
  if n % total:
    raise ValueError(f"global batch {n} not divisible by the total device count {total}")
  per = n // jax.process_count()
  start = jax.process_index() * per
  return slice(start, start + per)


def sync_processes(name: str) -> None:
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils
    multihost_utils.sync_global_devices(name)
