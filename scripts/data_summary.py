"""Prints a summary of the bundled offline datasets (shapes, class counts)."""
import numpy as np

from pruning import data


def main():
  for name in data.BUNDLED:
    s = data.load_dataset(name)
    print(f"{name}: train {s.train.x.shape} test {s.test.x.shape} classes {s.num_classes} "
          f"train class counts {np.bincount(s.train.y).tolist()}")


if __name__ == "__main__":
  main()
