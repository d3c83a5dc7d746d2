"""A smoothed character n-gram model: the baseline a character RNN must beat in bits/char.

Interpolated absolute discounting (Ney et al., 1994): every order-k estimate gives up a
discount D from each seen count and hands that mass to the order-(k-1) estimate, down to a
uniform distribution over the vocabulary, so an unseen character is never impossible.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict

from models.charlm import BOS


class CharNgram:
    """Character n-gram model of `order` (characters of context + 1)."""

    def __init__(self, order: int = 5, discount: float = 0.75):
        self.order, self.discount = order, discount
        self.counts: list[dict[str, Counter]] = [defaultdict(Counter) for _ in range(order)]
        self.totals: list[Counter] = [Counter() for _ in range(order)]  # per context
        self.vocabulary: set[str] = set()

    def fit(self, texts: list[str]) -> CharNgram:
        for text in texts:
            padded = BOS * (self.order - 1) + text
            self.vocabulary.update(text)
            for position in range(self.order - 1, len(padded)):
                char = padded[position]
                for k in range(self.order):
                    context = padded[position - k:position]
                    self.counts[k][context][char] += 1
                    self.totals[k][context] += 1
        return self

    def probability(self, context: str, char: str) -> float:
        """Return P(char | the last order-1 characters of context), interpolated."""
        probability = 1.0 / (len(self.vocabulary) + 1)  # +1: the unknown character
        for k in range(self.order):
            key = context[len(context) - k:] if k else ""
            seen = self.counts[k].get(key)
            if not seen:
                break
            total = self.totals[k][key]
            backoff = self.discount * len(seen) / total
            probability = max(seen.get(char, 0) - self.discount, 0) / total + backoff * probability
        return probability

    def bits_per_char(self, texts: list[str]) -> float:
        """Return the mean -log2 P(char | context) over every character of `texts`."""
        bits, chars = 0.0, 0
        for text in texts:
            padded = BOS * (self.order - 1) + text
            for position in range(self.order - 1, len(padded)):
                bits -= math.log2(self.probability(padded[:position][-(self.order - 1):],
                                                   padded[position]))
                chars += 1
        return bits / max(1, chars)
