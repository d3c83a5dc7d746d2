"""The stages of a run, in the order they hand work on: data -> train (-> evaluate,
publish) -> tune -> promote. Each exposes `run(...)`, which is what the CLI and the tests
call; stages hand work over through MLflow run ids and the files in saved_models/ and
tuning/."""
