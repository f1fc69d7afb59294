"""Teacher-student perceptron theory of data pruning (Sorscher et al., NeurIPS 2022)."""
