"""One process of the score-shard test (launched by tests/test_score_shards.py).

    python tests/multihost_scores_worker.py PROCESS_ID NUM_PROCESSES PORT LOCAL_DEVICES \
        CACHE_DIR [DATA_DIR]

Scores EL2N at initialisation of two MLPs (2 runs, so per-run scores are stored) on the digits
training split (1437 examples: odd, so the two shards differ in size) through
`pruning.score_io.cached(CACHE_DIR)`, each pass a collective `core.predict.predict` with the
on-device reduction: with two processes each writes its shard and process 0 merges them.
With DATA_DIR, the digits are read from record files there (core.data.records). The scorer is
written out here (not `pruning.scores`), so the test pins the shard protocol alone.
"""
import os
import sys

pid, nproc, port, ndev = (int(a) for a in sys.argv[1:5])
cache_dir = sys.argv[5]
data_dir = sys.argv[6] if len(sys.argv) > 6 else ""
os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={ndev}"
os.environ["JAX_PLATFORMS"] = "cpu"

from core import parallel  # noqa: E402

parallel.maybe_initialize_distributed(f"localhost:{port}", nproc, pid)

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import ml_collections  # noqa: E402
import numpy as np  # noqa: E402

from core import predict as predict_lib  # noqa: E402
from core.config import base_config  # noqa: E402
from core.data import load_dataset  # noqa: E402
from core.models import create_model  # noqa: E402
from core.state import create_train_state  # noqa: E402
from pruning import score_io  # noqa: E402

tc = base_config()
tc.model = ml_collections.ConfigDict(dict(name="mlp", hidden=(32,)))
data = (load_dataset("digits", source="records", data_dir=data_dir) if data_dir
        else load_dataset("digits"))


def el2n(logits, targets):
  return {"el2n": jnp.sqrt(jnp.sum((jax.nn.softmax(logits, -1) - targets) ** 2, -1))}


def compute():
  model = create_model(tc.model, num_classes=data.num_classes)
  runs = [predict_lib.predict(model, create_train_state(tc, model, data.example_shape, seed),
                              data.train, 128, reduce_fn=el2n)["el2n"] for seed in (1, 2)]
  meta = dict(method="el2n", dataset=data.name, fingerprint=data.train.fingerprint(),
              num_examples=len(data.train), epoch=0, num_runs=2)
  return score_io.ScoreResult(data.train.ids.copy(), np.mean(runs, 0), meta, np.stack(runs))


res = score_io.cached(cache_dir, "el2n", {"epoch": 0, "num_runs": 2}, data.train, compute)
assert (res.ids == data.train.ids).all() and res.per_run.shape == (2, len(data.train))
files = sorted(os.listdir(cache_dir))
assert len(files) == 1 and files[0].startswith("el2n-"), files  # the shards were removed
again = score_io.load(os.path.join(cache_dir, files[0]), data.train)
assert np.array_equal(again.scores, res.scores)
print(f"process {pid}: done {files[0]}", flush=True)
