"""Golden NTK / NNGP values from the OLD pinned stack, for the kernel tests on a newer JAX.

    python scripts/make_golden_kernels.py [--out=tests/golden] [--allow_any_jax]

Computes, in float64 with `jax.jit(kernel_fn)` (no `nt.batch`), the NNGP and NTK of

  fc1     `distill.kernels.fc_network(depth=1)`  inputs (n, 8, 8, 1)  (digits-shaped)
  fc3     `distill.kernels.fc_network(depth=3)`  inputs (n, 8, 8, 1)
  conv2d  `distill.kernels.conv_network(depth=3, spatial_dims=2)` (the KIP ConvNet: 3 x
          [Conv 3x3 SAME -> ReLU -> AvgPool 2x2 stride 2] -> Flatten -> Dense)  inputs (n, 8, 8, 1)
  conv1d  `distill.kernels.conv_network(depth=3, spatial_dims=1)`  inputs (n, 40, 1) (MNIST-1D)

(W_std = sqrt(2), b_std = 0.1, NTK parameterisation) on fixed inputs x1 (n1 rows) and x2 (n2
rows) drawn from N(0, 1) with seed 0, and stores one file per case, tests/golden/<case>.npz:
x1, x2, and nngp_12 / ntk_12 = K(x1, x2) (cross kernels), nngp_11 / ntk_11 = K(x1, None)
(self-kernels, diagonal included), plus `meta` (a JSON string: jax, jaxlib, neural-tangents
versions and the architecture). tests/test_nt_compat.py compares the running stack to them.

Regenerate on the old stack (JAX 0.5.3 + neural-tangents 0.6.5, no TensorFlow needed since
distill.nt_compat stubs neural_tangents.experimental), from the repository root:

    python3.11 -m venv /tmp/venv-golden
    /tmp/venv-golden/bin/pip install jax==0.5.3 jaxlib==0.5.3 numpy==2.4.6 frozendict ml-collections
    /tmp/venv-golden/bin/pip install --no-deps neural-tangents==0.6.5
    PYTHONPATH=. /tmp/venv-golden/bin/python scripts/make_golden_kernels.py

The committed files were made with the project's .venv of the time (the same versions). The
script refuses to run on another JAX unless --allow_any_jax (useful only to inspect drift).
"""
from __future__ import annotations

import argparse
import json
import math
import os

GOLDEN_JAX = "0.5.3"
SEED = 0
# case -> (builder name, depth, example shape, n1, n2)
CASES = {
    "fc1": ("fc", 1, (8, 8, 1), 10, 7),
    "fc3": ("fc", 3, (8, 8, 1), 10, 7),
    "conv2d": ("conv", 3, (8, 8, 1), 6, 5),
    "conv1d": ("conv", 3, (40, 1), 6, 5),
}
W_STD, B_STD = math.sqrt(2.0), 0.1


def case_inputs(case: str):
  """(x1, x2) float64 inputs of `case` (deterministic)."""
  import numpy as np
  _, _, shape, n1, n2 = CASES[case]
  rng = np.random.default_rng([SEED, list(CASES).index(case)])
  return rng.normal(size=(n1,) + shape), rng.normal(size=(n2,) + shape)


def case_network(case: str):
  """stax (init_fn, apply_fn, kernel_fn) of `case`, built by distill.kernels."""
  from distill import kernels
  arch, depth, shape, _, _ = CASES[case]
  if arch == "fc":
    return kernels.fc_network(depth, W_STD, B_STD, "ntk")
  return kernels.conv_network(depth, W_STD, B_STD, "ntk", spatial_dims=len(shape) - 1)


def x64():
  """float64 context: core.precision.x64 once it exists, else JAX's own (0.5: experimental)."""
  try:
    from core.precision import x64 as core_x64
    return core_x64()
  except ImportError:
    pass
  import jax
  if hasattr(jax, "enable_x64"):
    return jax.enable_x64(True)
  from jax.experimental import enable_x64
  return enable_x64()


def compute_case(case: str, x1, x2):
  """dict of float64 numpy kernels of `case` (call with x64 enabled)."""
  import jax
  import numpy as np
  _, _, kernel_fn = case_network(case)
  kf = jax.jit(kernel_fn, static_argnames="get")
  out = {}
  for get in ("nngp", "ntk"):
    out[f"{get}_12"] = np.asarray(kf(x1, x2, get=get))
    out[f"{get}_11"] = np.asarray(kf(x1, None, get=get))
  for k, v in out.items():
    if v.dtype != np.float64:
      raise RuntimeError(f"{case} {k}: kernel dtype {v.dtype}, expected float64 (x64 not on?)")
  return out


def main():
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "tests", "golden"))
  p.add_argument("--allow_any_jax", action="store_true")
  args = p.parse_args()
  from distill import nt_compat  # noqa: F401  (first: before neural_tangents)
  import jax
  import jaxlib
  import neural_tangents as nt
  if jax.__version__ != GOLDEN_JAX and not args.allow_any_jax:
    raise SystemExit(f"golden kernels come from JAX {GOLDEN_JAX}; this is JAX {jax.__version__}. "
                     "Use the old stack (see the docstring) or pass --allow_any_jax.")
  from core.io import atomic_save_npz
  os.makedirs(args.out, exist_ok=True)
  with x64():
    for case in CASES:
      x1, x2 = case_inputs(case)
      kernels = compute_case(case, x1, x2)
      arch, depth, shape, _, _ = CASES[case]
      meta = json.dumps({"jax": jax.__version__, "jaxlib": jaxlib.__version__,
                         "neural_tangents": nt.__version__, "architecture": arch, "depth": depth,
                         "example_shape": list(shape), "W_std": W_STD, "b_std": B_STD,
                         "parameterization": "ntk", "seed": SEED})
      path = os.path.join(args.out, f"{case}.npz")
      atomic_save_npz(path, x1=x1, x2=x2, meta=meta, **kernels)
      print(f"{path}: " + ", ".join(f"{k}{v.shape}" for k, v in kernels.items()))


if __name__ == "__main__":
  main()
