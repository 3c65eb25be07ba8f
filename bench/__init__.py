"""Benchmarks that need a PostgreSQL server; each is a module run with `python -m bench.<name>`."""
