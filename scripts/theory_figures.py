"""Teacher-student data-pruning theory figures (Sorscher et al. 2022, Figs 1 and 2).

    .venv/bin/python scripts/theory_figures.py --config=theory/configs/fig1.py --workdir=/tmp/fig1
    .venv/bin/python scripts/theory_figures.py --config=theory/configs/fig2.py:quick --config.n=100 --workdir=/tmp/q
"""

from absl import app, flags  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from theory.figures import make_figures  # noqa: E402

_CONFIG = config_flags.DEFINE_config_file("config", None, "theory/configs/fig1.py or fig2.py[:quick]")
_WORKDIR = flags.DEFINE_string("workdir", None, "output directory for PNG + JSON")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
    del argv
    paths = make_figures(_CONFIG.value, _WORKDIR.value)
    for name, path in paths.items():
        print(f"{name}: {path}")


if __name__ == "__main__":
    app.run(main)
