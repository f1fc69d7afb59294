"""Training durations: a command-line duration replaces the config file's; conflicts are named."""
import sys

import ml_collections
import pytest

from core import cli, config as config_lib
from core.sampler import num_train_steps


def _parse(monkeypatch, *argv):
  """The --config flag of `argv`, parsed as a script parses it (ml_collections reads sys.argv)."""
  from absl import flags
  from ml_collections import config_flags
  argv = ["prog", *argv]
  monkeypatch.setattr(sys, "argv", argv)
  fv = flags.FlagValues()
  config_flags.DEFINE_config_file("config", None, lock_config=True, flag_values=fv)
  fv(argv)
  return fv["config"]


def test_command_line_num_steps_replaces_the_config_files_epochs(monkeypatch):
  # digits_mlp.py trains for num_epochs=30; --config.num_steps=7 alone must give 7 steps.
  c = cli.resolved_config(_parse(monkeypatch, "--config=core/configs/digits_mlp.py",
                                 "--config.num_steps=7"))
  assert c.num_steps == 7 and c.num_epochs is None
  assert num_train_steps(c, 1000) == 7
  # In a sub-config (the sweep's trainer, num_steps=600 in the file): epochs replace steps.
  c = cli.resolved_config(_parse(monkeypatch, "--config=experiments/configs/digits_prune_sweep.py",
                                 "--config.train.num_epochs=2"))
  assert c.train.num_steps is None
  assert num_train_steps(c.train, 100) == 2 * -(-100 // int(c.train.batch_size))
  # No duration on the command line: the file's stands.
  c = cli.resolved_config(_parse(monkeypatch, "--config=core/configs/digits_mlp.py",
                                 "--config.batch_size=32"))
  assert c.num_epochs == 30 and c.num_steps is None


def test_two_explicit_durations_raise_naming_both(monkeypatch):
  c = cli.resolved_config(_parse(monkeypatch, "--config=core/configs/digits_mlp.py",
                                 "--config.num_steps=7", "--config.num_examples=640"))
  with pytest.raises(ValueError, match=r"config.num_steps=7 and config.num_examples=640 are both "
                     r"set.*set the others to None.*--config.num_steps=N"):
    num_train_steps(c, 1000)


def test_set_duration_clears_the_others_and_the_proxy_uses_it():
  c = config_lib.base_config()
  c.num_epochs = 3
  assert num_train_steps(config_lib.set_duration(c, "num_steps", 5), 100) == 5
  assert c.num_epochs is None and c.num_examples is None
  with pytest.raises(ValueError, match="unknown duration field 'steps'"):
    config_lib.set_duration(c, "steps", 5)
  # proxy.num_steps over an epoch-based trainer config: the proxy trains num_steps steps.
  from pruning import proxy
  c = config_lib.base_config()
  c.num_epochs = 3
  cfg = ml_collections.ConfigDict(dict(train=c, seed=0))
  sub = ml_collections.ConfigDict(dict(proxy.PROXY_DEFAULTS, num_steps=4,
                                       model=dict(hidden=(4,))))
  pc = proxy.proxy_config(cfg, sub, methods=("entropy", "proxy"))
  assert num_train_steps(pc.train, 100) == 4
  assert cfg.train.num_epochs == 3  # the full-model config is not touched
