"""A non-neural baseline measured in the same run: character n-grams + logistic regression.

A neural model's test accuracy means little alone. For text, TF-IDF weighted character
1- to 4-grams (within word boundaries) fed to a multinomial logistic regression is the
classic strong baseline (for language identification, nearly the state of the art): the
network has to beat it on the same split to earn its cost. Logged as `baseline_test_*`
metrics and `baseline/per_class_report.md` beside the model's own `test_*`.
"""

from __future__ import annotations

import time

import numpy as np

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
