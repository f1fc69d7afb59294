"""The trainer's throughput on two Python environments (e.g. JAX 0.5.3 vs JAX 0.10.2), in one run.

    python scripts/bench_stacks.py --python_a=/tmp/venv053/bin/python \
        --python_b=.venv/bin/python [--reps=5] [--devices=8] [--steps=50]

Runs scripts/bench_train.py (the pmapped train step of core/configs/digits_cnn.py on 1 device and
on --devices fake CPU devices) alternately under each interpreter, --reps times each, so both see
the same machine load, with this repository on PYTHONPATH; prints each run's examples/s, the
medians and the ratios b / a. The old environment needs only JAX, flax, optax, orbax-checkpoint,
ml_collections, numpy, scikit-learn, absl-py and tqdm (pins: `git show 9f260d1^:requirements.lock`).
"""
import argparse
import os
import re
import statistics
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PATTERN = re.compile(r"^\s*(\d+) devices?\s*:\s*([\d.]+) examples/s", re.M)


def run_once(python: str, devices: int, steps: int) -> tuple[str, dict]:
  env = dict(os.environ, PYTHONPATH=REPO, JAX_PLATFORMS="cpu")
  env.pop("XLA_FLAGS", None)
  out = subprocess.run([python, os.path.join(REPO, "scripts", "bench_train.py"),
                        f"--devices={devices}", f"--steps={steps}"], cwd=REPO, env=env,
                       capture_output=True, text=True, timeout=900)
  if out.returncode:
    raise SystemExit(f"{python} scripts/bench_train.py failed (rc {out.returncode}):\n"
                     f"{out.stderr[-2000:]}")
  version = subprocess.run([python, "-c", "import jax, flax; print(jax.__version__, "
                            "flax.__version__)"], capture_output=True, text=True).stdout.split()
  rates = {int(n): float(r) for n, r in PATTERN.findall(out.stdout)}
  if len(rates) != 2:
    raise SystemExit(f"could not read the throughput from {python}'s output:\n{out.stdout}")
  return f"jax {version[0]} flax {version[1]}", rates


def main(argv=None) -> None:
  ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  ap.add_argument("--python_a", required=True, help="interpreter of environment a (baseline)")
  ap.add_argument("--python_b", default=sys.executable, help="interpreter of environment b")
  ap.add_argument("--reps", type=int, default=5)
  ap.add_argument("--devices", type=int, default=8)
  ap.add_argument("--steps", type=int, default=50)
  a = ap.parse_args(argv)
  results = {"a": [], "b": []}
  names = {}
  for rep in range(a.reps):
    for key, python in (("a", a.python_a), ("b", a.python_b)):
      names[key], rates = run_once(python, a.devices, a.steps)
      results[key].append(rates)
      print(f"rep {rep} {key} ({names[key]}): " + ", ".join(
          f"{n} device{'s' if n > 1 else ''} {r:.0f} ex/s" for n, r in sorted(rates.items())),
            flush=True)
  for n in sorted(results["a"][0]):
    med = {k: statistics.median(r[n] for r in results[k]) for k in results}
    print(f"{n} device{'s' if n > 1 else ''}: a {med['a']:.0f} ex/s ({names['a']}), "
          f"b {med['b']:.0f} ex/s ({names['b']}), ratio b / a = {med['b'] / med['a']:.2f}")


if __name__ == "__main__":
  main()
