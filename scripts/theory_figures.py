"""Teacher-student data-pruning theory figures (Sorscher et al. 2022, Figs 1 and 2).

    .venv/bin/python scripts/theory_figures.py --config=theory/configs/fig1.py --workdir=/tmp/fig1
    .venv/bin/python scripts/theory_figures.py --config=theory/configs/fig2.py:quick --config.n=100 --workdir=/tmp/q
"""

from core import cli
from theory.figures import make_figures

cli.define_flags()


def main(config, workdir):
  for name, path in make_figures(config, workdir).items():
    print(f"{name}: {path}")


if __name__ == "__main__":
  cli.run(main)
