"""Benchmarks and experiments of optax_exptest; run `python -m benchmarks --help`."""
