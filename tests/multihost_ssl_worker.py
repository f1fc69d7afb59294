"""One process of the multi-process SSL encoder test (launched by tests/test_ssl.py).

    python tests/multihost_ssl_worker.py PROCESS_ID NUM_PROCESSES PORT LOCAL_DEVICES OUT_NPZ OBJ

Trains a tiny encoder (SwAV with a queue, or SimCLR) for a few steps on synthetic Gaussian
inputs (only parameter equality is checked, not quality) with the CPU backend (gloo
collectives when NUM_PROCESSES > 1); process 0 writes the parameters and embeddings to OUT_NPZ.
"""
import os
import sys

pid, nproc, port, ndev = (int(a) for a in sys.argv[1:5])
out, objective = sys.argv[5], sys.argv[6]
os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={ndev}"
os.environ["JAX_PLATFORMS"] = "cpu"

from core import parallel  # noqa: E402

parallel.maybe_initialize_distributed(f"localhost:{port}", nproc, pid)

import jax  # noqa: E402
import ml_collections  # noqa: E402
import numpy as np  # noqa: E402

from pruning import ssl  # noqa: E402

c = ml_collections.ConfigDict(dict(
    seed=0, model=dict(name="mlp", hidden=(16,)), head=dict(hidden=16, dim=8),
    objective=objective, simclr=dict(temperature=0.3),
    swav=dict(num_prototypes=6, temperature=0.1, epsilon=0.05, sinkhorn_iters=3,
              queue_length=16, freeze_prototypes_steps=1),
    augment=dict(ops=("circular_shift", "scale", "corr_noise"), max_shift=3),
    batch_size=16, num_steps=4, optimizer=dict(name="adam", lr=1e-2, schedule="constant"),
    log_every_steps=2, progress_bar=True, checkpoint=False))
x = np.random.default_rng(3).normal(size=(40, 12, 1)).astype(np.float32)
enc = ssl.train_encoder(c, x, np.arange(40))
emb = ssl.embed(enc, x, 7)
assert jax.process_count() == nproc and jax.local_device_count() == ndev
if parallel.process_index() == 0:
  leaves = jax.tree.leaves(enc.variables)
  np.savez(out, n_leaves=len(leaves), process_count=jax.process_count(),
           device_count=jax.device_count(), loss=enc.metrics["final_loss"], emb=emb,
           **{f"p{i}": np.asarray(v) for i, v in enumerate(leaves)})
print(f"process {pid}: done", enc.metrics, flush=True)
