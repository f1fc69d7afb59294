"""Dataset distillation, every support set evaluated by the same finite network.

Kernel methods: `kernels` (neural-tangents NTK/NNGP of FC and ConvNets; every neural_tangents
import lives in this package, after `nt_compat`, our layer for current JAX), `krr` (kernel
ridge regression), `kip` (Kernel Inducing Points), `label_solve` (closed-form labels).
Network methods on the shared trainer's models: `unrolled` (dataset distillation through
unrolled training), `gradient_matching` (DC, DSA with `dsa`'s Siamese augmentation),
`distribution_matching` (DM); their shared loop: `synthetic`. Support sets: `support`;
evaluation: `evaluate`; label / augmentation / cost controls: `controls`.
"""
