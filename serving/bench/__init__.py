"""Serving benchmarks and the load they send: `make bench-serve`, `make bench-soak`, `make tune-batching`.

  serve          bench-serve: one-client latency of each path, then the load matrix
  load_matrix    bench-serve's load half: batching off and on, 1 to 64 clients, where time goes
  load           closed-loop load from client processes, and the bare gRPC echo server
  servers        the model, its inputs and the server subprocesses a benchmark runs against
  soak           bench-soak: hot reloads under load, failed requests and resident memory
  tune_batching  tune-batching: a sweep of batching parameters against a p99 SLO
  demo_model     the small CNN benchmarked when saved_models/ has no model
"""
