"""A run's configuration: typed sections (`sections`, `run_config`) and how they are read
(`loading`).

Everything else imports from here: `load_config`, `RunConfig` and its sections,
`ConfigError`.
"""

from pipeline.config.loading import (
    DEFAULT_CONFIG,
    default_config_path,
    dump_config,
    load_config,
    parse_override,
)
from pipeline.config.run_config import (
    ModelConfig,
    RunConfig,
    build_keywords_model,
    describe_validation_error,
)
from pipeline.config.sections import (
    ConfigError,
    DataConfig,
    ExportConfig,
    TrackingConfig,
    TrainConfig,
    TuneConfig,
)

__all__ = [
    "DEFAULT_CONFIG", "ConfigError", "DataConfig", "ExportConfig", "ModelConfig", "RunConfig", "TrackingConfig",
    "TrainConfig", "TuneConfig", "build_keywords_model", "default_config_path",
    "describe_validation_error", "dump_config", "load_config", "parse_override",
]
