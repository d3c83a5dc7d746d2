"""tfpipe's pipeline: `python -m pipeline <command>` runs one stage on one validated config.

Read it in this order: `cli` (the commands) -> `config/` (what a run is told) ->
`stages/` (data, train, evaluate, tune, promote: one module per stage, each with `run`) ->
`tracking/` (MLflow, the only package importing it). What the stages stand on: `sources/`
(where examples come from), `fitting/` (what Keras' fit runs with: devices, callbacks,
KerasTuner's HyperModel and Tuner), `reports/` (figures and insights logged to MLflow).
`bench/` measures the training path and the sweep's memory.
"""
