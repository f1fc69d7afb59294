"""Pruning scores and selection, on the platform in `core` (data, models, trainer).

Scores (`scores.compute_scores`, one registry): EL2N, GraNd (`grand`, `grand_fast`), forgetting,
prototypes (PCA / random features, `prototypes`; self-supervised encoders, `ssl`,
`ssl_augment`), uncertainty and training-dynamics scores (`uncertainty`), coreset selectors
(`coreset`), selection via a small proxy (`proxy`); their shared runs: `scoring_runs`.
Score files and per-host shards: `score_io`. Keep rules: `select`, `budget`. Online selection
in the trainer: `rholoss` (RHO-LOSS), `infobatch`. Agreement between runs: `reliability`.
Noisy labels and holdouts for those experiments: `label_noise`.
"""
