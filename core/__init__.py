"""The platform every experiment runs on: data (`data`: bundled, TFDS, record files), models,
losses, optimisers (`optim`), train state, the data-parallel train loop (`train`), prediction
over every example once (`predict`), every device and pmap line (`parallel`), the index sampler,
checkpoints, atomic files and fingerprints (`io`), configs and the command line (`config`,
`cli`), the drivers' per-cell cache (`cells`)."""
