"""Figure 1: perfect probe (theta = 0): learning curves with pruning and the Pareto frontier.

Command (repo root):
    .venv/bin/python scripts/theory_figures.py --config=theory/configs/fig1.py --workdir=/tmp/theory_fig1
    .venv/bin/python scripts/theory_figures.py --config=theory/configs/fig1.py:quick --workdir=/tmp/q   # ~1 min

Writes fig1.png and fig1.json to the workdir.  Expected result (full config, ~5-10 min on
2 busy CPU cores): simulations (N=200, 4 seeds) lie on the theory lines within error bars;
keep-easy is best for scarce data and keep-hard for abundant data (crossover at
alpha_prune ~ 1-3 depending on f); the f = 1 curve decays as 0.50/alpha while the Pareto
frontier (best f at each alpha_prune) decays exponentially.
"""

import ml_collections
from core.config import check_arg


def get_config(arg=None):
  arg = check_arg(arg, "quick")
  c = ml_collections.ConfigDict()
  c.figure = "fig1"
  c.n = 200
  c.num_seeds = 4
  c.seed = 0
  c.fractions = [1.0, 0.5, 0.2]
  c.alpha_sim = [0.5, 1.0, 2.0, 4.0, 8.0]
  c.alpha_min, c.alpha_max, c.num_alpha = 0.25, 12.0, 60
  c.frontier_fractions_num = 40  # f grid geomspace(frontier_f_min, 1) for the Pareto frontier
  c.frontier_f_min = (
    0.05  # pool at most 20x the kept set (f -> 0 makes eps -> 0 beyond alpha_prune = 2)
  )
  c.frontier_alpha_max = 30.0
  c.frontier_f_mins = [0.5, 0.2, 0.05]  # panel C: frontier restricted to f >= f_min
  if arg == "quick":
    c.n = 100
    c.num_seeds = 2
    c.fractions = [1.0, 0.5, 0.2]
    c.alpha_sim = [1.0, 4.0]
    c.num_alpha = 25
    c.frontier_fractions_num = 12
  return c
