"""Benchmarks of the pipeline: `python -m pipeline.bench.train` (`make bench-train`: input
pipeline and training path throughput) and `python -m pipeline.bench.tune` (`make
bench-tune`: resident memory across a sweep's trials). Results go to bench/results/."""
