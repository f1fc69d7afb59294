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
