"""Drivers and reports that span packages: the main job (`compare`, prune or distil?), the
scaling experiment, sweeps, selectors, score reliability, RHO-LOSS, distillation controls."""
