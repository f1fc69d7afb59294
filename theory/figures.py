"""Figures 1 and 2 of Sorscher et al. (2022): replica theory lines + simulation points.

Library entry point: ``make_figures(config, workdir) -> {"png": path, "json": path}``
(config from ``theory/configs/fig1.py`` or ``fig2.py``; ``config.figure`` selects which).
Every plotted number is also written to the JSON (atomically: tmp file + os.replace).
"""

from __future__ import annotations

import json
import math
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from core.io import atomic_savefig, atomic_write_text  # noqa: E402
from theory import frontier  # noqa: E402
from theory.replica import solve_replica  # noqa: E402
from theory.simulate import simulate_eps  # noqa: E402


def _write_json(obj, path):
  atomic_write_text(path, json.dumps(obj, indent=1, default=lambda o: np.asarray(o).tolist()))


def _colors(n):
  return plt.cm.viridis(np.linspace(0.0, 0.85, n))


def figure1(config):
  """Compute + draw Fig 1 (theta = 0). Returns (matplotlib figure, dict of numbers)."""
  alpha = np.geomspace(config.alpha_min, config.alpha_max, config.num_alpha)
  a_sim = np.asarray(config.alpha_sim, float)
  fr = np.asarray(config.fractions, float)
  data = dict(
    alpha_theory=alpha, alpha_sim=a_sim, fractions=fr, n=config.n, num_seeds=config.num_seeds
  )
  fig, axes = plt.subplots(1, 3, figsize=(16, 4.8))
  front_f = np.geomspace(config.frontier_f_min, 1.0, config.frontier_fractions_num)
  alpha_front = np.geomspace(config.alpha_min, config.frontier_alpha_max, config.num_alpha)
  front = frontier.pareto_frontier(alpha_front, front_f, 0.0)
  c = frontier.asymptotic_constant()
  data.update(
    frontier_alpha=alpha_front,
    frontier_eps=front["eps"],
    frontier_f_opt=front["f_opt"],
    frontier_keep_opt=front["keep_opt"],
    frontier_decay_rate=front["decay_rate"],
    power_law_c=c,
    crossover_alpha={str(f): frontier.crossover_alpha(f) for f in fr if f < 1},
  )
  for ax, keep in zip(axes[:2], ("hard", "easy")):
    th = solve_replica(alpha[None], fr[:, None], 0.0, keep)["eps"]
    sim = simulate_eps(
      config.n, a_sim[None], fr[:, None], 0.0, keep, config.num_seeds, config.seed, progress=True
    )
    data[f"theory_eps_keep_{keep}"] = th
    data[f"sim_eps_mean_keep_{keep}"], data[f"sim_eps_sem_keep_{keep}"] = sim["mean"], sim["sem"]
    for i, (f, col) in enumerate(zip(fr, _colors(len(fr)))):
      ax.plot(alpha, th[i], color=col, lw=2, label=f"f = {f:g}")
      ax.errorbar(a_sim, sim["mean"][i], yerr=sim["sem"][i], fmt="o", color=col, ms=5, capsize=3)
    sel = alpha_front <= config.alpha_max
    ax.plot(
      alpha_front[sel],
      front["eps"][sel],
      "k--",
      lw=1.5,
      label=f"Pareto frontier (best f ≥ {config.frontier_f_min:g})",
    )
    ax.set(
      xscale="log",
      yscale="log",
      xlabel=r"$\alpha_{prune} = P/N$ (examples kept per dimension)",
      ylabel=r"test error $\epsilon = \arccos(R)/\pi$",
      title=f"Keep {keep} examples (perfect probe)",
    )
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, title="lines: theory, dots: sim. N=%d" % config.n, title_fontsize=8)
  ax = axes[2]
  data["frontier_by_f_min"] = {}
  for f_min, ls in zip(config.frontier_f_mins, ["-", "--", "-."]):
    fr_i = frontier.pareto_frontier(
      alpha_front, np.geomspace(f_min, 1.0, config.frontier_fractions_num), 0.0
    )
    data["frontier_by_f_min"][str(f_min)] = fr_i["eps"]
    ax.plot(alpha_front, fr_i["eps"], "k", ls=ls, lw=2, label=f"Pareto frontier, f ≥ {f_min:g}")
  ax.plot(
    alpha_front,
    solve_replica(alpha_front, 1.0)["eps"],
    color="tab:blue",
    lw=2,
    label="no pruning (f = 1)",
  )
  ax.plot(
    alpha_front, c / alpha_front, ":", color="tab:red", lw=2, label=f"power law {c:.3f}/$\\alpha$"
  )
  ax.axvline(2.0, color="gray", lw=1)
  ax.text(
    2.1,
    1.5e-3,
    "capacity $\\alpha$=2:\nas f → 0 the frontier\ndrops to 0 here",
    fontsize=8,
    color="gray",
  )
  ax.set(
    yscale="log",
    ylim=(1e-3, 1.0),
    xlabel=r"$\alpha_{prune}$ (linear axis)",
    ylabel=r"test error $\epsilon$",
    title="Pareto frontier (best f and keep rule) vs power law",
  )
  ax.grid(True, which="both", alpha=0.3)
  ax.legend(fontsize=8)
  fig.suptitle(
    "Teacher-student perceptron: data pruning with a perfect probe (replica theory vs simulation)"
  )
  fig.tight_layout()
  return fig, data


def figure2(config):
  """Compute + draw Fig 2 (imperfect probe). Returns (figure, dict of numbers)."""
  alpha = np.geomspace(config.alpha_min, config.alpha_max, config.num_alpha)
  a_sim = np.asarray(config.alpha_sim, float)
  fr = np.asarray(config.fractions, float)
  th_demo = math.radians(config.theta_demo_deg)
  thetas = np.radians(np.asarray(config.thetas_deg, float))
  data = dict(
    alpha_theory=alpha,
    alpha_sim=a_sim,
    fractions=fr,
    theta_demo_deg=config.theta_demo_deg,
    thetas_deg=config.thetas_deg,
    n=config.n,
    num_seeds=config.num_seeds,
  )
  fig, axes = plt.subplots(1, 3, figsize=(16, 4.8))
  ax = axes[0]
  th = solve_replica(alpha[None], fr[:, None], th_demo, "hard")["eps"]
  sim = simulate_eps(
    config.n,
    a_sim[None],
    fr[:, None],
    th_demo,
    "hard",
    config.num_seeds,
    config.seed,
    progress=True,
  )
  data.update(theory_eps=th, sim_eps_mean=sim["mean"], sim_eps_sem=sim["sem"])
  for i, (f, col) in enumerate(zip(fr, _colors(len(fr)))):
    ax.plot(alpha, th[i], color=col, lw=2, label=f"f = {f:g}")
    ax.errorbar(a_sim, sim["mean"][i], yerr=sim["sem"][i], fmt="o", color=col, ms=5, capsize=3)
  ax.set(
    xscale="log",
    yscale="log",
    xlabel=r"$\alpha_{prune} = P/N$",
    ylabel=r"test error $\epsilon$",
    title=f"Keep hard, imperfect probe $\\theta$ = {config.theta_demo_deg:g}°",
  )
  ax.legend(fontsize=8, title="lines: theory, dots: sim. N=%d" % config.n, title_fontsize=8)
  ax.grid(True, which="both", alpha=0.3)
  front_f = np.geomspace(config.frontier_f_min, 1.0, config.frontier_fractions_num)
  cols = plt.cm.plasma(np.linspace(0, 0.8, len(thetas)))
  data["frontier_eps"], data["lossless_f"] = {}, {}
  at = np.geomspace(config.alpha_tot_min, config.alpha_tot_max, config.num_alpha_tot)
  for th_i, deg, col in zip(thetas, config.thetas_deg, cols):
    front = frontier.pareto_frontier(alpha, front_f, th_i, keeps=("hard",))
    data["frontier_eps"][str(deg)] = front["eps"]
    axes[1].plot(alpha, front["eps"], color=col, lw=2, label=f"$\\theta$ = {deg:g}°")
    free = frontier.lossless_fraction(at, th_i, "hard", rel_tol=config.lossless_rel_tol)
    data["lossless_f"][str(deg)] = free["f"]
    tail = (
      f"$f_*\\alpha_{{tot}}$ → {free['f'][-1] * at[-1]:.1f}"
      if deg == 0
      else f"$f_*$ → {free['f'][-1]:.2f}"
    )
    axes[2].plot(at, free["f"], "o-", color=col, lw=2, ms=4, label=f"$\\theta$ = {deg:g}°: {tail}")
  c = frontier.asymptotic_constant()
  axes[1].plot(alpha, c / alpha, "k:", lw=1.5, label=f"no pruning ~ {c:.2f}/$\\alpha$")
  axes[1].set(
    yscale="log",
    xlabel=r"$\alpha_{prune}$ (linear axis)",
    ylabel=r"best test error over f",
    title="Pareto frontier (keep hard) vs probe angle",
  )
  axes[1].legend(fontsize=8)
  axes[1].grid(True, which="both", alpha=0.3)
  axes[2].set(
    xscale="log",
    yscale="log",
    ylim=(None, 1.1),
    xlabel=r"$\alpha_{tot}$ (pool size / N)",
    ylabel=r"smallest free keep fraction $f_*$",
    title="How much of a pool can be pruned for free (keep hard):\n"
    f"smallest f with error within {100 * config.lossless_rel_tol:g}% of the whole pool",
  )
  axes[2].legend(fontsize=8)
  axes[2].grid(True, which="both", alpha=0.3)
  data["alpha_tot"] = at
  fig.suptitle(
    "Teacher-student perceptron: pruning with an imperfect probe at angle $\\theta$ to the teacher"
  )
  fig.tight_layout()
  return fig, data


def make_figures(config, workdir):
  """Compute the figure named by ``config.figure`` ('fig1' or 'fig2'); write PNG + JSON.

  Returns {"png": path, "json": path}.
  """
  os.makedirs(workdir, exist_ok=True)
  name = config.figure
  fig, data = {"fig1": figure1, "fig2": figure2}[name](config)
  png, js = os.path.join(workdir, f"{name}.png"), os.path.join(workdir, f"{name}.json")
  atomic_savefig(fig, png, dpi=80, bbox_inches="tight")
  _write_json(data, js)
  return {"png": png, "json": js}
