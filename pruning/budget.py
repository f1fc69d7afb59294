"""How many examples a keep fraction or a count keeps: the one rule every selector uses.

`num_keep(f, n)` = floor(f n + 0.5); `count_of(n, fraction, count)` the number kept from n by
exactly one of a fraction or an absolute count. Used by `pruning.select` (score rules) and
`pruning.coreset` (coreset selectors), which share these semantics.
"""
from __future__ import annotations

import math


def check_fraction(f) -> float:
  """Returns f as a float; ValueError naming f unless 0 < f <= 1."""
  try:
    fv = float(f)
  except (TypeError, ValueError):
    raise ValueError(f"keep fraction f={f!r} is not a number") from None
  if not (0.0 < fv <= 1.0) or not math.isfinite(fv):
    raise ValueError(f"keep fraction f={f!r} must lie in (0, 1]")
  return fv


def num_keep(f, n: int) -> int:
  """floor(f * n + 0.5): the number of examples a fraction f of n keeps."""
  f = check_fraction(f)
  return int(math.floor(f * int(n) + 0.5 + 1e-9))


def count_of(n: int, fraction, count) -> int:
  """Examples kept from n by exactly one of `fraction` (num_keep, at least 1) or `count`."""
  if (fraction is None) == (count is None):
    raise ValueError("give exactly one of fraction or count")
  if fraction is not None:
    k = num_keep(fraction, n)
    if k < 1:
      raise ValueError(f"keep fraction {fraction} of {n} examples keeps none (num_keep rounds "
                       f"f * n to {k}); use a fraction >= {0.5 / max(n, 1):.3g} or count >= 1")
  else:
    k = int(count)
    if not 0 < k <= n:
      raise ValueError(f"count={count} must lie in [1, {n}]")
  return k
