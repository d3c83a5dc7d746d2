"""A run's whole configuration: `RunConfig`, its `model` section, and one-line validation errors.

`RunConfig` holds the data, model, train, tracking, export and tune sections (sections.py).
The `model` section is checked against the keyword arguments of the family's `build`, so a
misspelt or out-of-range model field fails at load time, naming the field, like any other.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import typing
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    create_model,
    field_validator,
    model_validator,
)

from models import get_family
from pipeline.config.sections import (
    DataConfig,
    ExportConfig,
    Section,
    TrackingConfig,
    TrainConfig,
    TuneConfig,
)

ModelName = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]


class ModelConfig(Section):
    """`family` picks the module in models/; every other key is a keyword of its `build`."""

    family: str = "cnn"
    params: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _split_params(cls, values: Any) -> Any:
        if not isinstance(values, dict):
            return values
        values = dict(values)
        family = values.pop("family", "cnn")
        params = dict(values.pop("params", {}) or {})
        params.update(values)
        return {"family": family, "params": params}

    @model_validator(mode="after")
    def _check_params(self) -> ModelConfig:
        validator = build_keywords_model(self.family)
        try:
            validated = validator.model_validate(self.params)
        except ValidationError as error:
            raise ValueError(
                describe_validation_error(error, prefix="model", known=list(validator.model_fields))
            ) from None
        object.__setattr__(self, "params", validated.model_dump())
        return self


class RunConfig(Section):
    name: ModelName = "fashion_cnn"  # model name: saved_models/<name>/, registry name
    seed: int = 42
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    export: ExportConfig = Field(default_factory=ExportConfig)
    tune: TuneConfig = Field(default_factory=TuneConfig)

    @field_validator("model", mode="before")
    @classmethod
    def _model_section(cls, value: Any) -> Any:
        return {} if value is None else value

    @model_validator(mode="after")
    def _check_tuned_names(self) -> RunConfig:
        known = build_keywords_model(self.model.family).model_fields
        for name, spec in self.tune.hyperparameters.items():
            if name not in known:
                raise ValueError(f"tune.hyperparameters.{name}: not a keyword of the "
                                 f"{self.model.family} family; known: {', '.join(known)}")
            values = spec if isinstance(spec, list) else (
                [spec[key] for key in ("min", "max") if key in spec]
                if isinstance(spec, dict) else [spec])
            for value in values:
                try:
                    self.model.model_validate({"family": self.model.family, name: value})
                except ValidationError as error:
                    raise ValueError(f"tune.hyperparameters.{name}: "
                                     f"{describe_validation_error(error).split(': ', 1)[-1]}"
                                     ) from None
        return self

    @model_validator(mode="after")
    def _check_test_time_flip(self) -> RunConfig:
        if self.export.test_time_flip and self.model.family == "charlm":
            raise ValueError("export.test_time_flip: a character language model reads text, "
                             "not images; set it to false")
        return self

    def fingerprint(self) -> str:
        """Return a digest of what determines the trained weights (to resume safely)."""
        relevant = self.model_dump(mode="json", include={"name", "seed", "data", "model"})
        relevant["train"] = self.train.model_dump(mode="json", exclude={"resume", "epochs"})
        digest = hashlib.sha256(json.dumps(relevant, sort_keys=True).encode()).hexdigest()
        return digest[:16]

    def flat(self) -> dict[str, str]:
        """Return every resolved field as `section.field` -> string (MLflow params)."""
        flat: dict[str, str] = {}

        def walk(prefix: str, value: Any) -> None:
            if isinstance(value, dict):
                for key, item in value.items():
                    walk(f"{prefix}.{key}" if prefix else key, item)
            else:
                flat[prefix] = json.dumps(value) if isinstance(value, (list, tuple)) else str(value)

        walk("", self.plain())
        return flat

    def plain(self) -> dict[str, Any]:
        """Return every resolved field as plain values, `model` flat as in a YAML file."""
        dumped = self.model_dump(mode="json")
        dumped["model"] = {"family": self.model.family, **self.model.params}
        return dumped


def build_keywords_model(family: str) -> type[BaseModel]:
    """Return a pydantic model of `family`'s build keywords: names, types, defaults, ranges."""
    build = get_family(family).build
    hints = typing.get_type_hints(build, include_extras=True)
    fields = {
        name: (hints[name], parameter.default)
        for name, parameter in inspect.signature(build).parameters.items()
        if parameter.kind is inspect.Parameter.KEYWORD_ONLY
    }
    return create_model(
        f"{family}_keywords", __config__=ConfigDict(extra="forbid", strict=False), **fields
    )


def describe_validation_error(
    error: ValidationError, prefix: str = "", known: list[str] | None = None
) -> str:
    """Return one line naming each problem: `field.path: message (got value)`.

    Errors raised by our own validators already name their field and are kept as they are.
    """
    problems = []
    for item in error.errors():
        if item["type"] == "value_error":
            problems.append(item["msg"].removeprefix("Value error, "))
            continue
        location = ".".join(str(part) for part in (prefix, *item["loc"]) if part != "")
        message = item["msg"]
        if item["type"] == "extra_forbidden":
            fields = known if known is not None else _section_fields(item["loc"][:-1])
            message = "unknown field" + (f"; known fields: {', '.join(fields)}" if fields else "")
        elif item["type"] != "missing":
            message += f" (got {item['input']!r})"
        problems.append(f"{location}: {message}")
    return "; ".join(problems)


def _section_fields(loc: tuple[Any, ...]) -> list[str]:
    section: Any = RunConfig
    for part in loc:
        field = section.model_fields.get(str(part))
        if field is None or not (isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel)):
            return []
        section = field.annotation
    return list(section.model_fields)
