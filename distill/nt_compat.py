"""Import-time compatibility layer: neural-tangents 0.6.5 on current JAX (issue #18).

neural-tangents 0.6.5 is archived (no release after it) and imports names that newer JAX
removed: `from jax.core import Jaxpr` fails from JAX 0.6 on, the module `jax.util` is gone
since 0.8 and `jax.interpreters.ad.zeros_like_p` since 0.9. This module puts those names back,
taken from where JAX keeps them now, so that the unmodified package from the index imports and
`neural_tangents.stax`, `nt.batch` and `nt.predict` work:

  jax.core.{Jaxpr, JaxprEqn, Literal, Var, Primitive}  <- jax.extend.core (public)
  jax.core.ShapedArray                                 <- jax._src.core (still public in 0.10)
  jax.util (a stand-in module: safe_map, safe_zip)     <- our own strict map / zip
  jax.interpreters.ad.zeros_like_p                     <- jax._src.ad_util (a dict key in NT's
                                                          structured-derivative rules only)
  neural_tangents.experimental (a stub)                <- so TensorFlow, tf2jax and jax2tf are
                                                          not imported (we use none of it)

Every name is guarded: it is set only where JAX lacks it, so on a JAX that still has the name
(e.g. 0.5.3) the layer changes nothing of JAX. What it did set is recorded in `SUPPLIED`
(e.g. ["jax.core.Jaxpr", ..., "neural_tangents.experimental"]). Import this module before any
`neural_tangents` import (distill/kernels.py does); importing it twice is harmless.

It also works around a crash in XLA itself (`xla_cpu_workaround`, run at import): from jaxlib 0.8
on, on AVX-512 CPUs, XLA:CPU segfaults in a jitted float64 convolution followed by reduce_window,
which is what neural-tangents emits for Conv -> AvgPool. Where that applies, the layer appends
`--xla_cpu_max_isa=AVX2` to XLA_FLAGS before JAX's CPU backend starts (recorded in
`XLA_WORKAROUND`; `PRUNE_XLA_CPU_MAX_ISA=native` turns it off). It only takes effect if distill
is imported before the first JAX computation, which our entry points and tests/conftest.py do.

Not covered (fails on the old stack too): neural-tangents' empirical-NTK implementations
`STRUCTURED_DERIVATIVES` and `AUTO`, which reach further into JAX internals.
"""
from __future__ import annotations

import importlib
import os
import platform
import sys
import types
import warnings

import jax
import jax.core
import jax.interpreters.ad

SUPPLIED: list[str] = []
# The XLA:CPU flag this layer added to XLA_FLAGS (None: none needed, or too late / overridden).
XLA_WORKAROUND: str | None = None
# The flag that was needed but could not be set (the backend had started): ConvNet kernels then
# refuse to run (`check_conv_kernels_safe`) instead of crashing the process.
XLA_WORKAROUND_MISSED: str | None = None
ISA_ENV = "PRUNE_XLA_CPU_MAX_ISA"  # unset: AVX2 where needed; "native": leave XLA alone
ISA_FLAG = "--xla_cpu_max_isa"

# The subpackage replaced by a stub (only if neural_tangents is not imported yet; otherwise the
# real subpackage, or whatever is there, stays).
_EXPERIMENTAL = "neural_tangents.experimental"


def _has(module, name: str) -> bool:
  """Whether `module.name` exists, without triggering JAX's deprecation warnings."""
  with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    try:
      getattr(module, name)
    except AttributeError:
      return False
    return True


def _supply(module, name: str, source: str, attr: str | None = None):
  """Set `module.name` from `source.attr` if `module` lacks `name`; record it."""
  if _has(module, name):
    return
  src = importlib.import_module(source)
  setattr(module, name, getattr(src, attr or name))
  SUPPLIED.append(f"{module.__name__}.{name}")


def _safe_map(f, *args):
  """map() that insists on equal lengths and returns a list (jax.util.safe_map)."""
  args = list(map(list, args))
  n = len(args[0])
  for a in args[1:]:
    if len(a) != n:
      raise ValueError(f"safe_map: length mismatch {[len(x) for x in args]}")
  return list(map(f, *args))


def _safe_zip(*args):
  """zip() that insists on equal lengths and returns a list (jax.util.safe_zip)."""
  args = list(map(list, args))
  n = len(args[0])
  for a in args[1:]:
    if len(a) != n:
      raise ValueError(f"safe_zip: length mismatch {[len(x) for x in args]}")
  return list(zip(*args))


def _supply_jax_util():
  try:
    import jax.util as util  # noqa: F401  (gone since JAX 0.8)
  except ImportError:
    util = types.ModuleType("jax.util", "Stand-in for the removed jax.util (distill.nt_compat).")
    sys.modules["jax.util"] = util
    jax.util = util
    SUPPLIED.append("jax.util")
  for name, fn in (("safe_map", _safe_map), ("safe_zip", _safe_zip)):
    if not _has(util, name):
      setattr(util, name, fn)
      SUPPLIED.append(f"jax.util.{name}")


def _supply_zeros_like_p():
  ad = jax.interpreters.ad
  if _has(ad, "zeros_like_p"):
    return
  try:
    from jax._src.ad_util import zeros_like_p
  except ImportError:  # a placeholder key: JAX no longer emits the primitive at all
    from jax.extend.core import Primitive
    zeros_like_p = Primitive("zeros_like")
  ad.zeros_like_p = zeros_like_p
  SUPPLIED.append("jax.interpreters.ad.zeros_like_p")


class _Unavailable(types.ModuleType):
  """`neural_tangents.experimental` stand-in: any attribute raises a clear error."""

  def __getattr__(self, name):
    if name.startswith("__"):
      raise AttributeError(name)
    raise AttributeError(
        f"neural_tangents.experimental.{name} is unavailable: distill.nt_compat replaces "
        "neural_tangents.experimental (TensorFlow / tf2jax empirical kernels) by a stub so that "
        "TensorFlow is not imported; this project does not use it.")


def _stub_experimental():
  if "neural_tangents" in sys.modules or _EXPERIMENTAL in sys.modules:
    return  # too late, or someone imported it on purpose: leave it
  sys.modules[_EXPERIMENTAL] = _Unavailable(_EXPERIMENTAL, _Unavailable.__doc__)
  SUPPLIED.append(_EXPERIMENTAL)


def _version(module) -> tuple[int, ...]:
  return tuple(int("".join(c for c in p if c.isdigit()) or 0)
               for p in module.__version__.split(".")[:2])


def _cpu_has_avx512() -> bool:
  if platform.machine().lower() not in ("x86_64", "amd64"):
    return False
  try:
    with open("/proc/cpuinfo") as fh:
      return any(line.startswith("flags") and " avx512f" in line for line in fh)
  except OSError:
    return False


def _backend_started() -> bool:
  try:
    from jax._src import xla_bridge
    return bool(getattr(xla_bridge, "_backends", None))
  except Exception:  # noqa: BLE001  (private API; if it moved, assume not started)
    return False


def xla_cpu_workaround(environ=None) -> str | None:
  """Add `--xla_cpu_max_isa=AVX2` to XLA_FLAGS where XLA:CPU would crash; returns the flag.

  From jaxlib 0.8 on, on CPUs with AVX-512, XLA:CPU crashes (SIGSEGV) in a jitted float64
  convolution followed by reduce_window - what neural-tangents emits for Conv -> AvgPool, so
  every jitted / nt.batch-ed float64 ConvNet kernel (see tests/test_nt_compat.py for a pure-JAX
  reproducer). Capping the ISA at AVX2 avoids it with identical numbers. XLA reads XLA_FLAGS
  when its CPU backend starts, so this must run before the first computation; later it only
  warns. Nothing is done on jaxlib < 0.8, without AVX-512, if XLA_FLAGS already sets
  --xla_cpu_max_isa, or if PRUNE_XLA_CPU_MAX_ISA=native (PRUNE_XLA_CPU_MAX_ISA=X caps at X).
  """
  global XLA_WORKAROUND
  environ = os.environ if environ is None else environ
  choice = environ.get(ISA_ENV, "").strip() or "AVX2"
  if choice.lower() == "native" or ISA_FLAG in environ.get("XLA_FLAGS", ""):
    return None
  import jaxlib
  if _version(jaxlib) < (0, 8) or not _cpu_has_avx512():
    return None
  flag = f"{ISA_FLAG}={choice}"
  if _backend_started():
    if environ is os.environ:
      global XLA_WORKAROUND_MISSED
      XLA_WORKAROUND_MISSED = flag
    warnings.warn(f"distill.nt_compat: JAX's CPU backend started before {flag} could be set; "
                  "float64 ConvNet kernels may crash XLA:CPU on this AVX-512 CPU. Import distill "
                  f"before any JAX computation, or start with XLA_FLAGS={flag}.", RuntimeWarning,
                  stacklevel=2)
    return None
  environ["XLA_FLAGS"] = (environ.get("XLA_FLAGS", "") + " " + flag).strip()
  if environ is os.environ:
    XLA_WORKAROUND = flag
  return flag


def check_conv_kernels_safe(what: str = "a float64 ConvNet kernel") -> None:
  """Raises instead of letting XLA:CPU crash the process: where the ISA cap was needed but the
  CPU backend had started before distill was imported (`XLA_WORKAROUND_MISSED`)."""
  if XLA_WORKAROUND_MISSED and jax.default_backend() == "cpu":
    raise RuntimeError(
        f"{what} would crash XLA:CPU on this AVX-512 CPU (jaxlib >= 0.8, float64 conv + "
        f"reduce_window): JAX's CPU backend started before distill set {XLA_WORKAROUND_MISSED}. "
        f"Import distill before any JAX computation in this program, or start it with "
        f"XLA_FLAGS={XLA_WORKAROUND_MISSED} (PRUNE_XLA_CPU_MAX_ISA=native if your CPU does not "
        "need it).")


def apply():
  """Supply whatever is missing (idempotent); returns `SUPPLIED`."""
  for name in ("Jaxpr", "JaxprEqn", "Literal", "Var", "Primitive"):
    _supply(jax.core, name, "jax.extend.core")
  _supply(jax.core, "ShapedArray", "jax._src.core")
  _supply_jax_util()
  _supply_zeros_like_p()
  _stub_experimental()
  return SUPPLIED


apply()
xla_cpu_workaround()
