"""One process of the multi-process trainer test (launched by tests/test_multihost.py).

    python tests/multihost_worker.py PROCESS_ID NUM_PROCESSES PORT LOCAL_DEVICES WORKDIR OUT_NPZ

Trains a small MLP on digits with the CPU backend (gloo collectives when
NUM_PROCESSES > 1) and, on process 0, writes the final parameters, metrics and
the process's device layout to OUT_NPZ (numpy .npz; no pickle).
"""
import os
import sys

pid, nproc, port, ndev = (int(a) for a in sys.argv[1:5])
workdir, out = sys.argv[5], sys.argv[6]
os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={ndev}"
os.environ["JAX_PLATFORMS"] = "cpu"

from core import parallel  # noqa: E402

parallel.maybe_initialize_distributed(f"localhost:{port}", nproc, pid)

import jax  # noqa: E402
import ml_collections  # noqa: E402
import numpy as np  # noqa: E402

from core import train  # noqa: E402
from core.config import base_config  # noqa: E402
from core.sampler import IndexSampler  # noqa: E402

c = base_config()
c.model = ml_collections.ConfigDict(dict(name="mlp", hidden=(32,)))
c.batch_size = 64
c.num_epochs = 2
c.optimizer.update(name="sgd", lr=0.05, momentum=0.9, weight_decay=5e-4, schedule="cosine")
c.log_every_steps = 5
c.checkpoint_every_steps = 10
c.progress_bar = True  # disabled automatically on process != 0
data = train.load_dataset("digits")
batches, presented = [], []
r = train.train_and_evaluate(c, workdir, data=data, train_ids=data.train.ids[:640],
                             epoch_callback=lambda e, s: batches.append(e),
                             step_callback=lambda s, i, ex: presented.append((s, i, ex["correct"])))
assert jax.process_count() == nproc and jax.local_device_count() == ndev
assert batches == [1, 2], batches
# every process gets every step's whole global batch (gathered over both processes)
sampler = IndexSampler(data.train.ids[:640], 64, c.seed)
assert [s for s, _, _ in presented] == list(range(1, 21))
for s, ids, ok in presented:
  assert (ids == sampler.global_batch(s - 1)).all() and ok.shape == (64,), s
if parallel.process_index() == 0:
  leaves = jax.tree.leaves(r.state.params)
  np.savez(out, n_leaves=len(leaves), process_count=jax.process_count(),
           device_count=jax.device_count(), test_accuracy=r.metrics["test_accuracy"],
           train_loss=r.metrics["train_loss"], correct=np.stack([ok for _, _, ok in presented]),
           **{f"p{i}": np.asarray(x) for i, x in enumerate(leaves)})
print(f"process {pid}: done", r.metrics, flush=True)
