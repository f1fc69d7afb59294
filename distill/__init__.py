"""Dataset distillation with infinite-width kernels: KIP and Label Solve.

Modules: `kernels` (NT NTK/NNGP of FC and ConvNets), `krr` (kernel ridge
regression), `kip` (Kernel Inducing Points), `label_solve` (closed-form labels),
`evaluate` (KRR and finite-network evaluation, `run_distillation`).
All neural_tangents imports live in this package.
"""
