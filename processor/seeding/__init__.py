"""Seeding the volume: `f5-batch seed` puts a model folder there, verified, so the worker can run offline.

- `sources`: where the files come from (the hub, a mirror, another model folder, random weights);
- `flow`: the one verify-and-move flow every source goes through (its docstring tells the steps);
- `random_models`: the random-weight models (`TINY`, `build_tiny`, `build_random`) for tests and benchmarks;
- `random_asr`: the tiny random-weight Whisper (`build_tiny_asr`) that `--tiny` writes to asr/tiny;
- `asr_sources`: where an ASR model's files come from (a Whisper repository of the hub, a mirror, the tiny build);
- `request`: what a command line asks for (volume, the models to seed, their names and sources);
- `cli`: the command line, shared by `f5-batch seed` and `scripts/seed_volume.py`.
"""
