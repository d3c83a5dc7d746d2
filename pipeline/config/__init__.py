"""A run's configuration: typed sections (`sections`) and how they are read (`loading`).

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
from pipeline.config.sections import (
    ConfigError,
    DataConfig,
    ExportConfig,
    ModelConfig,
    RunConfig,
    TrackingConfig,
    TrainConfig,
    TuneConfig,
    build_keywords_model,
    describe_validation_error,
)

__all__ = [
    "DEFAULT_CONFIG", "ConfigError", "DataConfig", "ExportConfig", "ModelConfig", "RunConfig", "TrackingConfig",
    "TrainConfig", "TuneConfig", "build_keywords_model", "default_config_path",
    "describe_validation_error", "dump_config", "load_config", "parse_override",
]
