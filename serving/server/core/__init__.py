"""The inference core: what both fronts (and warmup replay) call to run a request.

  errors      TF Serving statuses (gRPC code + message) and their HTTP mapping
  servable    one loaded model version: SignatureDefs, the call, the input checks
  inference   Predict, with TF Serving's checks and messages (predict_util.cc)
  examples    Classify, Regress and MultiInference on tf.Example inputs
  metadata    GetModelMetadata (the signature_def map)

It knows nothing of HTTP, gRPC servers, files or configs.
"""
