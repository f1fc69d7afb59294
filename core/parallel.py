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


ENV_INIT_TIMEOUT = "PRUNE_INIT_TIMEOUT_S"
DEFAULT_INIT_TIMEOUT_S = 300


class DistributedInitError(RuntimeError):
  """A multi-process launch that cannot form its group (no coordinator, bad process id)."""


def _launch_hint(num_processes: int, coordinator: str, process_id: int) -> str:
  # A duplicated --process_id is not visible from Python: JAX aborts the group in C++ (the
  # others log "... tried to connect with a different incarnation"), or the group of the first
  # ones forms and ends, and the duplicate times out here; so the hint names it.
  return (f"two processes may have the same --process_id (this one has {process_id}); check "
          f"that all {num_processes} processes were started, each with a distinct "
          f"--process_id in 0..{num_processes - 1} and the same --num_processes={num_processes} "
          f"and --coordinator_address={coordinator} (process 0 hosts the coordinator), and that "
          f"the host and port are reachable")


def _wait_for_coordinator(address: str, deadline: float) -> bool:
  """Whether a TCP connection to `address` (host:port) succeeds before `deadline`."""
  import socket
  import time
  host, _, port = address.rpartition(":")
  while True:
    try:
      with socket.create_connection((host.strip("[]") or "localhost", int(port)), timeout=1.0):
        return True
    except (OSError, ValueError):
      if time.monotonic() >= deadline:
        return False
      time.sleep(0.25)


def maybe_initialize_distributed(coordinator_address: Optional[str] = None,
                                 num_processes: Optional[int] = None,
                                 process_id: Optional[int] = None,
                                 timeout_s: Optional[float] = None) -> bool:
  """Calls `jax.distributed.initialize` when launched as several processes.

  Arguments default to the env vars PRUNE_COORDINATOR_ADDRESS,
  PRUNE_NUM_PROCESSES, PRUNE_PROCESS_ID. With one process (or none given) this
  does nothing. On the CPU backend the cross-process collectives use gloo.
  Must run before any JAX computation. Returns True if initialised here.

  Nothing hangs: the group must form within `timeout_s` (default $PRUNE_INIT_TIMEOUT_S or
  300 s, passed to JAX as `initialization_timeout`). A process other than 0 first waits for
  the coordinator's port and raises DistributedInitError (naming the coordinator, its process
  id and what to check) if it never opens. Past that point JAX itself aborts the process when
  the group does not form (e.g. a missing or duplicated process id); a watchdog prints the same
  explanation to stderr just before, instead of JAX's "another task died".
  """
  import sys
  import threading
  import time
  coordinator_address = coordinator_address or os.environ.get(ENV_COORDINATOR)
  num_processes = int(num_processes or os.environ.get(ENV_NUM_PROCESSES, 1) or 1)
  if process_id is None and os.environ.get(ENV_PROCESS_ID) is not None:
    process_id = int(os.environ[ENV_PROCESS_ID])
  if num_processes <= 1:
    return False
  if not coordinator_address or process_id is None:
    raise ValueError(f"num_processes={num_processes} needs a coordinator_address and a "
                     f"process_id (got {coordinator_address!r}, {process_id!r})")
  process_id = int(process_id)
  if not 0 <= process_id < num_processes:
    raise ValueError(f"process_id={process_id} is out of range for num_processes="
                     f"{num_processes}: use 0..{num_processes - 1}, each once")
  if timeout_s is None:
    timeout_s = float(os.environ.get(ENV_INIT_TIMEOUT) or DEFAULT_INIT_TIMEOUT_S)
  if timeout_s <= 0:
    raise ValueError(f"initialization timeout must be > 0 s, got {timeout_s} "
                     f"(${ENV_INIT_TIMEOUT})")
  who = f"process {process_id} of {num_processes}"
  hint = _launch_hint(num_processes, coordinator_address, process_id)
  deadline = time.monotonic() + timeout_s
  print(f"[{who}] joining coordinator {coordinator_address} (timeout {timeout_s:g} s)",
        file=sys.stderr, flush=True)
  if process_id != 0 and not _wait_for_coordinator(coordinator_address, deadline):
    raise DistributedInitError(f"{who}: no coordinator at {coordinator_address} within "
                               f"{timeout_s:g} s; {hint}")
  platforms = os.environ.get("JAX_PLATFORMS", "") or str(jax.config.jax_platforms or "")
  if platforms in ("", "cpu") or platforms.startswith("cpu"):
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
  left = max(1.0, deadline - time.monotonic())
  watchdog = threading.Timer(max(0.5, left - 0.5), lambda: print(
      f"[{who}] the process group did not form within {timeout_s:g} s at coordinator "
      f"{coordinator_address}; JAX aborts this process now. {hint}", file=sys.stderr,
      flush=True))
  watchdog.daemon = True
  watchdog.start()
  try:
    jax.distributed.initialize(coordinator_address=coordinator_address,
                               num_processes=num_processes, process_id=process_id,
                               initialization_timeout=max(1, int(round(left))))
  except Exception as e:
    raise DistributedInitError(f"{who}: jax.distributed.initialize failed at coordinator "
                               f"{coordinator_address} ({type(e).__name__}: {e}); {hint}") from e
  finally:
    watchdog.cancel()
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
  """The first local copy of a replicated pytree, as host numpy arrays (no communication)."""
  return fetch(tree)


def fetch(tree: Any) -> Any:
  """Host copy of pmapped outputs that are identical on every device (pmean'd or
  all_gather'ed): this process's first device's copy of each leaf, in one device_get.

  A host read of the first local shard, never `x[0]`: that is a jitted gather over every
  local device (a cross-device collective; gloo once jax.distributed is initialised) dispatched
  between training steps, and on JAX 0.10 the 2-process trainer deadlocked in it (process 1 in
  the gather, process 0 already in the checkpoint barrier).
  """
  leaves, treedef = jax.tree.flatten(tree)
  local = jax.device_get([x.addressable_data(0) if isinstance(x, jax.Array) else np.asarray(x)
                          for x in leaves])
  # a shard keeps the sharded axis (length 1 per device); a squeezed one (PmapSharding) does not
  return treedef.unflatten([np.asarray(h)[0] if np.ndim(h) == np.ndim(x) else np.asarray(h)
                            for h, x in zip(local, leaves)])


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


def use_compilation_cache(folder: str, min_compile_seconds: float = 1.0) -> None:
  """Persists compiled programs in `folder`, so later runs and later seeds of a run (method
  code that builds fresh closures per run recompiles otherwise) reuse them. Drivers pass a
  folder inside their workdir: a fresh workdir starts cold, so its timings include
  compilation. Single-process runs only: a no-op with several processes (they would all
  write to one folder)."""
  # jax.distributed.is_initialized, not process_count: the latter starts the CPU backend,
  # and XLA flags (distill.nt_compat's ISA cap) can only be set before it starts
  if jax.distributed.is_initialized():
    return
  os.makedirs(folder, exist_ok=True)
  jax.config.update("jax_compilation_cache_dir", folder)
  jax.config.update("jax_persistent_cache_min_compile_time_secs", float(min_compile_seconds))


def broadcast_from_process0(value: int) -> int:
  """Process 0's integer `value` on every process (a collective: all processes call it)."""
  if jax.process_count() == 1:
    return int(value)
  from jax.experimental import multihost_utils
  return int(multihost_utils.broadcast_one_to_all(np.int32(value)))
