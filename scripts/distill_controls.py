"""Distilled sets (DD, DC, DSA, DM, KIP, Label Solve) beside random real images under the
evaluation controls (labels x augmentation at evaluation x cost).

    python scripts/distill_controls.py --config=distill/configs/digits_matching.py --workdir=DIR
    python scripts/distill_controls.py --config=distill/configs/mnist1d_matching.py:quick \
        --workdir=DIR [--report_only]

Writes DIR/results.json / .csv, summary.json, table.md, controls.png, distilled_images.png;
a rerun with the same DIR skips finished cells and resumes interrupted method runs.
"""
import os
import time

from absl import flags

from core import cli, parallel
from experiments import distill_controls

cli.define_flags()
flags.DEFINE_bool("report_only", False, "only redraw table.md / PNGs from DIR/results.json")


def main(config, workdir):
  if flags.FLAGS.report_only:
    distill_controls.write_report(workdir, config)
    return
  parallel.use_compilation_cache(os.path.join(workdir, "jax_cache"))
  t0 = time.time()
  distill_controls.run_distill_controls(config, workdir)
  print(f"done in {time.time() - t0:.0f} s; table: {os.path.join(workdir, 'table.md')}")


if __name__ == "__main__":
  cli.run(main)
