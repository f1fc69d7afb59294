"""Two CPU processes (gloo, 2 fake devices each) == one process with 4 devices: the trainer,
and the main job (experiments.compare) end to end."""
import json
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

WORKER = os.path.join(os.path.dirname(__file__), "multihost_worker.py")
COMPARE_WORKER = os.path.join(os.path.dirname(__file__), "multihost_compare_worker.py")
FETCH_WORKER = os.path.join(os.path.dirname(__file__), "multihost_fetch_worker.py")


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def launch(pid, nproc, port, ndev, *args, worker=WORKER):
  env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
  return subprocess.Popen([sys.executable, worker, str(pid), str(nproc), str(port), str(ndev),
                           *map(str, args)], env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)


def wait(procs, timeout=600):  # generous: CI and loaded machines start 3 JAX processes at once
  """Every process's output; fails (with where each one was stuck) if any runs past
  `timeout` seconds in all, or exits with an error."""
  deadline = time.monotonic() + timeout
  outs, hung = [], []
  try:
    for p in procs:
      try:
        outs.append(p.communicate(timeout=max(deadline - time.monotonic(), 1))[0])
      except subprocess.TimeoutExpired:
        hung.append(len(outs))
        p.send_signal(signal.SIGABRT)  # faulthandler: the Python stack of every thread
        outs.append(p.communicate()[0])
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
  if hung:
    pytest.fail(f"processes {hung} did not finish within {timeout} s; their stacks:\n" +
                "\n".join(f"--- process {i} ---\n" + _stacks(outs[i]) for i in hung))
  for p, o in zip(procs, outs):
    assert p.returncode == 0, o[-3000:]
  return outs


def _stacks(out: str) -> str:
  # the main thread's frames from faulthandler's dump, else the end of the output
  i = out.rfind("Current thread")
  return out[i:i + 3000] if i >= 0 else out[-3000:]


def test_fetch_reads_this_process_copy_without_the_others():
  """`parallel.fetch` / `unreplicate` of a pmapped output on one process, while the other is
  already in a barrier, return the global collectives' values and need nothing from the other
  process (test_train.py checks that they run no program at all: the old `x[0]` ran a gather
  over the local devices, in which the 2-process trainer below deadlocked on JAX 0.10)."""
  port = free_port()
  procs = [launch(i, 2, port, 2, worker=FETCH_WORKER) for i in range(2)]
  outs = wait(procs, timeout=180)
  assert "process 1: done" in outs[1]


@pytest.mark.slow
def test_two_processes_match_one_process(tmp_path):
  port = free_port()
  multi = [launch(i, 2, port, 2, tmp_path / "multi", tmp_path / "multi.npz") for i in range(2)]
  single = launch(0, 1, 0, 4, tmp_path / "single", tmp_path / "single.npz")
  outs = wait(multi + [single])
  assert "process 1: done" in outs[1]
  m, s = np.load(tmp_path / "multi.npz"), np.load(tmp_path / "single.npz")
  assert int(m["process_count"]) == 2 and int(s["process_count"]) == 1
  assert int(m["device_count"]) == int(s["device_count"]) == 4
  assert int(m["n_leaves"]) == int(s["n_leaves"]) == 4
  for i in range(int(m["n_leaves"])):
    np.testing.assert_allclose(m[f"p{i}"], s[f"p{i}"], rtol=1e-4, atol=1e-5)
  assert abs(float(m["test_accuracy"]) - float(s["test_accuracy"])) < 0.01
  # per-example training correctness (forgetting events), gathered across both processes
  assert m["correct"].shape == s["correct"].shape == (20, 64)
  assert (m["correct"] == s["correct"]).mean() > 0.99
  assert float(m["test_accuracy"]) > 0.5  # 2 epochs on 640 examples
  # only process 0 wrote files; checkpoints of the shared workdir
  assert sorted(os.listdir(tmp_path / "multi")) == [".lock", "checkpoints", "config.json",
                                                    "manifest.json", "metrics.jsonl"]
  assert "20" in os.listdir(tmp_path / "multi" / "checkpoints")


@pytest.mark.slow
def test_comparison_two_processes_match_one_process(tmp_path):
  """The main job on a pod: every process runs the same cells (collective training steps,
  scoring split over hosts), process 0 alone writes the shared work folder."""
  port = free_port()
  multi = [launch(i, 2, port, 2, tmp_path / "multi", worker=COMPARE_WORKER) for i in range(2)]
  single = launch(0, 1, 0, 4, tmp_path / "single", worker=COMPARE_WORKER)
  outs = wait(multi + [single], timeout=900)
  assert "process 1: done" in outs[1]
  rows = {}
  for name in ("multi", "single"):
    with open(tmp_path / name / "results.json") as fh:
      rows[name] = {(r["method"], r["mode"], r["budget"]): r for r in json.load(fh)}
    assert (tmp_path / name / "report.html").exists()
  assert rows["multi"].keys() == rows["single"].keys() and len(rows["multi"]) == 4
  for key, r in rows["multi"].items():
    s = rows["single"][key]
    assert abs(r["network_accuracy"] - s["network_accuracy"]) < 0.02, (key, r, s)
    assert abs(r["krr_accuracy"] - s["krr_accuracy"]) < 0.02, (key, r, s)
  # the controls section: random real images and the best pruning rule under every label x
  # augmentation setting, the same on 2 x 2 devices as on 1 process
  ctl = {}
  for name in ("multi", "single"):
    with open(tmp_path / name / "distill_controls" / "summary.json") as fh:
      ctl[name] = {(s["method"], s["labels"], s["augment"]): s["acc_mean"] for s in json.load(fh)}
  assert ctl["multi"].keys() == ctl["single"].keys() and len(ctl["multi"]) == 2 * 6
  for key, acc in ctl["multi"].items():
    assert abs(acc - ctl["single"][key]) < 0.03, (key, acc, ctl["single"][key])
  # one writer: no temporary files left from a second process's atomic writes
  leftovers = [f for _, _, fs in os.walk(tmp_path / "multi") for f in fs if ".tmp" in f]
  assert not leftovers
