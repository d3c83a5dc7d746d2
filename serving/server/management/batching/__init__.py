"""--enable_batching: concurrent calls merged into one batch, as TF Serving's BatchingSession.

  options    BatchingParameters (--batching_parameters_file) with TF Serving's defaults and checks
  queues     one caller's call, its pieces, and the batches of one (servable, signature, shapes)
  scheduler  the shared pool of batch threads that forms, pads, runs and splits batches
"""
