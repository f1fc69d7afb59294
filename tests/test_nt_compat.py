"""distill.nt_compat: neural-tangents 0.6.5 on current JAX, checked against golden kernels.

* The layer is a no-op where JAX still has the names (a subprocess pre-sets every name it would
  supply; on JAX < 0.6 nothing of JAX is supplied at all) and supplies them where JAX lacks them.
* NNGP / NTK of FC (depth 1, 3), the 2-D KIP ConvNet and the 1-D ConvNet on the running stack
  vs tests/golden/*.npz (made on JAX 0.5.3 by scripts/make_golden_kernels.py), float64, both
  `jax.jit(kernel_fn)` and `nt.batch` (through `distill.kernels.kernel_matrix`):
  - cross kernels K(x1, x2) and off-diagonal self-kernel entries: 1e-10 relative (measured:
    <= 1e-15 between JAX 0.5.3 and 0.10.2);
  - self-kernel diagonals: the NNGP also 1e-10; the NTK `DIAG_RTOL_PER_LAYER * depth`. On the
    diagonal the ReLU correlation is c = 1 up to rounding, c = 1 - delta with delta a few ulps
    depending on the summation order of the dot products (which XLA versions change). The NNGP
    map sin(t) + (pi - t) cos(t) is flat at t = 0 (error O(t^2) ~ 1e-15), but the NTK factor
    (pi - t) / (2 pi) moves by t / (2 pi) with t = arccos(1 - delta) ~ sqrt(2 delta): for delta
    up to 64 ulps (1.4e-14), t <= 1.7e-7, i.e. <= 2.7e-8 relative per ReLU layer, hence 4e-8
    per layer. Measured 0.5.3 vs 0.10.2: 3.4e-9 (fc1), 1.4e-8 (fc3), 5.6e-10 / 5.1e-10 (convs);
    vs the closed form with c = 1 exactly: 0.5.3 1.4e-9, 0.10.2 1.4e-8 (fc3) - neither version
    is exact there; the difference is rounding, not a change of kernel.
* The XLA:CPU crash (jaxlib >= 0.8 on AVX-512 CPUs): a jitted float64 conv + reduce_window in
  pure JAX, in a subprocess, SIGSEGVs without the workaround (`--xla_cpu_max_isa=AVX2`, which
  `distill.nt_compat` adds to XLA_FLAGS before JAX's CPU backend starts) and gives the numpy
  result with it.
"""
from __future__ import annotations

import importlib.metadata
import json
import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from distill import nt_compat

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GOLDEN = os.path.join(REPO, "tests", "golden")
sys.path.insert(0, os.path.join(REPO, "scripts"))
import make_golden_kernels as golden  # noqa: E402

CROSS_RTOL = 1e-10
DIAG_RTOL_PER_LAYER = 4e-8
JAX_NAMES = ["jax.core.Jaxpr", "jax.core.JaxprEqn", "jax.core.Literal", "jax.core.Var",
             "jax.core.Primitive", "jax.core.ShapedArray", "jax.util", "jax.util.safe_map",
             "jax.util.safe_zip", "jax.interpreters.ad.zeros_like_p"]


def _version(dist: str) -> tuple[int, ...]:
  return tuple(int(p) for p in importlib.metadata.version(dist).split(".")[:2])


def _run(code: str, env=None, timeout=240) -> subprocess.CompletedProcess:
  return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=REPO, env=env,
                        capture_output=True, text=True, timeout=timeout)


# ---------------------------------------------------------------------------- the layer


def test_supplied_names_are_jaxs_own_objects():
  import jax
  import jax.extend.core as ext
  for name in nt_compat.SUPPLIED:
    assert name in JAX_NAMES + [nt_compat._EXPERIMENTAL], name
  for name in ("Jaxpr", "JaxprEqn", "Literal", "Var", "Primitive"):
    assert getattr(jax.core, name) is getattr(ext, name)
  from jax.util import safe_map, safe_zip
  assert safe_zip([1, 2], "ab") == [(1, "a"), (2, "b")]
  assert safe_map(lambda a, b: a + b, [1, 2], [3, 4]) == [4, 6]
  if "jax.util.safe_zip" in nt_compat.SUPPLIED:
    with pytest.raises(ValueError, match="length mismatch"):
      safe_zip([1, 2], [1])
  assert nt_compat.apply() == nt_compat.SUPPLIED  # idempotent: nothing added twice
  assert len(set(nt_compat.SUPPLIED)) == len(nt_compat.SUPPLIED)
  if _version("jax") < (0, 6):  # the pinned old stack has every name: no-op there
    assert not [n for n in nt_compat.SUPPLIED if n.startswith("jax")], nt_compat.SUPPLIED


def test_noop_where_jax_has_the_names():
  """Pre-set every name the layer supplies: it must keep ours and record nothing of JAX."""
  out = _run("""
    import json, sys, types
    import jax, jax.core, jax.interpreters.ad as ad
    sentinels = {n: object() for n in ["Jaxpr", "JaxprEqn", "Literal", "Var", "Primitive",
                                       "ShapedArray"]}
    for n, s in sentinels.items():
      setattr(jax.core, n, s)
    util = types.ModuleType("jax.util"); util.safe_map = map; util.safe_zip = zip
    sys.modules["jax.util"] = util; jax.util = util
    ad.zeros_like_p = zeros = object()
    from distill import nt_compat
    import jax.util as u2
    kept = (all(getattr(jax.core, n) is s for n, s in sentinels.items()) and u2 is util
            and util.safe_map is map and util.safe_zip is zip and ad.zeros_like_p is zeros)
    import neural_tangents
    print(json.dumps({"kept": kept, "supplied": nt_compat.SUPPLIED,
                      "tf": "tensorflow" in sys.modules}))
  """)
  assert out.returncode == 0, out.stderr[-3000:]
  res = json.loads(out.stdout.strip().splitlines()[-1])
  assert res["kept"]
  assert res["supplied"] == [nt_compat._EXPERIMENTAL]
  assert not res["tf"], "neural_tangents pulled in TensorFlow despite the experimental stub"


def test_experimental_stub_names_itself():
  import neural_tangents as nt
  if nt_compat._EXPERIMENTAL not in nt_compat.SUPPLIED:
    pytest.skip("neural_tangents was imported before distill.nt_compat in this process")
  with pytest.raises(AttributeError, match="distill.nt_compat"):
    nt.experimental.empirical_ntk_fn_tf  # noqa: B018


# ---------------------------------------------------------------------------- golden kernels


def _golden(case):
  z = np.load(os.path.join(GOLDEN, f"{case}.npz"), allow_pickle=False)
  return {k: z[k] for k in z.files}


def _close_cross(got, want, what):
  err = np.max(np.abs(got - want) / np.abs(want))
  assert err < CROSS_RTOL, f"{what}: max relative difference {err:.2e} >= {CROSS_RTOL:g}"


def _close_self(got, want, kind, depth, what):
  off = ~np.eye(len(want), dtype=bool)
  _close_cross(got[off], want[off], what + " off-diagonal")
  tol = CROSS_RTOL if kind == "nngp" else DIAG_RTOL_PER_LAYER * depth
  err = np.max(np.abs(np.diag(got) - np.diag(want)) / np.abs(np.diag(want)))
  assert err < tol, f"{what} diagonal: max relative difference {err:.2e} >= {tol:g}"


def test_golden_files_are_from_the_old_stack():
  for case in golden.CASES:
    g = _golden(case)
    meta = json.loads(str(g["meta"]))
    assert meta["jax"] == golden.GOLDEN_JAX and meta["neural_tangents"] == "0.6.5", meta
    x1, x2 = golden.case_inputs(case)  # the script's inputs are reproducible
    np.testing.assert_array_equal(g["x1"], x1)
    np.testing.assert_array_equal(g["x2"], x2)
    assert g["ntk_12"].dtype == np.float64 and g["ntk_12"].shape == (len(x1), len(x2))


@pytest.mark.parametrize("case", list(golden.CASES))
def test_kernels_match_golden(case):
  import jax
  from distill import kernels
  g = _golden(case)
  depth = golden.CASES[case][1]
  with golden.x64():
    got = golden.compute_case(case, g["x1"], g["x2"])  # jax.jit(kernel_fn), no nt.batch
    for kind in ("nngp", "ntk"):
      _close_cross(got[f"{kind}_12"], g[f"{kind}_12"], f"{case} {kind} K(x1, x2)")
      _close_self(got[f"{kind}_11"], g[f"{kind}_11"], kind, depth, f"{case} {kind} K(x1, x1)")
      # nt.batch in blocks of 3 rows (pads 10 -> 12 / 6 -> 6 rows), through kernel_matrix
      _, _, kernel_fn = golden.case_network(case)
      kf = jax.jit(lambda a, b, kernel_fn=kernel_fn, kind=kind: kernel_fn(a, b, kind))
      k12 = kernels.kernel_matrix(kf, g["x1"], g["x2"], batch_size=3)
      k11 = kernels.kernel_matrix(kf, g["x1"], g["x1"], batch_size=3)
      assert k12.dtype == np.float64
      _close_cross(k12, g[f"{kind}_12"], f"{case} {kind} nt.batch K(x1, x2)")
      _close_self(k11, g[f"{kind}_11"], kind, depth, f"{case} {kind} nt.batch K(x1, x1)")


def test_fc_golden_matches_closed_form():
  """The golden FC kernels themselves agree with our arc-cosine recursion."""
  from distill import kernels
  for case in ("fc1", "fc3"):
    g = _golden(case)
    depth = golden.CASES[case][1]
    with golden.x64():
      nngp, ntk = kernels.analytic_fc_kernel(g["x1"], g["x2"], depth=depth)
      nngp11, ntk11 = kernels.analytic_fc_kernel(g["x1"], None, depth=depth)
      _close_cross(np.asarray(nngp), g["nngp_12"], f"{case} nngp closed form")
      _close_cross(np.asarray(ntk), g["ntk_12"], f"{case} ntk closed form")
      _close_self(np.asarray(nngp11), g["nngp_11"], "nngp", depth, f"{case} nngp closed form")
      _close_self(np.asarray(ntk11), g["ntk_11"], "ntk", depth, f"{case} ntk closed form")


def test_avgpool_default_stride_is_one():
  """neural-tangents' AvgPool defaults to stride 1 (ours pass strides=window explicitly)."""
  from neural_tangents import stax
  init_fn, _, _ = stax.AvgPool((2, 2))
  shape, _ = init_fn(None, (1, 8, 8, 1))  # (output shape, parameters)
  assert tuple(shape) == (1, 7, 7, 1)
  init_fn, _, _ = stax.AvgPool((2, 2), strides=(2, 2), padding="VALID")
  assert tuple(init_fn(None, (1, 8, 8, 1))[0]) == (1, 4, 4, 1)


# ---------------------------------------------------------------------------- the XLA:CPU crash

REPRO = """
import sys
import numpy as np
{prelude}
import jax
jax.config.update("jax_enable_x64", True)
from jax import lax

def f(x, w):  # what neural-tangents emits for Conv -> AvgPool on the spatial covariance
  y = lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=("NCHW", "OIHW", "NCHW"))
  y = y.reshape(4, 4, 8, 8, 8, 8)
  return lax.reduce_window(y, 0., lax.add, (1, 1, 2, 2, 2, 2), (1, 1, 2, 2, 2, 2), "VALID")

x = np.random.default_rng(0).normal(size=(1024, 1, 8, 8))
w = np.eye(3)[None, None]  # a diagonal 3x3 filter
np.save(sys.argv[1], np.asarray(jax.jit(f)(x, w)))
"""


def _repro_expected():
  x = np.random.default_rng(0).normal(size=(1024, 1, 8, 8))
  p = np.pad(x[:, 0], ((0, 0), (1, 1), (1, 1)))
  y = sum(p[:, a:a + 8, a:a + 8] for a in range(3)).reshape(4, 4, 8, 8, 8, 8)
  y = y.reshape(4, 4, 4, 2, 4, 2, 4, 2, 4, 2)
  return y.sum(axis=(3, 5, 7, 9))


def _env(flags: str):
  env = dict(os.environ)
  kept = [f for f in env.get("XLA_FLAGS", "").split() if not f.startswith("--xla_cpu_max_isa")]
  env["XLA_FLAGS"] = " ".join(kept + ([flags] if flags else []))
  env["JAX_PLATFORMS"] = "cpu"
  env.pop(nt_compat.ISA_ENV, None)
  return env


def _avx512() -> bool:
  try:
    with open("/proc/cpuinfo") as fh:
      return "avx512f" in fh.read()
  except OSError:
    return False


@pytest.mark.parametrize("workaround", ["nt_compat", "flag"])
def test_conv_reduce_window_correct_with_workaround(workaround, tmp_path):
  out = tmp_path / "y.npy"
  prelude = "import distill.nt_compat" if workaround == "nt_compat" else ""
  flags = "" if workaround == "nt_compat" else "--xla_cpu_max_isa=AVX2"
  res = subprocess.run([sys.executable, "-c", REPRO.format(prelude=prelude), str(out)], cwd=REPO,
                       env=_env(flags), capture_output=True, text=True, timeout=240)
  assert res.returncode == 0, f"rc={res.returncode}\n{res.stderr[-3000:]}"
  np.testing.assert_allclose(np.load(out), _repro_expected(), rtol=1e-13, atol=1e-12)


def test_conv_reduce_window_crashes_without_workaround(tmp_path):
  if _version("jaxlib") < (0, 8):
    pytest.skip(f"jaxlib {importlib.metadata.version('jaxlib')} < 0.8 does not crash")
  if not _avx512():
    pytest.skip("no AVX-512 on this CPU: the crash needs it")
  res = subprocess.run([sys.executable, "-c", REPRO.format(prelude=""), str(tmp_path / "y.npy")],
                       cwd=REPO, env=_env(""), capture_output=True, text=True, timeout=240)
  assert res.returncode == -signal.SIGSEGV, (
      f"expected SIGSEGV (XLA:CPU float64 conv on AVX-512), got rc={res.returncode}; if it now "
      f"passes, XLA fixed it and distill.nt_compat's ISA flag can go\n{res.stderr[-2000:]}")


def test_entry_point_start_up_leaves_the_backend_unstarted(tmp_path):
  """What every entry point does before the first computation (core.cli's start-up and the
  compilation cache) must not start JAX's CPU backend, or distill's ISA cap comes too late."""
  res = _run(f"""
      from core import parallel
      parallel.maybe_initialize_distributed(None, None, None)
      parallel.use_compilation_cache({str(tmp_path / 'cache')!r})
      from jax._src import xla_bridge
      assert not xla_bridge._backends, "the backend started"
      import distill.nt_compat as n
      print("missed", n.XLA_WORKAROUND_MISSED)
      """, env=_env(""))
  assert res.returncode == 0, res.stderr[-3000:]
  assert "missed None" in res.stdout


def test_conv_kernel_refuses_instead_of_crashing_when_the_cap_came_too_late():
  """The backend started before distill was imported: a ConvNet kernel raises a clear error
  naming the flag, where XLA:CPU would SIGSEGV; the FC kernel still runs."""
  if _version("jaxlib") < (0, 8) or not _avx512():
    pytest.skip("the cap is not needed on this CPU / jaxlib")
  res = _run("""
      import jax.numpy as jnp
      jnp.ones(3).sum().block_until_ready()  # the backend starts first
      import warnings
      warnings.simplefilter("ignore")
      from distill import kernels
      fc = kernels.make_kernel_fn(kernels.KernelSpec(architecture="fc"), (8, 8, 1))
      try:
        kernels.make_kernel_fn(kernels.KernelSpec(architecture="conv", depth=1), (8, 8, 1))
      except RuntimeError as e:
        print("refused:", e)
      """, env=_env(""))
  assert res.returncode == 0, f"rc={res.returncode}\n{res.stderr[-3000:]}"
  assert "refused: the conv kernel would crash XLA:CPU" in res.stdout
  assert "XLA_FLAGS=--xla_cpu_max_isa=AVX2" in res.stdout
