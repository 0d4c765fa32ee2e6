"""Speed benchmarks, run by `resdet benchmark NAME` (shipped with the package)."""
