"""Training throughput (examples/s) on 1 device vs all local devices, in one run.

    python scripts/bench_train.py [--config=core/configs/digits_cnn.py] [--devices=8] \
        [--steps=50] [--batch_size=256]

On CPU, --devices fakes that many XLA host devices (XLA_FLAGS), which share the
same cores: the ratio then measures the pmap / sharding overhead, not a speedup.
On a GPU/TPU host it uses the real accelerators (--devices is ignored).
Times the pmapped train step only (host batch assembly + transfer included),
after a warm-up that compiles it; no evaluation, no checkpoints.
"""
import os
import sys
import time

from absl import app, flags
from ml_collections import config_flags

flags.DEFINE_integer("devices", 8, "Fake CPU devices (CPU backend only).")
flags.DEFINE_integer("steps", 50, "Timed steps per setting.")
flags.DEFINE_integer("batch_size", 256, "Global batch size (divisible by --devices).")
config_flags.DEFINE_config_file("config", "core/configs/digits_cnn.py", "Config file.",
                                lock_config=False)
FLAGS = flags.FLAGS


def bench(config, data, num_devices, steps):
  import jax
  import numpy as np
  from core import parallel, train
  from core.losses import dense_targets
  from core.models import create_model
  from core.optim import make_optimizer
  from core.sampler import IndexSampler
  from core.state import create_train_state
  devices = parallel.local_devices(num_devices)
  model = create_model(config.model, num_classes=data.num_classes)
  tx, _ = make_optimizer(config.optimizer, steps + 3)
  state = create_train_state(config, model, data.example_shape, 0, tx=tx)
  p_train = parallel.pmap(train._make_train_step(model, tx, config.loss, 0, False), devices,
                          donate_argnums=(0,))
  rstate = parallel.replicate(state, devices)
  x, y, ids = data.train.x, dense_targets(data.train.y, data.num_classes), data.train.ids.astype(np.int32)
  sampler = IndexSampler(data.train.ids, config.batch_size, 0)

  def run(s0, n):
    nonlocal rstate
    for s in range(s0, s0 + n):
      pos = sampler.positions(s)
      rstate, m = p_train(rstate, parallel.shard({"x": x[pos], "y": y[pos], "id": ids[pos],
                                                  "weight": np.ones(len(pos), np.float32)},
                                                 devices))
    jax.block_until_ready(m)

  run(0, 3)  # compile + warm up
  t = time.perf_counter()
  run(3, steps)
  return steps * config.batch_size / (time.perf_counter() - t)


def main(argv):
  del argv
  import jax
  from core import train
  config = FLAGS.config
  config.batch_size = FLAGS.batch_size
  data = train.load_data(config)
  n_all = jax.local_device_count()
  print(f"backend={jax.default_backend()} local_devices={n_all} model={config.model.name} "
        f"dataset={data.name} global_batch={config.batch_size} steps={FLAGS.steps}")
  r1 = bench(config, data, 1, FLAGS.steps)
  print(f"  1 device : {r1:10.0f} examples/s")
  rn = bench(config, data, n_all, FLAGS.steps)
  print(f"  {n_all} devices: {rn:10.0f} examples/s")
  print(f"  ratio ({n_all} / 1): {rn / r1:.2f}"
        + ("  (fake CPU devices share cores: this is pmap overhead, not speedup)"
           if jax.default_backend() == "cpu" else ""))


if __name__ == "__main__":
  # Fake CPU devices must be requested before JAX starts.
  n = next((a.split("=", 1)[1] for a in sys.argv if a.startswith("--devices=")), "8")
  if "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                               f" --xla_force_host_platform_device_count={n}")
  app.run(main)
