"""Per-example GraNd throughput: activations path, chunked vmap(grad), per-example loop,
against an ordinary batched gradient on the same examples.

    python scripts/bench_scores.py [--dataset=mnist1d] [--model=cnn1d] [--n=2048] \
        [--n_loop=256] [--chunk_size=256]

Both compute ||d loss(x_i) / d theta||_2 for every example at a random init
(eval mode). The chunked path is `pruning.scores.grand_scores` (vmap(grad) on
chunks of `chunk_size` examples per device, pmapped over local devices); the
loop is `pruning.scores.grand_loop` (one jitted gradient per example). The activations path
is `pruning.grand_fast.grand_scores_fast` (per-layer norms from layer inputs and output
gradients: one forward and one backward pass). The ordinary batched gradient is one pmapped
jax.grad of the summed loss per batch of chunk_size examples per device (what a training step
costs, without the update). Prints examples/s of each, the ratios to the batched gradient,
and checks that the scores agree.
"""
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

from core import data as data_lib
from core import parallel
from core.losses import dense_targets, per_example_loss
from pruning import grand_fast, scores
from core.models import create_model

flags.DEFINE_string("dataset", "mnist1d", "digits or mnist1d")
flags.DEFINE_string("model", "cnn1d", "model name (core.models)")
flags.DEFINE_integer("n", 2048, "examples scored by the chunked path")
flags.DEFINE_integer("n_loop", 256, "examples scored by the per-example loop")
flags.DEFINE_integer("chunk_size", 256, "examples per device per chunk")
FLAGS = flags.FLAGS


def _timed(fn, reps=1):
  fn()  # compile / warm up
  t = time.perf_counter()
  for _ in range(reps):
    out = fn()
  return out, (time.perf_counter() - t) / reps


def main(argv):
  del argv
  # the 16,000 / 4,000 draw of the mnist1d sweep (cached on disk after its first use)
  kw = dict(num_train=16000, num_test=4000) if FLAGS.dataset == "mnist1d" else {}
  ds = data_lib.load_dataset(FLAGS.dataset, **kw).train
  big = ds.subset(ds.ids[:FLAGS.n])
  small = ds.subset(ds.ids[:FLAGS.n_loop])
  model = create_model({"name": FLAGS.model}, num_classes=ds.num_classes)
  variables = jax.device_get(model.init(jax.random.PRNGKey(0), jnp.zeros((1,) + ds.example_shape)))
  n_params = sum(int(np.size(l)) for l in jax.tree.leaves(variables["params"]))
  vm, t_vm = _timed(lambda: scores.grand_scores(model, variables, big, chunk_size=FLAGS.chunk_size), 2)
  warm = ds.subset(ds.ids[:2])
  scores.grand_loop(model, variables, warm)  # compile
  t = time.perf_counter()
  lp = scores.grand_loop(model, variables, small)
  t_lp = time.perf_counter() - t
  err = float(np.max(np.abs(vm[:len(lp)] - lp) / (np.abs(lp) + 1e-8)))
  r_vm, r_lp = len(big) / t_vm, len(small) / t_lp
  print(f"GraNd on {FLAGS.dataset}/{FLAGS.model} ({n_params} params), "
        f"{jax.local_device_count()} {jax.default_backend()} device(s)")
  print(f"  chunked vmap+pmap : {r_vm:10.1f} examples/s  ({len(big)} examples, chunk "
        f"{FLAGS.chunk_size}/device)")
  print(f"  per-example loop  : {r_lp:10.1f} examples/s  ({len(small)} examples)")
  print(f"  speed-up          : {r_vm / r_lp:10.1f}x   (max relative difference {err:.1e})")
  bs = FLAGS.chunk_size * jax.local_device_count()
  # Alternate the three timed paths and keep each one's best of 5 (the machine is shared).
  run_fa = lambda: grand_fast.grand_scores_fast(model, variables, big, batch_size=bs)
  run_bg = lambda: _batched_grad(model, variables, big, bs)
  run_vm = lambda: scores.grand_scores(model, variables, big, chunk_size=FLAGS.chunk_size)
  fa = run_fa()
  run_bg()
  t_fa = t_bg = t_vm = float("inf")
  for _ in range(5):
    for which, fn in (("fa", run_fa), ("bg", run_bg), ("vm", run_vm)):
      t = time.perf_counter()
      fn()
      dt = time.perf_counter() - t
      if which == "fa":
        t_fa = min(t_fa, dt)
      elif which == "bg":
        t_bg = min(t_bg, dt)
      else:
        t_vm = min(t_vm, dt)
  r_vm = len(big) / t_vm
  err_fa = float(np.max(np.abs(fa - vm) / (np.abs(vm) + 1e-8)))
  r_fa, r_bg = len(big) / t_fa, len(big) / t_bg
  print(f"  activations path  : {r_fa:10.1f} examples/s  ({grand_fast.last_path()}; max "
        f"relative difference to vmap {err_fa:.1e})")
  print(f"  batched gradient  : {r_bg:10.1f} examples/s  (ordinary jax.grad of the batch loss)")
  print(f"  interleaved, best of 5: vmap {r_vm:.1f}, activations {r_fa:.1f}, batched gradient "
        f"{r_bg:.1f} examples/s")
  print(f"  ratio to batched gradient: vmap {r_vm / r_bg:.3f}, activations {r_fa / r_bg:.3f}")


def _batched_grad(model, variables, ds, batch_size):
  """An ordinary data-parallel gradient of the summed loss over every batch of `ds`."""
  devices = jax.local_devices()
  params = variables["params"]

  def fn(p, x, y):
    loss = lambda p: jnp.sum(per_example_loss(model.apply({"params": p}, x, train=False), y,
                                              "cross_entropy"))
    return parallel.pmean(jax.grad(loss)(p))

  if "_p" not in _batched_grad.__dict__:
    _batched_grad._p = parallel.pmap(fn, devices)
  rp = parallel.replicate(params, devices)
  out = None
  for start in range(0, len(ds) - batch_size + 1, batch_size):
    x, y = ds.gather(np.arange(start, start + batch_size))
    out = _batched_grad._p(rp, *parallel.shard((x, dense_targets(y, ds.num_classes)), devices))
  jax.block_until_ready(out)


if __name__ == "__main__":
  app.run(main)
