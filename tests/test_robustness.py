"""Issue #17: nothing silently wrong, nothing lost, no hang.

One test (or a few) per defect class of the probe: each reproduces the defect (it fails on the
code before the fix) and checks the fix names the file or value and what to do.
"""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

from core.data import ArrayDataset


def _toy_train(n=30, seed=0):
  rng = np.random.default_rng(seed)
  y = rng.integers(0, 3, n).astype(np.int32)
  x = rng.normal(size=(n, 4)).astype(np.float32)
  return ArrayDataset(x, y, np.arange(100, 100 + n, dtype=np.int64), 3, "toy/train")


# ----------------------------------------------------------------------------------------------
# 1. Score files bind scores to ids, not positions.


def _score_file(tmp_path, train):
  from pruning import score_io
  res = score_io.ScoreResult(train.ids, np.arange(len(train), dtype=np.float64), dict(
      method="el2n", dataset="toy", fingerprint=train.fingerprint()))
  return score_io.save(str(tmp_path / "el2n-x.npz"), res)


def test_score_file_permuted_ids_refused(tmp_path):
  from pruning import score_io
  train = _toy_train()
  path = _score_file(tmp_path, train)
  back = score_io.load(path, train)
  np.testing.assert_array_equal(back.scores, np.arange(len(train)))
  d = dict(np.load(path))
  # A consistent reordering of whole (id, score) pairs is fine.
  perm = np.random.default_rng(0).permutation(len(train))
  np.savez(path, **{**d, "ids": d["ids"][perm], "scores": d["scores"][perm]})
  np.testing.assert_array_equal(score_io.load(path, train).scores, np.arange(len(train)))
  # Permuting the ids alone (the probe's edit) keeps the id set and fingerprint: refused.
  np.savez(path, **{**d, "ids": d["ids"][perm]})
  with pytest.raises(score_io.ScoreFileError, match=r"el2n-x\.npz.*digest.*delete"):
    score_io.load(path, train)


def test_score_file_truncated_names_file(tmp_path):
  from pruning import score_io
  path = _score_file(tmp_path, _toy_train())
  raw = open(path, "rb").read()
  with open(path, "wb") as fh:
    fh.write(raw[: len(raw) // 2])
  with pytest.raises(score_io.ScoreFileError, match=r"el2n-x\.npz.*delete .* and rerun"):
    score_io.load(path)


def test_score_cache_recomputes_legacy_file(tmp_path):
  """A file written before digests existed is recomputed by the cache, not trusted."""
  from pruning import score_io
  train = _toy_train()
  path = score_io.path_for(str(tmp_path), "el2n", {"a": 1}, train)
  d = dict(np.load(_score_file(tmp_path, train)))
  meta = json.loads(str(d["meta_json"]))
  del meta["pair_digest"]
  np.savez(path, **{**d, "ids": d["ids"][::-1].copy(), "meta_json": np.asarray(json.dumps(meta))})
  with pytest.raises(score_io.ScoreFileError, match="no id-score digest"):
    score_io.load(path, train)
  fresh = score_io.ScoreResult(train.ids, -np.arange(len(train), dtype=np.float64), dict(
      method="el2n", dataset="toy", fingerprint=train.fingerprint()))
  logs = []
  got = score_io.cached(str(tmp_path), "el2n", {"a": 1}, train, lambda: fresh, logs.append)
  np.testing.assert_array_equal(got.scores, fresh.scores)
  assert any("recomputing" in m for m in logs)
  np.testing.assert_array_equal(score_io.load(path, train).scores, fresh.scores)


# ----------------------------------------------------------------------------------------------
# 2. Truncated caches, checkpoints and results name the file and how to recover.


def _truncate(path):
  raw = open(path, "rb").read()
  with open(path, "wb") as fh:
    fh.write(raw[: len(raw) // 2])


_KIP = {"kernel": {"architecture": "fc", "depth": 1, "kernel_type": "ntk"},
        "kip": {"steps": 4, "lr": 0.01, "reg": 1e-6, "target_per_class": 4, "log_every": 1,
                "eval_every": 0, "checkpoint_every": 2}}


def test_kip_checkpoint_truncated_and_log_partial_line(tmp_path):
  from core.io import CorruptFileError
  from distill import kip
  train, wd = _toy_train(), str(tmp_path / "k")
  full = kip.distill_kip(train, 1, _KIP, seed=0, workdir=wd, progress=False)
  ck, lg = os.path.join(wd, kip.CKPT_NAME), os.path.join(wd, kip.LOG_NAME)
  good = open(ck, "rb").read()
  _truncate(ck)
  with pytest.raises(CorruptFileError, match=r"KIP checkpoint .*kip.*delete"):
    kip.distill_kip(train, 1, _KIP, seed=0, workdir=wd, progress=False)
  # A partial last log line (a kill while appending) does not block resume, and the resumed
  # log has each step once.
  with open(ck, "wb") as fh:
    fh.write(good)
  with open(lg, "a") as fh:
    fh.write('{"step": 4, "lo')
  again = kip.distill_kip(train, 1, _KIP, seed=0, workdir=wd, progress=False)
  steps = [json.loads(l)["step"] for l in open(lg)]
  assert steps == sorted(set(steps)) == [r["step"] for r in full.history]
  np.testing.assert_array_equal(again.support.x, full.support.x)
  # A restart without a checkpoint starts the log afresh instead of appending a copy.
  os.remove(ck)
  kip.distill_kip(train, 1, _KIP, seed=0, workdir=wd, progress=False)
  assert [json.loads(l)["step"] for l in open(lg)] == steps


def test_mnist1d_cache_truncated_is_regenerated(tmp_path, monkeypatch, caplog):
  from core.data import bundled
  monkeypatch.setenv("PRUNE_DISTILL_CACHE", str(tmp_path))
  a = bundled.mnist1d_arrays(40, 10, seed=3)
  (path,) = [os.path.join(tmp_path, p) for p in os.listdir(tmp_path)]
  _truncate(path)
  with caplog.at_level("WARNING"):
    b = bundled.mnist1d_arrays(40, 10, seed=3)
  for u, v in zip(a, b):
    np.testing.assert_array_equal(u, v)
  assert any("regenerating" in r.message and path in r.message for r in caplog.records)
  np.testing.assert_array_equal(bundled.mnist1d_arrays(40, 10, seed=3)[0], a[0])


def test_compare_cell_truncated_names_file(tmp_path):
  from core.io import CorruptFileError
  from experiments.compare import cell_cache
  cache = cell_cache(str(tmp_path), "fp")
  cache.put("el2n-5", {"accuracy": 0.5})
  assert cache.get("el2n-5") == {"accuracy": 0.5}
  _truncate(cache.path("el2n-5"))
  with pytest.raises(CorruptFileError, match=r"cells/el2n-5-fp\.json.*delete"):
    cache.get("el2n-5")


# ----------------------------------------------------------------------------------------------
# 8. Results merge with earlier rows keyed by cell and config; nothing is dropped.


@pytest.fixture(scope="module")
def digits_small():
  from core.data import DatasetSplits, class_balanced_ids, load_dataset
  d = load_dataset("digits")
  train = d.train.subset(class_balanced_ids(d.train, 6, seed=0))
  return DatasetSplits(train=train, test=d.test.subset(d.test.ids[:60]), num_classes=10,
                       name="digits")


def _distill_config(**kw):
  from distill.configs.digits_kip_fc import get_config
  c = get_config("quick")
  c.methods, c.images_per_class, c.seeds = ("random",), (1,), (0, 1)
  c.finite.enabled = False
  c.update(kw)
  return c


def test_distill_rerun_merges_rows(digits_small, tmp_path):
  from core.io import CorruptFileError
  from experiments.distill import run_distillation
  wd = str(tmp_path)
  first = run_distillation(_distill_config(), wd, data=digits_small, progress=False)
  assert len(first) == 2
  run_distillation(_distill_config(seeds=(1,)), wd, data=digits_small, progress=False)
  saved = json.load(open(tmp_path / "results.json"))
  assert saved == first  # fewer seeds: both earlier rows kept (seed 1 reused)
  c = _distill_config(seeds=(0,))
  c.kip.lr = 0.5  # another config fingerprint: its row is added beside the earlier ones
  third = run_distillation(c, wd, data=digits_small, progress=False)
  saved = json.load(open(tmp_path / "results.json"))
  assert saved == first + third and len({r["config"] for r in saved}) == 2
  assert len(open(tmp_path / "results.csv").readlines()) == 4
  assert len(json.load(open(tmp_path / "summary.json"))) == 2
  with pytest.raises(ValueError, match="nothing to run: methods=\\[\\]"):
    run_distillation(_distill_config(methods=()), wd, data=digits_small, progress=False)
  assert json.load(open(tmp_path / "results.json")) == saved
  _truncate(str(tmp_path / "results.json"))
  with pytest.raises(CorruptFileError, match="results.json.*delete"):
    run_distillation(_distill_config(), wd, data=digits_small, progress=False)


# ----------------------------------------------------------------------------------------------
# 3. Resume refuses a changed config (run manifest); 5. one run per workdir (lock);
# 6. checkpoint restore verifies digests and falls back to the newest intact step.


def _toy_splits():
  from core.data import DatasetSplits
  train = _toy_train(48)
  te = _toy_train(16, seed=1)
  test = ArrayDataset(te.x, te.y, np.arange(16, dtype=np.int64), 3, "toy/test")
  return DatasetSplits(train, test, 3, "toy")


def _trainer_cfg(**kw):
  from core.config import base_config
  c = base_config()
  c.model = dict(name="mlp", hidden=(8,))
  c.batch_size, c.num_steps, c.num_devices = 16, 6, 1
  c.optimizer.update(name="adam", lr=1e-2)
  c.progress_bar, c.log_every_steps, c.checkpoint_every_steps = False, 2, 2
  c.update(kw)
  return c


def _params(res):
  import jax
  return [np.asarray(x) for x in jax.tree.leaves(res.state.params)]


def test_resume_with_changed_config_refused_unless_forced(tmp_path):
  from core.train import train_and_evaluate
  from core.workdir import ResumeConfigError
  data, wd = _toy_splits(), str(tmp_path / "w")
  full = train_and_evaluate(_trainer_cfg(), str(tmp_path / "full"), data=data)
  train_and_evaluate(_trainer_cfg(stop_after_steps=4), wd, data=data)  # "killed" at step 4
  c = _trainer_cfg()
  c.optimizer.lr, c.seed = 0.05, 7
  with pytest.raises(ResumeConfigError, match=r"optimizer\.lr: 0\.01 -> 0\.05.*seed: 0 -> 7"
                     r".*--config.resume=force"):
    train_and_evaluate(c, wd, data=data)
  other = _toy_splits()
  other.train.x[0, 0] += 1.0
  with pytest.raises(ResumeConfigError, match=r"data\.train"):
    train_and_evaluate(_trainer_cfg(), wd, data=other)
  # Cosmetic fields may change; the resumed run equals the uninterrupted one.
  res = train_and_evaluate(_trainer_cfg(log_every_steps=1), wd, data=data)
  for a, b in zip(_params(res), _params(full)):
    np.testing.assert_array_equal(a, b)
  c.resume = "force"
  c.num_steps = 8
  train_and_evaluate(c, wd, data=data)
  man = json.load(open(os.path.join(wd, "manifest.json")))
  assert man["config"]["optimizer"]["lr"] == 0.05
  assert man["overrides"][-1]["config.optimizer.lr"] == [0.01, 0.05]
  with pytest.raises(ValueError, match="config.resume='maybe'"):
    train_and_evaluate(_trainer_cfg(resume="maybe"), wd, data=data)


def test_second_run_on_locked_workdir_fails_naming_pid(tmp_path):
  import subprocess
  import sys
  import time
  from core.train import train_and_evaluate
  from core.workdir import WorkdirLockedError
  wd = str(tmp_path / "w")
  code = ("import sys, time; from core.workdir import workdir_lock\n"
          f"with workdir_lock({wd!r}):\n  print('locked', flush=True); time.sleep(60)\n")
  p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
  try:
    assert p.stdout.readline().strip() == "locked"
    t0 = time.time()
    with pytest.raises(WorkdirLockedError, match=rf"{wd}.*pid {p.pid}.*another --workdir"):
      train_and_evaluate(_trainer_cfg(), wd, data=_toy_splits())
    assert time.time() - t0 < 10
  finally:
    p.kill()
    p.wait()
  train_and_evaluate(_trainer_cfg(num_steps=2), wd, data=_toy_splits())  # the lock went with it


def test_checkpoint_corrupt_latest_falls_back_to_intact(tmp_path):
  import glob
  import shutil
  import orbax.checkpoint as ocp
  from core.checkpoint import _flat
  from core.train import train_and_evaluate
  data, wd = _toy_splits(), str(tmp_path / "w")
  full = train_and_evaluate(_trainer_cfg(max_checkpoints=3), wd, data=data)
  ck = os.path.join(wd, "checkpoints")
  assert sorted(os.listdir(ck)) == ["2", "4", "6"]
  assert all(os.path.exists(os.path.join(ck, s, "sha256.json")) for s in "246")
  # Step 6 silently holds other values (orbax reads it fine): its digest no longer matches.
  other = str(tmp_path / "other")
  m = ocp.CheckpointManager(other, options=ocp.CheckpointManagerOptions(create=True))
  m.save(6, args=ocp.args.StandardSave(_flat(full.state.replace(params=__import__("jax").tree
                                                                .map(np.zeros_like,
                                                                     full.state.params)))))
  m.wait_until_finished()
  m.close()
  shutil.copy(os.path.join(ck, "6", "sha256.json"), os.path.join(other, "6"))
  shutil.rmtree(os.path.join(ck, "6"))
  shutil.copytree(os.path.join(other, "6"), os.path.join(ck, "6"))
  # Step 4 is truncated (unreadable): restore falls back to step 2, saying so.
  for f in glob.glob(os.path.join(ck, "4", "**", "d", "*"), recursive=True):
    with open(f, "r+b") as fh:
      fh.truncate(4)
  with pytest.warns(RuntimeWarning, match=r"resuming from step 2.*deleted the corrupt newer "
                    r"steps \[4, 6\]"):
    res = train_and_evaluate(_trainer_cfg(max_checkpoints=3), wd, data=data)
  for a, b in zip(_params(res), _params(full)):
    np.testing.assert_array_equal(a, b)


# ----------------------------------------------------------------------------------------------
# 5. Multi-process launch mistakes fail within the stated timeout, with a clear message.


def _free_port():
  import socket
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def _launch(pid, port, timeout_s=8):
  import subprocess
  import sys
  env = {**os.environ, "JAX_PLATFORMS": "cpu", "PRUNE_INIT_TIMEOUT_S": str(timeout_s)}
  env.pop("XLA_FLAGS", None)
  code = (f"from core import parallel\nparallel.maybe_initialize_distributed('localhost:{port}', "
          f"2, {pid})\nprint('INITIALISED', flush=True)\n")
  return subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)


def test_multiprocess_missing_peer_fails_within_timeout():
  import time
  t0 = time.time()
  lone_worker = _launch(1, _free_port())  # process 1 of 2, no coordinator anywhere
  lone_coord = _launch(0, _free_port())  # process 0 of 2, process 1 never comes
  try:
    out1, _ = lone_worker.communicate(timeout=60)
    out0, _ = lone_coord.communicate(timeout=60)
  finally:
    for p in (lone_worker, lone_coord):
      p.kill()
      p.wait()
  assert time.time() - t0 < 40  # 8 s timeout + interpreter/JAX start-up on a loaded machine
  assert lone_worker.returncode != 0 and lone_coord.returncode != 0
  assert "INITIALISED" not in out1 + out0
  assert "process 1 of 2: no coordinator at localhost:" in out1 and "within 8 s" in out1
  assert "--process_id in 0..1" in out1
  assert "two processes may have the same --process_id (this one has 1)" in out1
  assert "[process 0 of 2] the process group did not form within 8 s" in out0
  with pytest.raises(ValueError, match="process_id=2 is out of range"):
    from core import parallel
    parallel.maybe_initialize_distributed("localhost:1", 2, 2)


def test_multiprocess_duplicated_process_id_ends_without_hanging():
  """Two processes launched with --process_id=1: the group cannot form as launched. JAX either
  aborts the whole group in C++ (nothing reaches Python) or lets 0 + one 1 form and the other
  time out; either way every process ends within the timeout and a duplicate fails. (The hint
  naming a duplicated --process_id is checked deterministically in the lone-worker test above:
  it is the same message.)"""
  import time
  port = _free_port()
  procs = [_launch(0, port)]
  time.sleep(1.0)
  procs += [_launch(1, port), _launch(1, port)]
  try:
    outs = [p.communicate(timeout=120)[0] for p in procs]
  finally:
    for p in procs:
      p.kill()
      p.wait()
  failed = [o for p, o in zip(procs[1:], outs[1:]) if p.returncode != 0]
  assert failed, outs
  hint = "two processes may have the same --process_id (this one has 1)"
  python_path = [o for o in failed if "Traceback" in o or "DistributedInitError" in o]
  assert all(hint in o for o in python_path), outs  # where our error is raised, it names it


# ----------------------------------------------------------------------------------------------
# 9. Unconverged saddle points are reported, and the frontier never picks one.


def test_solve_replica_warns_on_unconverged_points():
  from theory import replica
  with pytest.warns(RuntimeWarning, match=r"1 of 2 saddle points did not converge.*alpha=30, "
                    r"f=0.1, theta=0.175, keep='easy', residual=0\.2"):
    r = replica.solve_replica(np.array([10, 30.]), f=0.1, theta=0.175, keep="easy")
  assert r["residual"][0] < 1e-10 < replica.RESIDUAL_TOL < r["residual"][1]
  with pytest.raises(ValueError, match="did not converge"):
    replica.solve_replica(30.0, f=0.1, theta=0.175, keep="easy", on_unconverged="raise")


def test_pareto_frontier_skips_unconverged_points(monkeypatch):
  import warnings
  from theory import frontier, replica

  def fake(a, f, theta, keep):  # the real solution, with the best point marked unconverged
    r = replica.solve_replica(a, f, theta, keep)
    r["eps"][0, :] = 1e-6  # f = 0.2 would win everywhere if it were trusted
    r["residual"][0, :] = 0.5
    return r
  monkeypatch.setattr(frontier, "solve_replica", fake)
  with warnings.catch_warnings():
    warnings.simplefilter("error", RuntimeWarning)
    front = frontier.pareto_frontier(np.array([1.0, 2.0, 3.0]), [0.2, 1.0], keeps=("hard",))
  np.testing.assert_allclose(front["eps"], replica.solve_replica([1.0, 2.0, 3.0])["eps"])
  assert list(front["f_opt"]) == [1.0, 1.0, 1.0]
  monkeypatch.setattr(frontier, "solve_replica", lambda a, f, t, k: dict(
      eps=np.zeros((1, 2)), residual=np.array([[0.5, 0.0]])))
  with pytest.raises(ValueError, match=r"no converged saddle point at alpha_prune=\[1.0\]"):
    frontier.pareto_frontier(np.array([1.0, 2.0]), [0.2], keeps=("hard",))


# ----------------------------------------------------------------------------------------------
# 10. Degenerate values are refused before any work.


def test_select_ids_that_keep_nothing_are_refused():
  from pruning.select import select_ids
  rng = np.random.default_rng(0)
  scores, ids, labels = rng.random(100), np.arange(100), np.repeat(np.arange(10), 10)
  with pytest.raises(ValueError, match=r"keep fraction 0.004 of 100 examples keeps none.*"
                     r"fraction >= 0.005"):
    select_ids(scores, ids, labels, fraction=0.004)
  with pytest.raises(ValueError, match="keeps no example of any class"):
    select_ids(scores, ids, labels, fraction=0.02, class_balanced=True)
  assert len(select_ids(scores, ids, labels, fraction=0.005)) == 1


def test_empty_method_lists_refused_before_work(tmp_path, monkeypatch):
  import ml_collections
  from core import data as data_lib
  from experiments import prune_sweep, rholoss

  def no_data(*a, **k):
    raise AssertionError("work started")
  monkeypatch.setattr(data_lib, "load_dataset", no_data)
  monkeypatch.setattr(rholoss, "noisy_splits", no_data)
  c = ml_collections.ConfigDict(dict(methods=(), fractions=(0.5,), seeds=(0,)))
  with pytest.raises(ValueError, match=r"nothing to sweep: methods=\[\]"):
    prune_sweep.run_sweep(c, str(tmp_path / "s"), verbose=False)
  c = ml_collections.ConfigDict(dict(rholoss=dict(methods=(), seeds=(0,))))
  with pytest.raises(ValueError, match=r"nothing to run: rholoss.methods=\[\]"):
    rholoss.run_experiment(c, str(tmp_path / "r"), log=lambda s: None)
