"""The flags every entry point in scripts/ shares, and their start-up.

    from core import cli
    cli.define_flags(default_config="experiments/configs/compare.py", default_workdir="runs/x")

    def main(config, workdir): ...

    if __name__ == "__main__":
      cli.run(main)

Flags: ``--config=path.py[:arg]`` (an ml_collections config file, locked, so a mistyped
``--config.field=...`` override raises instead of adding a field), ``--workdir``, and the
multi-host launch flags ``--coordinator_address --num_processes --process_id`` (or the
PRUNE_COORDINATOR_ADDRESS / PRUNE_NUM_PROCESSES / PRUNE_PROCESS_ID environment variables).
`run` initialises `jax.distributed` when several processes are launched, quiets orbax's INFO
logs, and hands `main` an unlocked copy of the config (library code may fill in fields). A
duration given on the command line (``--config.num_steps=N``, ``--config.train.num_epochs=E``)
replaces the config file's one (`core.config.apply_duration_overrides`).
"""
from __future__ import annotations

from typing import Callable, Optional

from absl import app, flags, logging
from ml_collections import config_flags

from core import config as config_lib, parallel

FLAGS = flags.FLAGS


def define_flags(*, default_config: Optional[str] = None,
                 default_workdir: Optional[str] = None, workdir_help: str = "output directory "
                 "(rerun with the same folder to resume)") -> None:
  config_flags.DEFINE_config_file("config", default_config,
                                  "config file path.py[:arg] (e.g. :quick)", lock_config=True)
  flags.DEFINE_string("workdir", default_workdir, workdir_help)
  flags.DEFINE_string("coordinator_address", None, "host:port of process 0 (multi-process)")
  flags.DEFINE_integer("num_processes", None, "number of processes (multi-process)")
  flags.DEFINE_integer("process_id", None, "this process's index (multi-process)")
  required = [n for n, d in (("config", default_config), ("workdir", default_workdir))
              if d is None]
  if required:
    flags.mark_flags_as_required(required)


def resolved_config(config_flag):
  """An unlocked copy of the --config flag's config, with the command line's duration override
  (if any) replacing the config file's duration (`core.config.apply_duration_overrides`)."""
  config = config_flag.value.copy_and_resolve_references()
  config.unlock()
  for path in config_lib.apply_duration_overrides(config,
                                                  config_flags.get_override_values(config_flag)):
    logging.warning("a duration given on the command line replaces the config file's %s "
                    "(now None)", path)
  return config


def run(main: Callable[[object, str], None]) -> None:
  """absl app.run of `main(config, workdir)` after the shared start-up."""
  def _main(argv):
    if len(argv) > 1:
      raise app.UsageError(f"unexpected arguments {argv[1:]}; use --config.field=value")
    logging.set_verbosity(logging.WARNING)  # orbax logs every file at INFO
    parallel.maybe_initialize_distributed(FLAGS.coordinator_address, FLAGS.num_processes,
                                          FLAGS.process_id)
    main(resolved_config(FLAGS["config"]), FLAGS.workdir)

  app.run(_main)
