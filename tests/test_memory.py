"""Host memory of a scoring pass over record files grows by a few bytes per example only.

Python's tracemalloc sees every numpy allocation (not XLA's), which is where per-example state
would pile up: `core.predict.predict` over a streamed dataset holds the outputs (4 bytes per
example for EL2N), the ids it returns (8) and a uint8 count that checks every example was
scored once (1). The bound is checked on the peak of the traced allocations during the pass,
at two dataset sizes 10x apart (SYNTHETIC random inputs; resident memory on MNIST-1D
200k -> 2M records is measured by scripts/bench_memory.py).
"""
import tracemalloc

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from core import predict as predict_lib
from core.config import base_config
from core.data import ArrayDataset, records
from core.models import create_model
from core.state import create_train_state


def _el2n(logits, targets):
  return {"el2n": jnp.sqrt(jnp.sum((jax.nn.softmax(logits, -1) - targets) ** 2, -1))}


def _traced_peak(ds, model, state) -> float:
  predict_lib.predict(model, state, ds.subset(ds.ids[:8]), 1024, num_devices=1,
                      reduce_fn=_el2n)  # compile outside the trace
  tracemalloc.start()
  try:
    out = predict_lib.predict(model, state, ds, 1024, num_devices=1, reduce_fn=_el2n)
    peak = tracemalloc.get_traced_memory()[1]
  finally:
    tracemalloc.stop()
  assert out["el2n"].shape == (len(ds),) and np.isfinite(out["el2n"]).all()
  return peak


def test_streamed_scoring_host_memory_per_example(tmp_path):
  rng = np.random.default_rng(0)
  n_big, n_small = 40_000, 4_000
  x = rng.normal(size=(n_big, 40, 1)).astype(np.float32)
  full = ArrayDataset(x, rng.integers(0, 10, n_big).astype(np.int32),
                      np.arange(n_big, dtype=np.int64), 10, "synthetic/train")
  big = records.RecordDataset(records.write_records(full, str(tmp_path / "big")))
  small = records.RecordDataset(records.write_records(
      full.subset(full.ids[:n_small]), str(tmp_path / "small")))
  c = base_config()
  c.model = ml_collections.ConfigDict(dict(name="mlp", hidden=(16,)))
  model = create_model(c.model, num_classes=10)
  state = create_train_state(c, model, (40, 1), 0)
  peaks = [_traced_peak(ds, model, state) for ds in (small, big)]
  per_example = (peaks[1] - peaks[0]) / (n_big - n_small)
  print(f"traced host memory: {peaks} bytes, {per_example:.1f} bytes per added example")
  # outputs 4 + ids 8 + count 1 = 13 bytes per example; the inputs (160 bytes each) never are
  assert per_example <= 16, (peaks, per_example)
