"""Benchmarks of the pipeline; results (JSON and Markdown) go to bench/results/.

`make bench-train` runs three: `python -m pipeline.bench.accuracy` (time to 0.90/0.92/0.93
test accuracy of `make train`'s path beside bare Keras), `python -m pipeline.bench.choices`
(training step time under each speed choice: XLA, oneDNN, threads, batch size, precision)
and `python -m pipeline.bench.train` (input pipeline and training path throughput).
`make bench-tune` runs `python -m pipeline.bench.tune` (resident memory across a sweep).
"""
