"""Selection via proxy (Coleman et al., ICLR 2020): score with a small, cheap network.

The ``proxy`` score method runs another score method (``proxy.method``, e.g. 'entropy',
'least_confidence', 'forgetting', 'el2n', 'kcenter') with a smaller trainer config: the
network's config updated by ``proxy.model`` (e.g. ``dict(channels=8)`` for the 1-D CNN instead
of 25) and optionally fewer steps (``proxy.num_steps``) and other options of the inner method
(``proxy.options``, e.g. ``dict(epoch=1)``). The large network is then trained on the kept ids
by the pruning sweep as for any score. The score file's metadata records the proxy's wall time
(``wall_time_s``, the proxy cost) and the model it used; the sweep's rank correlations
(``correlate_with``) give the Spearman correlation between proxy and full-model scores.
"""
from __future__ import annotations

import time
from typing import Callable, Sequence

import ml_collections

PROXY_DEFAULTS = dict(method="entropy", model=dict(channels=8), num_steps=0, options=dict())


def proxy_config(config, sub, methods: Sequence[str]) -> ml_collections.ConfigDict:
  """The scoring config of the proxy: config.train with the small model and schedule.

  `methods`: the score methods `sub.method` may name (the registry's, `pruning.scores.METHODS`).
  """
  from pruning import scoring_runs
  scoring_runs.need_train(config, "proxy")
  inner = str(sub.method)
  if inner == "proxy" or inner not in methods:
    raise ValueError(f"proxy.method={inner!r} must be another score method; choose from "
                     f"{tuple(m for m in methods if m != 'proxy')}")
  cfg = ml_collections.ConfigDict(config.to_dict())
  cfg.train.model.update(dict(sub.model))
  if int(sub.num_steps or 0):  # replaces the train config's duration, whichever field it used
    from core.config import set_duration
    set_duration(cfg.train, "num_steps", int(sub.num_steps))
  options = dict(sub.options or {})
  if options:
    if inner not in cfg:
      cfg[inner] = ml_collections.ConfigDict()
    cfg[inner].update(options)
  return cfg


def proxy_scorer(data, config, sub, log, *, compute: Callable, methods: Sequence[str]):
  """ScoreResult of `sub.method` under the proxy config.

  The registry passes itself in (`pruning.scores._proxy`): ``compute`` is
  `pruning.scores.compute_scores`, ``methods`` its method names, so this module does not
  import the registry.
  """
  from pruning import score_io, scoring_runs
  sub = scoring_runs.with_defaults(sub, PROXY_DEFAULTS)
  cfg = proxy_config(config, sub, methods)
  t0 = time.time()
  res = compute(str(sub.method), data, cfg, cache_dir=None, log=log)
  wall = time.time() - t0
  meta = scoring_runs.score_meta("proxy", data, config, sub, proxy_method=str(sub.method),
                                 proxy_model=score_io.to_jsonable(cfg.train.model),
                                 proxy_num_steps=cfg.train.get("num_steps"),
                                 wall_time_s=round(wall, 2), inner_meta=res.meta)
  log(f"proxy ({sub.method}, model {dict(sub.model)}): {wall:.1f}s")
  return type(res)(res.ids, res.scores, meta, getattr(res, "per_run", None))
