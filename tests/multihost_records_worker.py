"""One process of the streamed multi-process test (launched by tests/test_records.py).

    python tests/multihost_records_worker.py PROCESS_ID NUM_PROCESSES PORT LOCAL_DEVICES \
        RECORD_DIR OUT_NPZ

Trains a small MLP on digits read from record files (core.data.records) and from memory,
checks that both give the same parameters and that this process read only its share of each
global batch, scores EL2N on a subset of 333 ids (not a multiple of the batch), and on
process 0 writes parameters and scores to OUT_NPZ (numpy .npz; no pickle).
"""
import os
import sys

pid, nproc, port, ndev = (int(a) for a in sys.argv[1:5])
rec_dir, out = sys.argv[5], sys.argv[6]
os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={ndev}"
os.environ["JAX_PLATFORMS"] = "cpu"

from core import parallel  # noqa: E402

parallel.maybe_initialize_distributed(f"localhost:{port}", nproc, pid)

import jax  # noqa: E402
import ml_collections  # noqa: E402
import numpy as np  # noqa: E402

from core import predict as predict_lib  # noqa: E402
from core import train  # noqa: E402
from core.config import base_config  # noqa: E402
from core.data import load_dataset  # noqa: E402
from pruning.scores import el2n_reduce  # noqa: E402

c = base_config()
c.model = ml_collections.ConfigDict(dict(name="mlp", hidden=(32,)))
c.batch_size = 64
c.num_steps = 12
c.stop_after_steps = 10          # no final evaluation: only training batches are read
c.optimizer.update(name="sgd", lr=0.05, momentum=0.9, schedule="cosine")
c.log_every_steps = 5
c.checkpoint = False
c.progress_bar = False
mem = load_dataset("digits")
rec = load_dataset("digits", source="records", data_dir=rec_dir)
ids = mem.train.ids[:600]
r_rec = train.train_and_evaluate(c, data=rec, train_ids=ids)
read = rec.train.io["records_read"]
assert read == 10 * 64 // nproc, (read, nproc)   # only this process's slice of each batch
r_mem = train.train_and_evaluate(c, data=mem, train_ids=ids)
for a, b in zip(jax.tree.leaves(r_rec.state.params), jax.tree.leaves(r_mem.state.params)):
  assert (np.asarray(a) == np.asarray(b)).all()
sub = np.random.default_rng(0).permutation(ids)[:333]
before = rec.train.io["records_read"]
p = predict_lib.predict(r_rec.model, r_rec.state, rec.train.subset(sub), 64,
                        reduce_fn=el2n_reduce)
assert rec.train.io["records_read"] - before == 6 * 64 // nproc  # ceil(333/64) padded batches
assert (p["ids"] == sub).all()
if parallel.process_index() == 0:
  leaves = jax.tree.leaves(r_rec.state.params)
  np.savez(out, n_leaves=len(leaves), process_count=jax.process_count(),
           device_count=jax.device_count(), el2n=p["el2n"], ids=p["ids"],
           **{f"p{i}": np.asarray(x) for i, x in enumerate(leaves)})
print(f"process {pid}: done", flush=True)
