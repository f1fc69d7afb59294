"""core.cells.CellCache: the experiment drivers' one per-cell result cache."""
import json
import os

import numpy as np
import pytest

from core.cells import CellCache
from core.io import CorruptFileError


def test_round_trip_keeps_the_file_names_and_json_layout_of_the_drivers(tmp_path):
  row = {"network_accuracy": np.float32(0.75), "num_examples": 12, "b": [1, 2]}
  # experiments.compare: <key>-<fingerprint>.json, report.write_json's layout
  cache = CellCache(str(tmp_path / "cells"), suffix="f922dc27", sort_keys=True, default=float)
  path = cache.put("kip-k1-s0", row)
  assert path == str(tmp_path / "cells" / "kip-k1-s0-f922dc27.json")
  with open(path) as fh:
    assert fh.read() == json.dumps(row, indent=1, sort_keys=True, default=float)
  assert cache.get("kip-k1-s0") == {"b": [1, 2], "network_accuracy": 0.75, "num_examples": 12}
  assert cache.get("kip-k1-s1") is None
  # prune_sweep / scaling / selectors: <name>.json, json.dumps(row, indent=1)
  plain = CellCache(str(tmp_path / "sweep"))
  p = plain.put("el2n-hard__f0.5000__s0", {"z": 1, "a": 2})
  assert os.path.basename(p) == "el2n-hard__f0.5000__s0.json"
  with open(p) as fh:
    assert fh.read() == json.dumps({"z": 1, "a": 2}, indent=1)
  with pytest.raises(ValueError, match="not a file name"):
    plain.path("a/b")


def test_a_corrupt_cell_is_named_and_a_stale_one_is_recomputed(tmp_path):
  cache = CellCache(str(tmp_path), what="sweep cell")
  bad = tmp_path / "full__s0.json"
  bad.write_text('{"test_accuracy": 0.9')  # a write cut short (not by core.io)
  with pytest.raises(CorruptFileError, match=r"sweep cell .*full__s0\.json.*delete"):
    cache.get("full__s0")
  bad.write_text("[1, 2]")
  with pytest.raises(CorruptFileError, match=r"full__s0\.json holds a list"):
    cache.get("full__s0")
  said = []
  cache = CellCache(str(tmp_path), log=said.append)
  cache.put("full__s1", {"config_hash": "old", "acc": 1.0})
  assert cache.get("full__s1", require={"config_hash": "old"})["acc"] == 1.0
  assert cache.get("full__s1", require={"config_hash": "new"}) is None
  assert said == ["full__s1.json was made with another config: recomputing"]


def test_only_process_zero_writes(tmp_path, monkeypatch):
  import jax
  cache = CellCache(str(tmp_path / "cells"))
  monkeypatch.setattr(jax, "process_index", lambda: 1)
  cache.put("cell", {"a": 1})
  assert not os.path.exists(cache.path("cell")) and cache.get("cell") is None
  monkeypatch.setattr(jax, "process_index", lambda: 0)
  cache.put("cell", {"a": 1})
  assert cache.get("cell") == {"a": 1}
  assert os.listdir(tmp_path / "cells") == ["cell.json"]  # no temporary file left behind
