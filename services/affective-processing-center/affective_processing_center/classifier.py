"""Multinomial naive Bayes text-affect classifier (stdlib only), trained on the embedded corpus.

Tokenizer: lowercase, then words = runs of ASCII letters, optionally with one inner apostrophe
("don't"). Likelihoods use Laplace (add-``alpha``) smoothing over the training vocabulary; words
never seen in training carry no evidence and are skipped. Scores are the normalised posteriors.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from .corpus import CORPUS

MODEL_NAME = "affect-nb"
MODEL_VERSION = "1.0.0"
_WORD = re.compile(r"[a-z]+(?:'[a-z]+)?")


def tokenize(text: str) -> list[str]:
    return _WORD.findall(text.lower())


@dataclass(frozen=True)
class NaiveBayes:
    labels: tuple[str, ...]
    log_prior: Mapping[str, float]
    log_likelihood: Mapping[str, Mapping[str, float]]  # label -> word -> log P(word | label)

    @property
    def vocabulary(self) -> frozenset[str]:
        return frozenset(self.log_likelihood[self.labels[0]])

    def log_posteriors(self, tokens: Iterable[str]) -> dict[str, float]:
        known = [t for t in tokens if t in self.log_likelihood[self.labels[0]]]
        return {lab: self.log_prior[lab] + sum(self.log_likelihood[lab][t] for t in known)
                for lab in self.labels}

    def scores(self, tokens: Iterable[str]) -> dict[str, float]:
        """Posterior probabilities P(label | tokens), summing to 1 (log-sum-exp normalised)."""
        logp = self.log_posteriors(tokens)
        top = max(logp.values())
        exp = {lab: math.exp(v - top) for lab, v in logp.items()}
        total = sum(exp.values())
        return {lab: v / total for lab, v in exp.items()}

    def classify(self, text: str) -> tuple[str, dict[str, float], int]:
        """-> (label, scores, token count). Ties go to the first label in ``labels`` order."""
        tokens = tokenize(text)
        scores = self.scores(tokens)
        label = max(self.labels, key=lambda lab: scores[lab])
        return label, scores, len(tokens)


def train(corpus: Mapping[str, Iterable[str]], alpha: float = 1.0) -> NaiveBayes:
    labels = tuple(corpus)
    docs = {lab: [tokenize(s) for s in corpus[lab]] for lab in labels}
    counts = {lab: Counter(t for doc in docs[lab] for t in doc) for lab in labels}
    vocabulary = sorted(set().union(*counts.values()))
    n_docs = sum(len(d) for d in docs.values())
    log_prior = {lab: math.log(len(docs[lab]) / n_docs) for lab in labels}
    log_likelihood: dict[str, dict[str, float]] = {}
    for lab in labels:
        denominator = sum(counts[lab].values()) + alpha * len(vocabulary)
        log_likelihood[lab] = {w: math.log((counts[lab][w] + alpha) / denominator) for w in vocabulary}
    return NaiveBayes(labels=labels, log_prior=log_prior, log_likelihood=log_likelihood)


def train_default() -> NaiveBayes:
    # "neutral" first, so a text with no known words (uniform posterior) is labelled neutral.
    ordered = {lab: CORPUS[lab] for lab in ("neutral", "joy", "anger", "sadness")}
    return train(ordered)
