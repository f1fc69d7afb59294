"""Peak resident memory of one EL2N scoring pass: record files vs in memory, by dataset size.

    python scripts/bench_memory.py [--sizes=200000,2000000] [--data_dir=/tmp/bench_mem] \
        [--skip_numpy_above=0] [--out=bench_memory.json]

Each (size, source) runs in a fresh subprocess (experiments.memory: /proc VmHWM) on MNIST-1D
record sets written once under --data_dir (the generator makes ~5k examples/s on one core, so
2M records take minutes). Prints the rows and the growth from the smallest to the largest
size, in MB and bytes per added example.
"""
from __future__ import annotations

import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags  # noqa: E402

flags.DEFINE_string("sizes", "200000,2000000", "MNIST-1D training-set sizes")
flags.DEFINE_string("data_dir", "/tmp/bench_mem", "where record sets are written (reused)")
flags.DEFINE_integer("predict_batch_size", 1024, "scoring batch size")
flags.DEFINE_integer("skip_numpy_above", 0, "skip the in-memory pass above this size (0: none)")
flags.DEFINE_string("out", "", "JSON file for the numbers ('' = print only)")
FLAGS = flags.FLAGS


def main(argv):
  del argv
  from experiments import memory
  t = time.time()
  sizes = [int(v) for v in FLAGS.sizes.split(",") if v.strip()]
  skip = [(n, "numpy") for n in sizes if FLAGS.skip_numpy_above and n > FLAGS.skip_numpy_above]
  print(f"peak RSS of one EL2N scoring pass (MNIST-1D, 1-D CNN, batch "
        f"{FLAGS.predict_batch_size}, 1 CPU device), fresh process each:")
  res = memory.measure(sizes, FLAGS.data_dir, predict_batch_size=FLAGS.predict_batch_size,
                       skip=skip)
  for src, g in res["growth"].items():
    print(f"  growth {g['from_n']} -> {g['to_n']} examples, {src:7s}: {g['mb']:+8.1f} MB "
          f"({g['bytes_per_added_example']:.1f} bytes per added example)")
  res["wall_s"] = time.time() - t
  print(f"total wall time {res['wall_s']:.0f}s")
  if FLAGS.out:
    from core.io import atomic_write_text
    atomic_write_text(FLAGS.out, json.dumps(res, indent=1))


if __name__ == "__main__":
  app.run(main)
