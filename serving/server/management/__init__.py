"""Model management: which versions of which models are served, and their lifecycle.

  config         models.config (ModelServerConfig text format) and its validation
  source         which version folders exist and are complete, per version policy
  loader         a SavedModel version folder -> a Servable
  manager        loading, unloading, labels, reloads; resolving a request's ModelSpec
  status         GetModelStatus's answer from each version's recorded states
  warmup_replay  --enable_model_warmup: replaying assets.extra/tf_serving_warmup_requests
  batching/      --enable_batching: its parameters, queues and scheduler (calls merged into batches)
"""
