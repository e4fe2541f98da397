"""Train the affect classifier and write ``models/affect-nb/``: ``python -m affective_processing_center.train``.

Runs on the host, not in the image (``.dockerignore`` keeps this file and the corpus out of it), with the
standard library only, so ``nox -s train`` needs no virtualenv. Naive Bayes training is counting: the
files hold the documents per label and the word counts per label of the embedded corpus, integers in
JSON with sorted keys, so they are the same bytes on every run and every machine (no floats, no clock,
no paths). The service derives the smoothed log probabilities from them when it loads the model.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from . import MODEL_NAME
from .classifier import CONFIG_FILE, TOKEN_PATTERN, WEIGHTS_FILE, NaiveBayes, tokenize
from .corpus import CORPUS

MODEL_VERSION = "1.0.0"
ALPHA = 1.0
# "neutral" first, so a text with no known words (uniform posterior) is labelled neutral.
LABELS: tuple[str, ...] = ("neutral", "joy", "anger", "sadness")
REPO_MODELS = Path(__file__).resolve().parents[3] / "models"

Counts = dict[str, dict[str, int]]


def count(corpus: Mapping[str, Iterable[str]], labels: Sequence[str]) -> tuple[dict[str, int], Counts]:
    """Documents per label and word counts per label (words sorted), the naive Bayes sufficient statistics."""
    docs = {lab: [tokenize(sentence) for sentence in corpus[lab]] for lab in labels}
    words = {lab: Counter(token for doc in docs[lab] for token in doc) for lab in labels}
    return {lab: len(docs[lab]) for lab in labels}, {lab: dict(sorted(words[lab].items())) for lab in labels}


def fit(corpus: Mapping[str, Iterable[str]], alpha: float = ALPHA) -> NaiveBayes:
    """The classifier trained on ``corpus`` (labels in its order), as the service would load it."""
    documents, word_counts = count(corpus, tuple(corpus))
    return NaiveBayes.from_counts(tuple(corpus), documents, word_counts, alpha)


def corpus_digest() -> str:
    """sha256 of the corpus as canonical JSON, so config.json names exactly what was learnt from."""
    canonical = json.dumps({lab: list(CORPUS[lab]) for lab in LABELS}, separators=(",", ":"), sort_keys=True)
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


def _json(value: object) -> bytes:
    return (json.dumps(value, indent=2, sort_keys=True) + "\n").encode()


def model_files() -> dict[str, bytes]:
    """The files of ``models/affect-nb/``, by name: the training counts and the config the service reads."""
    documents, word_counts = count(CORPUS, LABELS)
    vocabulary = set().union(*word_counts.values())
    config = {
        "name": MODEL_NAME,
        "version": MODEL_VERSION,
        "architecture": "multinomial-naive-bayes",
        "weights": WEIGHTS_FILE,
        "labels": list(LABELS),
        "alpha": ALPHA,
        "tokenizer": {"lowercase": True, "pattern": TOKEN_PATTERN},
        "unknown_words": "skipped (no evidence)",
        "training": {
            "documents": sum(documents.values()),
            "data": corpus_digest(),
            "vocabulary": len(vocabulary),
        },
    }
    return {CONFIG_FILE: _json(config), WEIGHTS_FILE: _json({"documents": documents, "word_counts": word_counts})}


def write_files(out: Path, files: dict[str, bytes]) -> None:
    """Write each file atomically (a temporary beside it, then a rename): a reader never sees half a model."""
    out.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        tmp = out / f".{name}.tmp"
        tmp.write_bytes(content)
        os.replace(tmp, out / name)


def differing(out: Path, files: dict[str, bytes]) -> list[str]:
    """The names of ``files`` whose bytes in ``out`` are not these (missing files included)."""
    return [name for name, data in files.items() if not (out / name).is_file() or (out / name).read_bytes() != data]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m affective_processing_center.train", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--out", type=Path, default=REPO_MODELS / MODEL_NAME, help="model directory to write")
    parser.add_argument("--check", action="store_true", help="write nothing; fail if the directory differs")
    args = parser.parse_args(argv)
    files = model_files()
    if args.check:
        if stale := differing(args.out, files):
            print(
                f"{args.out}: {', '.join(stale)} differ from what training gives; run `nox -s train`", file=sys.stderr
            )
            return 1
        print(f"{args.out}: up to date")
        return 0
    write_files(args.out, files)
    print(f"{args.out}: wrote {', '.join(sorted(files))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
