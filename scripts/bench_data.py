"""Streamed record files (core.data.records) against in-memory arrays: throughput and memory.

    python scripts/bench_data.py [--n=20000] [--steps=100] [--batch_size=256] \
        [--rss_sizes=20000,200000] [--data_dir=/tmp/bench_data] [--out=bench_data.json]

In one run, on MNIST-1D (the `mnist1d` generator, real data) with the authors' 1-D CNN:
  * gather: examples/s of reading random global batches (no model): records vs numpy;
  * train: examples/s of `core.train.train_and_evaluate` for --steps steps (compiled first,
    no evaluation), streamed vs in memory, same config and ids;
  * score: examples/s of an EL2N pass (`core.predict.predict` with the on-device reduction)
    over the whole training set;
  * memory: peak resident memory (resource.getrusage ru_maxrss, in a fresh subprocess each)
    of one EL2N scoring pass over a record set of each of --rss_sizes examples, and of the
    same pass on the in-memory dataset, so the growth with the dataset size can be compared.
Prints ratios streamed / in-memory and writes all numbers to --out (JSON).
"""
from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time

from absl import app, flags

flags.DEFINE_integer("n", 20000, "MNIST-1D training examples for the throughput runs")
flags.DEFINE_integer("steps", 100, "timed training steps")
flags.DEFINE_integer("batch_size", 256, "global batch size (training and gather)")
flags.DEFINE_integer("predict_batch_size", 1024, "scoring batch size")
flags.DEFINE_string("rss_sizes", "20000,200000", "record-set sizes of the memory measurement "
                    "('' skips it)")
flags.DEFINE_string("data_dir", "/tmp/bench_data", "where record sets are written (reused)")
flags.DEFINE_string("out", "", "JSON file for the numbers ('' = print only)")
flags.DEFINE_string("rss_child", "", "internal: 'records' | 'numpy' runs one scoring pass")
flags.DEFINE_bool("only_rss", False, "skip the throughput part")
flags.DEFINE_integer("reps", 3, "timed repetitions per source, alternating (best kept)")
FLAGS = flags.FLAGS

NUM_TEST = 1000


def _record_dir(n: int) -> str:
  from core.data import records
  d = os.path.join(FLAGS.data_dir, f"mnist1d_{n}")
  if not os.path.exists(os.path.join(d, "test", "meta.json")):
    t = time.time()
    records.prepare_bundled("mnist1d", d, num_train=n, num_test=NUM_TEST, overwrite=True)
    print(f"wrote {d} ({n} records) in {time.time() - t:.1f}s", flush=True)
  return d


def _load(n: int, source: str):
  from core.data import load_dataset
  if source == "records":
    return load_dataset("mnist1d", source="records", data_dir=_record_dir(n))
  return load_dataset("mnist1d", num_train=n, num_test=NUM_TEST)


def _config(steps: int):
  from core.configs import mnist1d_cnn
  c = mnist1d_cnn.get_config()
  c.num_steps = steps + 1
  c.stop_after_steps = steps     # no final evaluation: the loop alone is timed
  c.batch_size = FLAGS.batch_size
  c.progress_bar = False
  c.checkpoint = False
  c.log_every_steps = 50
  return c


def _score_pass(data):
  from core import predict as predict_lib
  from core.models import create_model
  from core.state import create_train_state
  from pruning.scores import el2n_reduce
  cfg = _config(1)
  model = create_model(cfg.model, num_classes=data.num_classes)
  state = create_train_state(cfg, model, data.example_shape, 0)
  return predict_lib.predict(model, state, data.train, FLAGS.predict_batch_size,
                             reduce_fn=el2n_reduce)["el2n"]


def _vm_hwm_mb() -> float:
  """Peak resident memory of this process image (Linux /proc VmHWM), in MB."""
  with open("/proc/self/status") as f:
    for line in f:
      if line.startswith("VmHWM:"):
        return float(line.split()[1]) / 1024
  return float("nan")


def _rss_child(source: str):
  t = time.time()
  import jax.numpy as jnp
  jnp.zeros(1).block_until_ready()
  base = _vm_hwm_mb()            # after importing JAX and starting the backend
  data = _load(FLAGS.n, source)
  s = _score_pass(data)
  # ru_maxrss is kept across fork + exec on Linux, so it can report the parent's peak;
  # VmHWM belongs to this process image alone and is the number to compare.
  print(json.dumps({"source": source, "n": len(s), "peak_rss_mb": _vm_hwm_mb(),
                    "peak_rss_after_jax_start_mb": base,
                    "ru_maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                    "wall_s": time.time() - t}))


def _rss(n: int, source: str) -> dict:
  if source == "records":
    _record_dir(n)  # written by this process, not counted in the child
  cmd = [sys.executable, os.path.abspath(__file__), f"--rss_child={source}", f"--n={n}",
         f"--data_dir={FLAGS.data_dir}", f"--predict_batch_size={FLAGS.predict_batch_size}"]
  out = subprocess.run(cmd, capture_output=True, text=True, check=False,
                       env=dict(os.environ, JAX_PLATFORMS="cpu"))
  if out.returncode:
    raise RuntimeError(f"rss child failed: {out.stderr[-2000:]}")
  return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv):
  del argv
  if FLAGS.rss_child:
    return _rss_child(FLAGS.rss_child)
  import numpy as np
  from core import train
  t_all = time.time()
  res = {"n": FLAGS.n, "steps": FLAGS.steps, "batch_size": FLAGS.batch_size}
  sizes = [int(v) for v in FLAGS.rss_sizes.split(",") if v.strip()]
  for n in sizes:
    _record_dir(n)
  if FLAGS.only_rss:
    res["rss"] = [_rss(n, s) for n in sizes for s in ("records", "numpy")]
    return _report(res, t_all, throughput=False)
  data = {s: _load(FLAGS.n, s) for s in ("numpy", "records")}

  # Gather alone: random global batches.
  rng = np.random.default_rng(0)
  batches = [rng.integers(0, FLAGS.n, FLAGS.batch_size) for _ in range(100)]
  for _ in range(FLAGS.reps):
    for s, d in data.items():
      d.train.gather(batches[0])
      t = time.perf_counter()
      for b in batches:
        d.train.gather(b)
      rate = len(batches) * FLAGS.batch_size / (time.perf_counter() - t)
      res[f"gather_{s}_examples_per_s"] = max(rate, res.get(f"gather_{s}_examples_per_s", 0))

  # Training: compile once (the compile cache keys on the schedule length, so the warm-up
  # uses the same config cut after 2 steps), then time each source, alternating, best of
  # --reps (the machine is shared).
  cfg = _config(FLAGS.steps)
  warm = _config(FLAGS.steps)
  warm.stop_after_steps = 2
  for s, d in data.items():
    train.train_and_evaluate(warm, data=d)
  for _ in range(FLAGS.reps):
    for s, d in data.items():
      t = time.perf_counter()
      r = train.train_and_evaluate(cfg, data=d)
      rate = FLAGS.steps * FLAGS.batch_size / (time.perf_counter() - t)
      res[f"train_{s}_examples_per_s"] = max(rate, res.get(f"train_{s}_examples_per_s", 0))
      res[f"train_{s}_final_loss"] = r.metrics.get("train_loss")
  res["train_same_loss"] = res["train_numpy_final_loss"] == res["train_records_final_loss"]

  # Scoring: one EL2N pass over the whole training set, alternating, best of --reps.
  out = {}
  for s, d in data.items():
    _score_pass(d)  # compile
  for _ in range(FLAGS.reps):
    for s, d in data.items():
      t = time.perf_counter()
      out[s] = _score_pass(d)
      rate = FLAGS.n / (time.perf_counter() - t)
      res[f"score_{s}_examples_per_s"] = max(rate, res.get(f"score_{s}_examples_per_s", 0))
  res["score_max_abs_diff"] = float(np.max(np.abs(out["numpy"] - out["records"])))
  for k in ("gather", "train", "score"):
    res[f"{k}_ratio_streamed_over_memory"] = (res[f"{k}_records_examples_per_s"]
                                              / res[f"{k}_numpy_examples_per_s"])

  # Peak resident memory of a scoring pass, fresh process per (size, source).
  res["rss"] = [_rss(n, s) for n in sizes for s in ("records", "numpy")]
  _report(res, t_all, throughput=True)


def _report(res, t_all, throughput):
  res["wall_s"] = time.time() - t_all
  if throughput:
    print(f"MNIST-1D n={FLAGS.n}, 1-D CNN, batch {FLAGS.batch_size}, "
          f"{len(__import__('jax').local_devices())} device(s):")
    for k in ("gather", "train", "score"):
      print(f"  {k:6s} in-memory {res[f'{k}_numpy_examples_per_s']:10.0f} ex/s   streamed "
            f"{res[f'{k}_records_examples_per_s']:10.0f} ex/s   ratio "
            f"{res[f'{k}_ratio_streamed_over_memory']:.3f}")
    print(f"  scores streamed vs in-memory: max |diff| = {res['score_max_abs_diff']:.3g}; "
          f"same final training loss: {res['train_same_loss']}")
  for r in res["rss"]:
    print(f"  peak RSS of an EL2N scoring pass: {r['source']:7s} n={r['n']:8d}  "
          f"{r['peak_rss_mb']:7.1f} MB (VmHWM; {r['peak_rss_after_jax_start_mb']:.1f} MB after "
          f"JAX start; ru_maxrss {r['ru_maxrss_mb']:.1f} MB)  ({r['wall_s']:.1f}s)")
  by = {(r["source"], r["n"]): r["peak_rss_mb"] for r in res["rss"]}
  ns = sorted({r["n"] for r in res["rss"]})
  if len(ns) >= 2:
    for src in ("records", "numpy"):
      res[f"rss_growth_{src}_mb"] = by[(src, ns[-1])] - by[(src, ns[0])]
      print(f"  growth {ns[0]} -> {ns[-1]} examples, {src:7s}: "
            f"{res[f'rss_growth_{src}_mb']:+.1f} MB")
  if FLAGS.out:
    from core.io import atomic_write_text
    atomic_write_text(FLAGS.out, json.dumps(res, indent=1))
  print(f"total wall time {res['wall_s']:.0f}s")


if __name__ == "__main__":
  app.run(main)
