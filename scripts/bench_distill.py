"""Throughput of the distillation kernels: kernel-matrix entries/s and KIP steps/s.

    python scripts/bench_distill.py [--support_sizes=10,100] [--targets=500] [--steps=10]
        [--repeats=3] [--out=run.jsonl] [--baseline=other_run.jsonl]

For the FC NTK (depth 1, digits 8x8x1), the 2-D ConvNet NTK (depth 3, 8x8x1)
and the 1-D ConvNet NTK (depth 3, MNIST-1D 40x1), at each support size: the
time of K(targets, support) with `kernel_matrix` (nt.batch, float64), median of
`--repeats` calls after a warm-up call, and KIP steps/s (median over `--steps`
timed steps after one compile step, target batch of `--kip_batch`). Wall and
process CPU seconds are both reported (CPU time is less sensitive to other load
on a shared machine). Random inputs; prints the stack (JAX, jaxlib,
neural-tangents, what distill.nt_compat supplied, its XLA flag), one table row
per case and a JSON line per case; `--out` also writes the JSON lines to a file.
`--baseline=FILE` (the `--out` of a run on another stack, e.g. JAX 0.5.3) adds
the ratios this run / baseline (>1: this run is faster) for matching cases.
"""
from __future__ import annotations

import json
import os
import sys
import time

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]

from absl import app, flags

flags.DEFINE_list("support_sizes", ["10", "100"], "Support set sizes.")
flags.DEFINE_integer("targets", 500, "Rows of the kernel-matrix benchmark.")
flags.DEFINE_integer("kip_batch", 200, "Target batch of a KIP step.")
flags.DEFINE_integer("steps", 10, "Timed KIP steps (after one compile step).")
flags.DEFINE_list("cases", ["fc", "conv2d", "conv1d"], "Which kernels.")
flags.DEFINE_integer("repeats", 3, "Timed kernel-matrix calls (median).")
flags.DEFINE_string("out", None, "Also write the JSON lines here.")
flags.DEFINE_string("baseline", None, "JSON lines of another run: print ratios against it.")
FLAGS = flags.FLAGS

CASES = {"fc": ("fc", 1, (8, 8, 1)), "conv2d": ("conv", 3, (8, 8, 1)),
         "conv1d": ("conv", 3, (40, 1))}


def _timed(fn, n):
  """Median wall and CPU seconds of `n` calls of `fn` (which blocks until done)."""
  import numpy as np
  walls, cpus = [], []
  for _ in range(n):
    w, c = time.perf_counter(), time.process_time()
    fn()
    walls.append(time.perf_counter() - w)
    cpus.append(time.process_time() - c)
  return float(np.median(walls)), float(np.median(cpus))


def _load_baseline(path):
  with open(path) as fh:
    rows = [json.loads(line) for line in fh if line.strip().startswith("{")]
  return {(r["kernel"], r["support"]): r for r in rows if "kernel" in r}


def main(argv):
  del argv
  import jax
  import jax.numpy as jnp
  import jaxlib
  import numpy as np
  from distill import kernels, kip, krr, nt_compat
  import neural_tangents as nt
  from core.io import atomic_write_text
  if FLAGS.repeats < 1 or FLAGS.steps < 1:
    raise ValueError(f"--repeats and --steps must be >= 1, got {FLAGS.repeats}, {FLAGS.steps}")
  unknown = [c for c in FLAGS.cases if c not in CASES]
  if unknown:
    raise ValueError(f"unknown --cases {unknown}; choose from {sorted(CASES)}")
  baseline = _load_baseline(FLAGS.baseline) if FLAGS.baseline else {}
  stack = {"jax": jax.__version__, "jaxlib": jaxlib.__version__, "neural_tangents": nt.__version__,
           "backend": jax.default_backend(), "device": jax.devices()[0].device_kind,
           "nt_compat_supplied": list(nt_compat.SUPPLIED),
           "xla_workaround": nt_compat.XLA_WORKAROUND,
           "xla_flags": os.environ.get("XLA_FLAGS", "")}
  lines = [json.dumps(stack)]
  print(lines[0])
  head = (f"{'kernel':8s} {'n_s':>5s} {'K(t,s) s':>9s} {'cpu s':>7s} {'Mentries/s':>11s} "
          f"{'KIP step/s':>11s} {'cpu s/step':>10s}")
  print(head + ("  x kernel  x KIP (vs baseline, wall)" if baseline else ""))
  rng = np.random.default_rng(0)
  for case in FLAGS.cases:
    arch, depth, shape = CASES[case]
    kf = kernels.make_kernel_fn(kernels.KernelSpec(architecture=arch, depth=depth), shape)
    x_t = rng.normal(size=(FLAGS.targets,) + shape)
    for n_s in map(int, FLAGS.support_sizes):
      x_s = rng.normal(size=(n_s,) + shape)
      kernels.kernel_matrix(kf, x_t, x_s)  # compile
      t_k, c_k = _timed(lambda: kernels.kernel_matrix(kf, x_t, x_s), FLAGS.repeats)
      labels = np.arange(n_s) % 10
      support = kip.SupportSet(x=x_s, y=krr.centered_one_hot(labels, 10), labels=labels,
                               init_ids=np.arange(n_s))
      opt = kip.make_optimizer(0.01)
      lt = np.arange(FLAGS.kip_batch) % 10
      with kernels.x64():
        step = kip.make_kip_step(kf, opt, 1e-6, learn_labels=True)
        box = [kip.init_kip_state(support, opt)]
        batch = (jnp.asarray(x_t[:FLAGS.kip_batch]), jnp.asarray(krr.centered_one_hot(lt, 10)),
                 jnp.asarray(lt))

        def one_step():
          box[0], _ = step(box[0], *batch)
          jax.block_until_ready(box[0].x)
        one_step()  # compile
        t_s, c_s = _timed(one_step, FLAGS.steps)
      rate = FLAGS.targets * n_s / t_k / 1e6
      row = {"kernel": case, "support": n_s, "targets": FLAGS.targets,
             "kernel_matrix_s": t_k, "kernel_matrix_cpu_s": c_k, "entries_per_s": rate * 1e6,
             "kip_batch": FLAGS.kip_batch, "kip_steps_per_s": 1 / t_s, "kip_step_cpu_s": c_s,
             "jax": jax.__version__}
      text = (f"{case:8s} {n_s:5d} {t_k:9.3f} {c_k:7.3f} {rate:11.3f} {1 / t_s:11.2f} "
              f"{c_s:10.3f}")
      base = baseline.get((case, n_s))
      if base and base.get("targets") == FLAGS.targets and base.get("kip_batch") == FLAGS.kip_batch:
        row["kernel_speedup_vs_baseline"] = base["kernel_matrix_s"] / t_k
        row["kip_speedup_vs_baseline"] = row["kip_steps_per_s"] / base["kip_steps_per_s"]
        row["kernel_cpu_ratio_vs_baseline"] = base["kernel_matrix_cpu_s"] / c_k
        row["kip_cpu_ratio_vs_baseline"] = base["kip_step_cpu_s"] / c_s
        row["baseline_jax"] = base.get("jax")
        text += (f"  {row['kernel_speedup_vs_baseline']:7.2f}x "
                 f"{row['kip_speedup_vs_baseline']:6.2f}x (vs JAX {base.get('jax')})")
      print(text, flush=True)
      lines.append(json.dumps(row))
      print(lines[-1], flush=True)
  if FLAGS.out:
    atomic_write_text(FLAGS.out, "\n".join(lines) + "\n")


if __name__ == "__main__":
  app.run(main)
