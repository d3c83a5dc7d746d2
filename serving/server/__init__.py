"""A TensorFlow-Serving-compatible model server: same flags, APIs, answers and errors.

Four rooms, and the wiring at the top. A request comes in through a front, finds its
servable through management, and runs in the core:

  rest_api/     the REST front: the ASGI app, routes and handlers, JSON in and out, written
                byte for byte as TF Serving writes it
  grpc_api/     the gRPC front: PredictionService and ModelService
  management/   model management: models.config, version folders and policies, loading and
                unloading, status, warmup replay, batching/
  core/         the inference core both fronts call: Servable, Predict, Classify/Regress/
                MultiInference, GetModelMetadata, and TF Serving's statuses (errors)

  options       tensorflow_model_server's command-line flags
  model_server  wiring: models, batching and both fronts, started and stopped together
  main          the process: flags, signals, exit codes (`python -m serving` runs it)
  metrics       Prometheus metrics under TF Serving's names
  protos        MonitoringConfig and BatchingParameters, which tensorflow-serving-api lacks

The TensorProto <-> numpy codec is serving/codec.py, shared with the client.
"""
