"""From the MLflow registry to what is served: the registry's aliases as TF Serving's config.

  registry_config  ServedModels (plain data) -> models.config with version labels, rollout steps
  gate             a candidate version served alone by a real server, checked against in-process
  rollout          moving a running server to a new config: load, wait, move labels, unload
  server_record    <models dir>/.server.json: the server `make serve` started, for promote/rollback
"""
