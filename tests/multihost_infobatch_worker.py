"""One process of the InfoBatch multi-process test (launched by tests/test_selectors.py).

    python tests/multihost_infobatch_worker.py PROCESS_ID NUM_PROCESSES PORT LOCAL_DEVICES OUT_NPZ

Trains a small MLP on 640 digits with InfoBatch (pruning.infobatch) on the CPU backend (gloo
collectives when NUM_PROCESSES > 1); process 0 writes the final parameters, the per-epoch
kept counts and the metrics to OUT_NPZ (numpy .npz; no pickle).
"""
import os
import sys

pid, nproc, port, ndev = (int(a) for a in sys.argv[1:5])
out = sys.argv[5]
os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={ndev}"
os.environ["JAX_PLATFORMS"] = "cpu"

from core import parallel  # noqa: E402

parallel.maybe_initialize_distributed(f"localhost:{port}", nproc, pid)

import jax  # noqa: E402
import ml_collections  # noqa: E402
import numpy as np  # noqa: E402

from core.config import base_config  # noqa: E402
from core.data import load_dataset  # noqa: E402
from pruning.infobatch import train_with_infobatch  # noqa: E402

c = base_config()
c.model = ml_collections.ConfigDict(dict(name="mlp", hidden=(32,)))
c.batch_size = 64
c.optimizer.update(name="adam", lr=3e-3)
c.checkpoint = False
c.progress_bar = False
data = load_dataset("digits")
res, summ = train_with_infobatch(c, data, num_epochs=5, prune_ratio=0.5, delta=0.8, seed=0,
                                 train_ids=data.train.ids[:640])
if parallel.process_index() == 0:
  leaves = [np.asarray(x) for x in jax.tree.leaves(res.state.params)]
  np.savez(out, kept=np.array([h["kept"] for h in summ["per_epoch"]]),
           steps=res.metrics["steps"], test_accuracy=res.metrics["test_accuracy"],
           process_count=jax.process_count(), device_count=jax.device_count(),
           n_leaves=len(leaves), **{f"p{i}": a for i, a in enumerate(leaves)})
print(f"process {pid}: done", flush=True)
