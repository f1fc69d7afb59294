"""One process of the fetch test (launched by tests/test_multihost.py).

    python tests/multihost_fetch_worker.py PROCESS_ID NUM_PROCESSES PORT LOCAL_DEVICES

Only the last process copies a pmapped output to the host (`parallel.fetch`, `unreplicate`);
the others go straight to a barrier. Reading one's own copy must need no other process: a
cross-process read would wait for processes that are in the barrier, and hang.
"""
import os
import sys

pid, nproc, port, ndev = (int(a) for a in sys.argv[1:5])
os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={ndev}"
os.environ["JAX_PLATFORMS"] = "cpu"

from core import parallel  # noqa: E402

parallel.maybe_initialize_distributed(f"localhost:{port}", nproc, pid)

import jax  # noqa: E402
import numpy as np  # noqa: E402

devices = parallel.local_devices()
x = parallel.shard(np.arange(len(devices) * 3, dtype=np.float32).reshape(-1, 3)
                   + 100 * pid, devices)
out = parallel.pmap(lambda v: {"mean": parallel.pmean(v), "all": parallel.all_gather(v)},
                    devices)(x)
if pid == nproc - 1:
  got = parallel.fetch(out)
  rep = parallel.unreplicate(out)
  n = parallel.total_device_count(devices)
  rows = np.concatenate([np.arange(ndev * 3, dtype=np.float32).reshape(-1, 1, 3) + 100 * p
                         for p in range(nproc)])
  np.testing.assert_allclose(got["mean"], rows.mean(0))  # (1, 3): one row per device
  np.testing.assert_allclose(got["all"], rows[:, 0])
  assert got["all"].shape == (n, 3)
  np.testing.assert_allclose(rep["mean"], got["mean"])
parallel.sync_processes("after fetch")
print(f"process {pid}: done", flush=True)
