"""The entry points in scripts/: shared flags (core.cli), locked configs, config-arg parsing."""
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(*args, timeout=300):
  env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="--xla_force_host_platform_device_count=1")
  return subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True,
                        text=True, timeout=timeout)


def test_train_script_runs_and_rejects_typos(tmp_path):
  wd = str(tmp_path / "run")
  ok = _run("scripts/train.py", "--config=core/configs/digits_mlp.py:quick",
            "--config.num_epochs=1", "--config.progress_bar=False", f"--workdir={wd}")
  assert ok.returncode == 0, ok.stderr[-2000:]
  assert json.loads(ok.stdout)["steps"] == 23  # ceil(1437 / 64)
  assert os.path.exists(os.path.join(wd, "metrics.jsonl"))
  typo = _run("scripts/train.py", "--config=core/configs/digits_mlp.py:quick",
              "--config.num_epoch=1", f"--workdir={wd}2")
  assert typo.returncode != 0 and "num_epoch" in typo.stderr
  arg = _run("scripts/train.py", "--config=core/configs/digits_mlp.py:quik", f"--workdir={wd}3")
  assert arg.returncode != 0 and "unknown config arg 'quik'" in arg.stderr


@pytest.mark.parametrize("path", [
    "core/configs/digits_cnn.py", "core/configs/mnist1d_cnn.py", "core/configs/cifar10_resnet18.py",
    "experiments/configs/mnist1d_prune_sweep.py", "experiments/configs/mnist1d_rholoss.py",
    "experiments/configs/compare.py", "distill/configs/digits_kip_fc.py", "theory/configs/fig1.py",
    "theory/configs/fig2.py"])
def test_every_config_rejects_an_unknown_arg(path):
  import importlib.util
  spec = importlib.util.spec_from_file_location("cfg", os.path.join(ROOT, path))
  mod = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(mod)
  mod.get_config()
  mod.get_config("quick")
  with pytest.raises(ValueError, match="unknown config arg 'quik'"):
    mod.get_config("quik")
