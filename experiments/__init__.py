"""Experiments that span packages: the pruning-vs-distillation comparison and its report."""
