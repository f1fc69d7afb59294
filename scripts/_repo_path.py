"""Imported first by every script in scripts/.

`python scripts/X.py` puts scripts/ at the front of sys.path, where
scripts/distill.py and scripts/theory.py would shadow the `distill` and
`theory` packages. Put the repository root first and drop scripts/ instead.
"""
import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [os.path.dirname(_HERE)] + [
    p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]
