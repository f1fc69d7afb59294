"""Throughput of the distillation kernels: kernel-matrix entries/s and KIP steps/s.

    python scripts/bench_distill.py [--support_sizes=10,100] [--targets=500] [--steps=10]

For the FC NTK (depth 1, digits 8x8x1), the 2-D ConvNet NTK (depth 3, 8x8x1)
and the 1-D ConvNet NTK (depth 3, MNIST-1D 40x1), at each support size: the
time of K(targets, support) with `kernel_matrix` (nt.batch, float64) after a
warm-up call, and KIP steps/s (target batch of `--kip_batch`). Random inputs;
prints one table row per case and a JSON line per case.
"""
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
FLAGS = flags.FLAGS

CASES = {"fc": ("fc", 1, (8, 8, 1)), "conv2d": ("conv", 3, (8, 8, 1)), "conv1d": ("conv", 3, (40, 1))}


def main(argv):
  del argv
  import jax
  import jax.numpy as jnp
  import numpy as np
  from distill import kernels, kip, krr
  print(f"backend={jax.default_backend()} devices={jax.devices()[0].device_kind}")
  print(f"{'kernel':8s} {'n_s':>5s} {'K(t,s) s':>9s} {'Mentries/s':>11s} {'KIP step/s':>11s}")
  rng = np.random.default_rng(0)
  for case in FLAGS.cases:
    arch, depth, shape = CASES[case]
    kf = kernels.make_kernel_fn(kernels.KernelSpec(architecture=arch, depth=depth), shape)
    x_t = rng.normal(size=(FLAGS.targets,) + shape)
    for n_s in map(int, FLAGS.support_sizes):
      x_s = rng.normal(size=(n_s,) + shape)
      kernels.kernel_matrix(kf, x_t, x_s)  # compile
      t0 = time.perf_counter()
      kernels.kernel_matrix(kf, x_t, x_s)
      t_k = time.perf_counter() - t0
      labels = np.arange(n_s) % 10
      support = kip.SupportSet(x=x_s, y=krr.centered_one_hot(labels, 10), labels=labels,
                               init_ids=np.arange(n_s))
      opt = kip.make_optimizer(0.01)
      lt = np.arange(FLAGS.kip_batch) % 10
      with kernels.x64():
        step = kip.make_kip_step(kf, opt, 1e-6, learn_labels=True)
        state = kip.init_kip_state(support, opt)
        batch = (jnp.asarray(x_t[:FLAGS.kip_batch]), jnp.asarray(krr.centered_one_hot(lt, 10)),
                 jnp.asarray(lt))
        state, m = step(state, *batch)
        jax.block_until_ready(state.x)
        t0 = time.perf_counter()
        for _ in range(FLAGS.steps):
          state, m = step(state, *batch)
        jax.block_until_ready(state.x)
        t_s = (time.perf_counter() - t0) / FLAGS.steps
      rate = FLAGS.targets * n_s / t_k / 1e6
      print(f"{case:8s} {n_s:5d} {t_k:9.3f} {rate:11.3f} {1 / t_s:11.2f}", flush=True)
      print(json.dumps({"kernel": case, "support": n_s, "targets": FLAGS.targets,
                        "kernel_matrix_s": t_k, "entries_per_s": rate * 1e6,
                        "kip_batch": FLAGS.kip_batch, "kip_steps_per_s": 1 / t_s}), flush=True)


if __name__ == "__main__":
  app.run(main)
