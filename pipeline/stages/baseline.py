"""The non-neural baselines measured in the same run, which a network has to beat.

A neural model's test accuracy means little alone. For text classification, TF-IDF weighted character
1- to 4-grams (within word boundaries) fed to a multinomial logistic regression is the
classic strong baseline (for language identification, nearly the state of the art): the
network has to beat it on the same split to earn its cost. Logged as `baseline_test_*`
metrics and `baseline/per_class_report.md` beside the model's own `test_*`.

For a character language model, `CharNgram` is a smoothed character n-gram, the baseline a
character RNN must beat in bits/char. Interpolated absolute discounting (Ney et al., 1994):
every order-k estimate gives up a discount D from each seen count and hands that mass to
the order-(k-1) estimate, down to a uniform distribution over the vocabulary, so an unseen
character is never impossible.
"""

from __future__ import annotations

import math
import time
from collections import Counter, defaultdict

import numpy as np

from models.charlm import BOS
from pipeline.stages.data import Datasets
from pipeline.stages.evaluate import classification_report
from pipeline.tracking import Run


def _texts(data: Datasets, split: str) -> tuple[list[str], np.ndarray]:
    texts, labels = [], []
    for text, label in data.unbatched[split].as_numpy_iterator():
        texts.append(text.decode("utf-8"))
        labels.append(label)
    return texts, np.asarray(labels)


def run(data: Datasets, mlflow_run: Run) -> dict[str, float]:
    """Fit the baseline on the train split, log its test metrics and report; return them."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    if data.input_spec.kind != "text":
        raise ValueError("train.baseline char_ngram_logreg needs text data, not "
                         f"{data.input_spec.kind}")
    started = time.perf_counter()
    train_texts, train_labels = _texts(data, "train")
    test_texts, test_labels = _texts(data, "test")
    vectorizer = TfidfVectorizer(analyzer="char_wb", ngram_range=(1, 4), min_df=2,
                                 sublinear_tf=True, max_features=200_000, lowercase=True)
    classifier = LogisticRegression(C=10.0, max_iter=2000)
    classifier.fit(vectorizer.fit_transform(train_texts), train_labels)
    probabilities = np.zeros((len(test_texts), data.num_classes))
    probabilities[:, classifier.classes_] = classifier.predict_proba(
        vectorizer.transform(test_texts))
    report = classification_report(test_labels, probabilities, data.class_names)
    metrics = {"baseline_test_accuracy": report.accuracy,
               "baseline_test_macro_f1": report.macro_f1,
               "baseline_fit_seconds": time.perf_counter() - started}
    mlflow_run.log_metrics(metrics)
    mlflow_run.log_text("Character 1-4-gram TF-IDF + logistic regression\n\n" + report.markdown(),
                        "baseline/per_class_report.md")
    return metrics


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
