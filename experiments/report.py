"""Report of a pruning-vs-distillation comparison: CSV, plots, report.md and report.html.

Input rows (one per method x mode x budget x seed) are dicts with keys
  method, mode, family ('pruning'|'distillation'), budget (examples kept),
  per_class (or -1 for fraction budgets), fraction, seed,
  network_accuracy, krr_accuracy.
Plots: test error vs budget (log-log, mean +- std over seeds) for every
method under both evaluations; the pruning-vs-distillation frontier; the
theory figure beside the measured keep-hard / keep-easy curves.
"""
from __future__ import annotations

import base64
import csv
import io
import json
import os
from collections import defaultdict

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from core.io import atomic_savefig, atomic_write_text  # noqa: E402
from matplotlib.ticker import NullFormatter  # noqa: E402

EVALS = (("network_accuracy", "finite network"), ("krr_accuracy", "kernel regression (NTK)"))
CSV_FIELDS = ("method", "mode", "family", "budget", "num_examples", "per_class", "fraction", "seed",
              "network_accuracy", "krr_accuracy", "seconds")


def write_csv(rows, path: str) -> None:
  buf = io.StringIO()
  w = csv.DictWriter(buf, fieldnames=CSV_FIELDS, extrasaction="ignore")
  w.writeheader()
  for r in rows:
    w.writerow(r)
  atomic_write_text(path, buf.getvalue())


def label(method: str, mode: str) -> str:
  return method if mode in ("", "-", None) else f"{method} ({mode})"


def aggregate(rows, key: str):
  """{label: (budgets, mean, std, n_seeds)} of `key` over seeds."""
  groups = defaultdict(lambda: defaultdict(list))
  fam = {}
  for r in rows:
    v = r.get(key)
    if v is None or not np.isfinite(v):
      continue
    lab = label(r["method"], r["mode"])
    groups[lab][int(r["budget"])].append(float(v))
    fam[lab] = r["family"]
  out = {}
  for lab, by_budget in groups.items():
    b = np.array(sorted(by_budget))
    vals = [np.array(by_budget[x]) for x in b]
    out[lab] = (b, np.array([v.mean() for v in vals]), np.array([v.std() for v in vals]),
                np.array([len(v) for v in vals]), fam[lab])
  return out


def _loglog(ax):
  ax.set_xscale("log"); ax.set_yscale("log")
  ax.xaxis.set_minor_formatter(NullFormatter())  # minor tick labels overlap


METHOD_COLORS = {"random": "black", "el2n": "tab:red", "grand": "tab:purple",
                 "forgetting": "tab:brown", "prototype": "tab:green", "input_norm": "tab:gray",
                 "kip": "tab:blue", "label_solve": "tab:orange", "ssl_prototype": "tab:olive",
                 "dsa": "tab:cyan", "dm": "tab:pink", "dd": "darkgoldenrod", "dc": "teal"}


def _style(lab: str, family: str):
  """One colour per method; keep-hard solid circles, keep-easy dashed squares."""
  color = METHOD_COLORS.get(lab.split(" ")[0])
  if family == "distillation":
    return dict(marker="*", linestyle="-", linewidth=2.4, markersize=11, color=color)
  if lab.startswith("random"):
    return dict(marker="o", linestyle="-", color="black", linewidth=2.2)
  easy = "easy" in lab
  return dict(marker="s" if easy else "o", linestyle="--" if easy else "-", markersize=5,
              color=color, linewidth=1.4)


def plot_error_vs_budget(rows, path: str, dataset: str) -> str:
  fig, axes = plt.subplots(1, 2, figsize=(13, 5.2), sharey=False)
  for ax, (key, title) in zip(axes, EVALS):
    agg = aggregate(rows, key)
    for lab in sorted(agg, key=lambda s: (agg[s][4], s)):
      b, m, s, n, family = agg[lab]
      err = np.clip(1 - m, 1e-3, None)
      ax.errorbar(b, err, yerr=s, capsize=2, label=lab, **_style(lab, family))
    _loglog(ax)
    ax.set_xlabel("training examples kept / distilled (log)")
    ax.set_ylabel("test error (log)")
    ax.set_title(f"{dataset}: evaluated by {title}")
    ax.grid(True, which="both", alpha=0.3)
  axes[1].legend(fontsize=7.5, loc="best", ncol=1)
  fig.suptitle("Test error vs data budget (mean ± std over seeds)")
  fig.tight_layout()
  return atomic_savefig(fig, path, dpi=110)


def frontier(rows, key: str):
  """Best mean accuracy per budget within each family: {family: (budgets, acc, label)}."""
  agg = aggregate(rows, key)
  best = defaultdict(dict)
  for lab, (b, m, _, _, family) in agg.items():
    for x, acc in zip(b, m):
      if x not in best[family] or acc > best[family][x][0]:
        best[family][x] = (acc, lab)
  return {fam: (np.array(sorted(d)), np.array([d[x][0] for x in sorted(d)]),
                [d[x][1] for x in sorted(d)]) for fam, d in best.items()}


def plot_frontier(rows, path: str, dataset: str) -> str:
  fig, axes = plt.subplots(1, 2, figsize=(13, 5))
  colors = {"pruning": "tab:blue", "distillation": "tab:red"}
  for ax, (key, title) in zip(axes, EVALS):
    for family, (b, acc, labs) in sorted(frontier(rows, key).items()):
      err = np.clip(1 - acc, 1e-3, None)
      ax.plot(b, err, "-o", color=colors.get(family), linewidth=2, label=f"best {family}")
      for k, (x, e, lab) in enumerate(zip(b, err, labs)):
        # alternate above / below the point so neighbouring budgets' labels do not collide
        ax.annotate(lab, (x, e), fontsize=6.5, xytext=(3, 4 if k % 2 == 0 else -9),
                    textcoords="offset points", color=colors.get(family))
    _loglog(ax)
    ax.set_xlabel("training examples kept / distilled (log)")
    ax.set_ylabel("test error of the best method (log)")
    ax.set_title(f"{dataset}: frontier, {title}")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
  fig.tight_layout()
  return atomic_savefig(fig, path, dpi=110)


def plot_theory_beside_measured(rows, theory_curves: dict, path: str, dataset: str,
                                full_size: int) -> str:
  """Left: theory eps(alpha_prune) for keep-hard/keep-easy at a few f (theta=0);
  right: measured error vs fraction kept for the same score keeping hard/easy."""
  fig, axes = plt.subplots(1, 2, figsize=(13, 5))
  ax = axes[0]
  for name, c in theory_curves.items():
    ax.plot(c["alpha_prune"], c["eps"], c.get("style", "-"), label=name)
  ax.set_yscale("log")
  ax.set_xlabel("alpha_prune = examples kept / dimension N")
  ax.set_ylabel("generalisation error eps (log)")
  ax.set_title("Theory: perceptron, perfect probe (replica)")
  ax.grid(True, which="both", alpha=0.3)
  ax.legend(fontsize=7.5)
  ax = axes[1]
  agg = aggregate([r for r in rows if r["family"] == "pruning"], "network_accuracy")
  for lab in sorted(agg):
    b, m, s, _, family = agg[lab]
    ax.errorbar(b / full_size, np.clip(1 - m, 1e-3, None), yerr=s, capsize=2, label=lab,
                **_style(lab, family))
  _loglog(ax)
  ax.set_xlabel("fraction of the training set kept (log)")
  ax.set_ylabel("test error (log)")
  ax.set_title(f"Measured: {dataset}, finite network")
  ax.grid(True, which="both", alpha=0.3)
  ax.legend(fontsize=7)
  fig.suptitle("Theory regimes beside measured pruning curves: keep-easy wins when data is "
               "scarce, keep-hard when it is abundant")
  fig.tight_layout()
  return atomic_savefig(fig, path, dpi=110)


def markdown_table(rows, key: str) -> str:
  agg = aggregate(rows, key)
  budgets = sorted({int(r["budget"]) for r in rows})
  head = "| method | " + " | ".join(str(b) for b in budgets) + " |"
  sep = "|---|" + "---|" * len(budgets)
  lines = [head, sep]
  for lab in sorted(agg, key=lambda s: (agg[s][4], s)):
    b, m, s, _, _ = agg[lab]
    cell = {int(x): f"{100 * mm:.1f} ± {100 * ss:.1f}" for x, mm, ss in zip(b, m, s)}
    lines.append(f"| {lab} | " + " | ".join(cell.get(x, "") for x in budgets) + " |")
  return "\n".join(lines)


def write_report(rows, workdir: str, *, dataset: str, config_json: str, plots: dict,
                 notes: str = "", sections: tuple = ()) -> dict:
  """Writes report.md and a self-contained report.html (PNG embedded as base64).

  `sections`: further markdown sections (e.g. the scaling experiment's), whose image links
  are relative to `workdir`."""
  md = [f"# Pruning vs distillation on `{dataset}`", "",
        "Test accuracy (%) by number of training examples kept (pruning) or distilled "
        "(KIP / Label Solve), mean ± std over seeds.", ""]
  if notes:
    md += [notes, ""]
  for key, title in EVALS:
    md += [f"## Evaluated by {title}", "", markdown_table(rows, key), ""]
  md += ["## Plots", ""]
  for name, p in plots.items():
    md += [f"### {name}", "", f"![{name}]({os.path.relpath(p, workdir)})", ""]
  for section in sections:
    md += [section.strip(), ""]
  md += ["## Resolved config", "", "```json", config_json, "```", ""]
  md_text = "\n".join(md)
  atomic_write_text(os.path.join(workdir, "report.md"), md_text)

  html = ["<!doctype html><html><head><meta charset='utf-8'>",
          f"<title>Pruning vs distillation: {dataset}</title>",
          "<style>body{font-family:sans-serif;max-width:1200px;margin:auto}"
          "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 6px}"
          "img{max-width:100%}</style></head><body>"]
  for line in md_text.splitlines():
    if line.startswith("!["):
      name = line[2:line.index("]")]
      target = line[line.index("](") + 2:line.rindex(")")]
      with open(os.path.join(workdir, target), "rb") as fh:
        b64 = base64.b64encode(fh.read()).decode()
      html.append(f"<img alt='{name}' src='data:image/png;base64,{b64}'>")
    elif line.startswith("#"):
      level = len(line) - len(line.lstrip("#"))
      html.append(f"<h{level}>{line.lstrip('#').strip()}</h{level}>")
    elif line.startswith("|---"):
      continue
    elif line.startswith("|"):
      cells = [c.strip() for c in line.strip("|").split("|")]
      html.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    elif line.startswith("```"):
      html.append("<pre>" if line == "```json" else "</pre>")
    else:
      html.append(line + ("<br>" if line else ""))
  # Wrap consecutive table rows in <table>.
  out, in_table = [], False
  for h in html:
    if h.startswith("<tr>") and not in_table:
      out.append("<table>"); in_table = True
    if not h.startswith("<tr>") and in_table:
      out.append("</table>"); in_table = False
    out.append(h)
  out.append("</body></html>")
  atomic_write_text(os.path.join(workdir, "report.html"), "\n".join(out))
  return {"report.md": os.path.join(workdir, "report.md"),
          "report.html": os.path.join(workdir, "report.html")}


def write_json(obj, path: str) -> None:
  atomic_write_text(path, json.dumps(obj, indent=1, sort_keys=True, default=float))
