"""A TensorFlow-Serving-compatible model server: same flags, APIs, answers and errors.

Modules, by concept:
  options      tensorflow_model_server's command-line flags
  config       models.config (ModelServerConfig text format) and its validation
  protos       MonitoringConfig and BatchingParameters, which tensorflow-serving-api lacks
  errors       TF Serving statuses (gRPC code + message) and their HTTP mapping
  tensors      TensorProto <-> numpy
  servable     one loaded SavedModel version and its signatures
  inference    Predict on a servable, with TF Serving's checks
  examples     Classify, Regress and MultiInference (tf.Example inputs)
  source       which version folders exist and are complete, per version policy
  manager      loading, unloading, labels, status history, config reloads
  batching     --enable_batching: merging concurrent requests into one call
  warmup       --enable_model_warmup: replaying assets.extra/tf_serving_warmup_requests
  metrics      Prometheus metrics under TF Serving's names
  json_writer  RapidJSON PrettyWriter's layout and TF Serving's number formatting
  json_values  JSON documents and values -> numpy, with RapidJSON's rules
  json_requests  REST bodies -> tensors and tf.Example protos
  json_responses tensors and results -> REST bodies
  rest         the REST API's routes and handlers (TF Serving's ProcessRequest)
  http_app     the ASGI transport for it: body limit, threads, timeout, metrics page
  grpc_api     PredictionService and ModelService
  main         wiring, startup, shutdown
"""
