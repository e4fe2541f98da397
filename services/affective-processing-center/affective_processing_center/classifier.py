"""Multinomial naive Bayes text-affect classifier (stdlib only), loaded from its model directory.

Tokenizer: lowercase, then words = runs of ASCII letters, optionally with one inner apostrophe
("don't"). Likelihoods use Laplace (add-``alpha``) smoothing over the training vocabulary; words
never seen in training carry no evidence and are skipped. Scores are the normalised posteriors.

The model directory (``config.json`` + ``weights.json``, written by ``affective_processing_center.train``,
shipped as the release's ``affect-nb`` model) holds the training counts: documents per label and word
counts per label, integers that are the same bytes on any machine. Loading turns them into log
probabilities; every way the files can be wrong is a ``ModelError`` with one line naming the file.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

TOKEN_PATTERN = r"[a-z]+(?:'[a-z]+)?"
_WORD = re.compile(TOKEN_PATTERN)
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "weights.json"
MODEL_FILES = (WEIGHTS_FILE, CONFIG_FILE)


class ModelError(Exception):
    """The model directory is missing, incomplete or unreadable; the message is one line for the log."""


def tokenize(text: str) -> list[str]:
    return _WORD.findall(text.lower())


@dataclass(frozen=True)
class NaiveBayes:
    labels: tuple[str, ...]
    log_prior: Mapping[str, float]
    log_likelihood: Mapping[str, Mapping[str, float]]  # label -> word -> log P(word | label)
    name: str = "affect-nb"

    @classmethod
    def from_counts(
        cls,
        labels: Iterable[str],
        documents: Mapping[str, int],
        word_counts: Mapping[str, Mapping[str, int]],
        alpha: float = 1.0,
        name: str = "affect-nb",
    ) -> NaiveBayes:
        """The classifier these training counts give (``labels`` in tie-breaking order)."""
        labels = tuple(labels)
        vocabulary = sorted(set().union(*(word_counts[lab] for lab in labels)))
        n_docs = sum(documents[lab] for lab in labels)
        log_prior = {lab: math.log(documents[lab] / n_docs) for lab in labels}
        log_likelihood: dict[str, dict[str, float]] = {}
        for lab in labels:
            counts = word_counts[lab]
            denominator = sum(counts.values()) + alpha * len(vocabulary)
            log_likelihood[lab] = {w: math.log((counts.get(w, 0) + alpha) / denominator) for w in vocabulary}
        return cls(labels=labels, log_prior=log_prior, log_likelihood=log_likelihood, name=name)

    @property
    def vocabulary(self) -> frozenset[str]:
        return frozenset(self.log_likelihood[self.labels[0]])

    def log_posteriors(self, tokens: Iterable[str]) -> dict[str, float]:
        known = [t for t in tokens if t in self.log_likelihood[self.labels[0]]]
        return {lab: self.log_prior[lab] + sum(self.log_likelihood[lab][t] for t in known) for lab in self.labels}

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


def _json_object(path: Path) -> dict[str, Any]:
    try:
        data: Any = json.loads(path.read_bytes())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"{path}: not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ModelError(f"{path}: expected a JSON object")
    return data


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _check_config(path: Path, config: dict[str, Any]) -> tuple[list[str], float]:
    for key in ("name", "version", "labels", "alpha", "tokenizer"):
        if key not in config:
            raise ModelError(f"{path}: missing key {key!r}")
    labels = config["labels"]
    if not isinstance(labels, list) or not labels or not all(isinstance(lab, str) for lab in labels):
        raise ModelError(f"{path}: 'labels' must be a non-empty list of names")
    alpha = config["alpha"]
    if isinstance(alpha, bool) or not isinstance(alpha, int | float) or not alpha > 0:
        raise ModelError(f"{path}: 'alpha' must be a positive number, got {alpha!r}")
    if config.get("weights", WEIGHTS_FILE) != WEIGHTS_FILE:
        raise ModelError(f"{path}: weights {config['weights']!r}: this service reads {WEIGHTS_FILE}")
    if config["tokenizer"] != {"lowercase": True, "pattern": TOKEN_PATTERN}:
        raise ModelError(
            f"{path}: trained with tokenizer {json.dumps(config['tokenizer'])}; this service tokenizes "
            f"lowercase with {TOKEN_PATTERN!r}"
        )
    return labels, float(alpha)


def _check_weights(path: Path, weights: dict[str, Any], labels: list[str]) -> None:
    documents, word_counts = weights.get("documents"), weights.get("word_counts")
    for key, table in (("documents", documents), ("word_counts", word_counts)):
        if not isinstance(table, dict) or sorted(table) != sorted(labels):
            raise ModelError(f"{path}: {key!r} must have one entry per label of {CONFIG_FILE} ({', '.join(labels)})")
    assert isinstance(documents, dict) and isinstance(word_counts, dict)
    for lab in labels:
        if not _count(documents[lab]) or documents[lab] == 0:
            raise ModelError(f"{path}: documents[{lab!r}] must be a positive count, got {documents[lab]!r}")
        counts = word_counts[lab]
        if not isinstance(counts, dict) or not all(_count(n) for n in counts.values()):
            raise ModelError(f"{path}: word_counts[{lab!r}] must map words to counts")
    if not any(word_counts[lab] for lab in labels):
        raise ModelError(f"{path}: no words in 'word_counts'")


def load_model(directory: Path) -> NaiveBayes:
    """The classifier in ``directory``, checked whole (files, labels, counts, tokenizer) before it serves."""
    missing = [name for name in MODEL_FILES if not (directory / name).is_file()]
    if len(missing) == len(MODEL_FILES):
        raise ModelError(
            f"no model at {directory} (expected {', '.join(MODEL_FILES)}): deploy it with its release's models"
        )
    if missing:
        raise ModelError(
            f"incomplete model at {directory} (missing {', '.join(missing)} of {', '.join(MODEL_FILES)}): "
            f"deploy it with its release's models"
        )
    try:
        config = _json_object(directory / CONFIG_FILE)
        weights = _json_object(directory / WEIGHTS_FILE)
    except OSError as exc:
        raise ModelError(f"cannot read the model at {directory}: {exc.strerror or exc}: {exc.filename}") from None
    labels, alpha = _check_config(directory / CONFIG_FILE, config)
    _check_weights(directory / WEIGHTS_FILE, weights, labels)
    return NaiveBayes.from_counts(
        labels, weights["documents"], weights["word_counts"], alpha, name=f"{config['name']}-{config['version']}"
    )
