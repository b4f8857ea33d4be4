"""Seeding the volume: `f5-batch seed` puts a model folder there, verified, so the worker can run offline.

- `sources`: where the files come from (the hub, a mirror, another model folder, random weights);
- `flow`: the one verify-and-move flow every source goes through (its docstring tells the steps);
- `random_models`: the random-weight models (`TINY`, `build_tiny`, `build_random`) for tests and benchmarks;
- `request`: what a command line asks for (volume, model name, source);
- `cli`: the command line, shared by `f5-batch seed` and `scripts/seed_volume.py`.
"""
