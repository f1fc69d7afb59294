"""Peak resident memory of one EL2N scoring pass, streamed (record files) vs in memory.

Each measurement runs in a fresh subprocess (`python -m experiments.memory --child ...`) and
reads its peak resident set from /proc/self/status (VmHWM, Linux): ru_maxrss is kept across
fork + exec on Linux and can report the parent's peak instead. The pass is what
`pruning.scores` does per run for EL2N at initialisation: `core.predict.predict` with the
on-device EL2N reduction (`pruning.scores.el2n_reduce`) over the whole training split of
MNIST-1D (the `mnist1d` generator, real data; 40 x 1 float32 inputs, 160 bytes each) with the
authors' 1-D CNN. Record sets are written once to `data_dir/mnist1d_<n>` and reused.

`measure(sizes)` returns one row per (size, source) and the growth between the smallest and
largest size, in MB and bytes per added example.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from typing import Sequence

NUM_TEST = 1000
SOURCES = ("records", "numpy")


def vm_hwm_mb() -> float:
  """Peak resident memory of this process image (Linux /proc VmHWM), in MB."""
  with open("/proc/self/status") as f:
    for line in f:
      if line.startswith("VmHWM:"):
        return float(line.split()[1]) / 1024
  raise RuntimeError("no VmHWM in /proc/self/status (this measurement needs Linux)")


def record_dir(n: int, data_dir: str, log=print) -> str:
  """`data_dir/mnist1d_<n>`: MNIST-1D with n training examples as record sets (written once)."""
  from core.data import records
  d = os.path.join(data_dir, f"mnist1d_{n}")
  if not os.path.exists(os.path.join(d, "test", "meta.json")):
    t = time.time()
    records.prepare_bundled("mnist1d", d, num_train=n, num_test=NUM_TEST, overwrite=True)
    log(f"wrote {d} ({n} records) in {time.time() - t:.1f}s")
  return d


def load(n: int, source: str, data_dir: str):
  from core.data import load_dataset
  if source == "records":
    return load_dataset("mnist1d", source="records", data_dir=record_dir(n, data_dir))
  if source == "numpy":
    return load_dataset("mnist1d", num_train=n, num_test=NUM_TEST)
  raise ValueError(f"unknown source {source!r}; choose from {SOURCES}")


def score_pass(data, predict_batch_size: int):
  """EL2N of every training example at initialisation of the MNIST-1D 1-D CNN: (n,) float32."""
  from core import predict as predict_lib
  from core.configs import mnist1d_cnn
  from core.models import create_model
  from core.state import create_train_state
  from pruning.scores import el2n_reduce
  cfg = mnist1d_cnn.get_config()
  model = create_model(cfg.model, num_classes=data.num_classes)
  state = create_train_state(cfg, model, data.example_shape, 0)
  return predict_lib.predict(model, state, data.train, predict_batch_size,
                             reduce_fn=el2n_reduce)["el2n"]


def _child(n: int, source: str, data_dir: str, predict_batch_size: int) -> dict:
  t = time.time()
  import jax.numpy as jnp
  jnp.zeros(1).block_until_ready()
  base = vm_hwm_mb()              # after importing JAX and starting the backend
  data = load(n, source, data_dir)
  loaded = vm_hwm_mb()
  s = score_pass(data, predict_batch_size)
  assert len(s) == n, (len(s), n)
  return {"source": source, "n": n, "peak_rss_mb": vm_hwm_mb(), "after_jax_start_mb": base,
          "after_load_mb": loaded, "wall_s": time.time() - t}


def peak_rss(n: int, source: str, data_dir: str, predict_batch_size: int = 1024) -> dict:
  """One scoring pass in a fresh subprocess (CPU JAX, 1 device): its VmHWM and timings."""
  if source == "records":
    record_dir(n, data_dir)       # written here, not counted in the child
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  cmd = [sys.executable, "-m", "experiments.memory", "--child", f"--n={n}",
         f"--source={source}", f"--data_dir={data_dir}",
         f"--predict_batch_size={predict_batch_size}"]
  env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
  env.update(JAX_PLATFORMS="cpu", PYTHONPATH=root + os.pathsep + env.get("PYTHONPATH", ""))
  out = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env, cwd=root)
  if out.returncode:
    raise RuntimeError(f"scoring pass n={n} source={source} failed: {out.stderr[-3000:]}")
  return json.loads(out.stdout.strip().splitlines()[-1])


def measure(sizes: Sequence[int], data_dir: str, *, sources: Sequence[str] = SOURCES,
            predict_batch_size: int = 1024, skip: Sequence[tuple] = (), log=print) -> dict:
  """Peak RSS rows for every (size, source) not in `skip`, and the growth per source from the
  smallest to the largest size measured: MB and bytes per added example."""
  rows = []
  for n in sorted(sizes):
    for src in sources:
      if (n, src) in set(map(tuple, skip)):
        continue
      r = peak_rss(n, src, data_dir, predict_batch_size)
      log(f"  {src:7s} n={n:9d}: peak RSS {r['peak_rss_mb']:8.1f} MB (after JAX start "
          f"{r['after_jax_start_mb']:.1f}, after loading {r['after_load_mb']:.1f}; "
          f"{r['wall_s']:.0f}s)")
      rows.append(r)
  growth = {}
  for src in sources:
    mine = sorted((r["n"], r["peak_rss_mb"]) for r in rows if r["source"] == src)
    if len(mine) >= 2:
      (n0, m0), (n1, m1) = mine[0], mine[-1]
      growth[src] = {"from_n": n0, "to_n": n1, "mb": m1 - m0,
                     "bytes_per_added_example": (m1 - m0) * 2 ** 20 / (n1 - n0)}
  return {"rows": rows, "growth": growth, "predict_batch_size": predict_batch_size}


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--child", action="store_true")
  p.add_argument("--n", type=int, required=True)
  p.add_argument("--source", choices=SOURCES, required=True)
  p.add_argument("--data_dir", required=True)
  p.add_argument("--predict_batch_size", type=int, default=1024)
  a = p.parse_args(argv)
  print(json.dumps(_child(a.n, a.source, a.data_dir, a.predict_batch_size)), flush=True)


if __name__ == "__main__":
  main()
