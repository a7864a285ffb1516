"""Audio-to-image recipe on the sonify release: prepare features, fine-tune PixArt-α, generate, evaluate.

Modules, each a script (`python -m training_recipe.<name>`): `prepare` (AST features + VAE latents),
`train` (accelerate), `generate` (ablations as options), `evaluate` (AIS / IIS / FID), `benchmarks`
(videos -> evaluation pairs), `bench_gpu` (step time and memory of the full-size model).
"""
