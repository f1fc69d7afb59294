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
  from experiments.compare import CellCache
  cache = CellCache(str(tmp_path), "fp")
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
