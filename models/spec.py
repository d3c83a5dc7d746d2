"""What a model family needs to know about its input, decided by the data stage."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

InputKind = Literal["image", "text", "sequence"]


@dataclass(frozen=True)
class InputSpec:
    """Shape and meaning of one raw example, as the SavedModel will receive it.

    `shape` excludes the batch dimension. Images are uint8 pixels (H, W, C); text is one
    string per example (shape ()); sequences are float32 (timesteps, features).
    `vocabulary` is the text vocabulary learned on the training split: the model embeds it,
    so the SavedModel takes raw strings and cannot drift from training.
    """

    kind: InputKind
    shape: tuple[int, ...]
    dtype: str
    vocabulary: tuple[str, ...] = ()
    sequence_length: int = 0
    split: str = "whitespace"  # text: "whitespace" (word tokens) or "character"

    @property
    def name(self) -> str:
        """The input's name in the Keras model and in the serving signature."""
        return self.kind

    @classmethod
    def image(cls, height: int, width: int, channels: int) -> InputSpec:
        return cls(kind="image", shape=(height, width, channels), dtype="uint8")

    @classmethod
    def text(cls, vocabulary: tuple[str, ...], sequence_length: int,
             split: str = "whitespace") -> InputSpec:
        return cls(
            kind="text", shape=(), dtype="string", vocabulary=vocabulary,
            sequence_length=sequence_length, split=split,
        )

    @property
    def standardize(self) -> str:
        """TextVectorization's standardize: characters keep punctuation (it tells languages apart)."""
        return "lower" if self.split == "character" else "lower_and_strip_punctuation"

    @classmethod
    def sequence(cls, timesteps: int, features: int) -> InputSpec:
        return cls(kind="sequence", shape=(timesteps, features), dtype="float32")
