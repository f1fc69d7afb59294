"""Experiment configs: each module has `get_config(arg=None)` returning a ConfigDict.

`arg == 'quick'` shrinks the run (fewer steps) for smoke tests. Use with
`scripts/train.py --config=pruning/configs/<name>.py[:quick] --workdir=DIR`.
"""
import ml_collections


def check_arg(arg, *allowed: str):
  """The config-file argument, '' -> None; raises ValueError unless it is one of `allowed`."""
  if arg in (None, ""):
    return None
  if arg not in allowed:
    choices = ", ".join(repr(a) for a in ("",) + allowed)
    raise ValueError(f"unknown config arg {arg!r}; choose from {choices}")
  return arg


def config_value(cfg, key: str, default=None):
  """cfg[key] for a ConfigDict, dict or object; `default` when missing or None."""
  if cfg is None:
    return default
  v = cfg.get(key, default) if hasattr(cfg, "get") else getattr(cfg, key, default)
  return default if v is None else v


def base_config() -> ml_collections.ConfigDict:
  """Fields shared by every config (see core/train.py for their meaning)."""
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.dataset = ml_collections.ConfigDict(dict(name="digits", normalization="standardize"))
  c.model = ml_collections.ConfigDict(dict(name="cnn"))
  c.batch_size = 64
  c.num_steps = ml_collections.config_dict.placeholder(int)
  c.num_epochs = ml_collections.config_dict.placeholder(float)
  c.num_examples = ml_collections.config_dict.placeholder(int)
  c.optimizer = ml_collections.ConfigDict(dict(
      name="adam", lr=1e-3, momentum=0.9, nesterov=False, weight_decay=0.0,
      schedule="constant", warmup_steps=0, warmup_epochs=0.0,
      boundaries=(0.3, 0.6, 0.8), decay_factor=0.2))
  c.loss = "cross_entropy"
  c.augment = ml_collections.ConfigDict(dict(crop_padding=0, flip=False))
  c.center_at_init = False
  c.num_devices = ml_collections.config_dict.placeholder(int)
  c.eval_batch_size = 1024
  c.eval_every_steps = 0
  c.log_every_steps = 50
  c.checkpoint = True
  c.checkpoint_every_steps = 0
  c.max_checkpoints = 2
  c.stop_after_steps = ml_collections.config_dict.placeholder(int)
  c.progress_bar = True
  c.resume = "auto"  # 'force': resume a workdir's checkpoints under a changed config
  return c


DURATIONS = ("num_steps", "num_epochs", "num_examples")


def set_duration(train_config, field: str, value):
  """Sets the training length to `field` = `value` (one of DURATIONS) and clears the other two,
  so that `core.sampler.num_train_steps` reads exactly this one. Returns the config."""
  if field not in DURATIONS:
    raise ValueError(f"unknown duration field {field!r}; choose from {DURATIONS}")
  for other in DURATIONS:
    if other != field:
      train_config[other] = None
  train_config[field] = value
  return train_config


def apply_duration_overrides(config, override_values: dict) -> list:
  """An explicit duration override wins over the config file's duration (see
  `core.sampler.num_train_steps`).

  `override_values`: {dotted path: value} of the command line's ``--config.<path>=value``
  (`ml_collections.config_flags.get_override_values`). For each overridden ``num_steps`` /
  ``num_epochs`` / ``num_examples`` (at the top or in a sub-config such as ``train.``), the
  other two fields of that (sub-)config are cleared unless they were overridden too (then
  both stand and the trainer's error names them). Returns the cleared paths.
  """
  cleared = []
  for path, value in override_values.items():
    prefix, _, field = path.rpartition(".")
    if field not in DURATIONS or value is None:
      continue
    sub = config
    for part in prefix.split(".") if prefix else ():
      sub = sub[part]
    for other in DURATIONS:
      other_path = f"{prefix}.{other}" if prefix else other
      if other != field and other_path not in override_values and sub.get(other) is not None:
        sub[other] = None
        cleared.append(other_path)
  return cleared


def fixed_steps(train_config, num_steps: int):
  """A trainer config shortened to a fixed number of steps, quiet, no checkpoints."""
  t = set_duration(train_config, "num_steps", num_steps)
  t.progress_bar = False
  t.checkpoint = False
  t.log_every_steps = 100
  return t
