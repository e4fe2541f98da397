"""Frame energy, zero-crossing rate and a simple energy + ZCR voice-activity detector (numpy only).

Input is mono little-endian int16 PCM, scaled to [-1, 1) by dividing by 32768. The signal is split
into non-overlapping 20 ms frames; an incomplete trailing frame is dropped. Per frame:

* ``rms``   = sqrt(mean(x**2))
* ``dbfs``  = 20 * log10(rms), floored at ``DBFS_FLOOR`` (-120) for digital silence. Full-scale
  square wave = 0 dBFS, so a full-scale sine is about -3.01 dBFS and a 0.5-amplitude sine -9.03 dBFS.
* ``zcr``   = fraction of adjacent sample pairs whose sign differs (x >= 0 counts as positive), in [0, 1].

VAD rule: a frame is speech when ``dbfs > -40`` AND ``0.01 <= zcr <= 0.35``. The energy gate drops
silence and quiet background noise; the ZCR band (at 16 kHz, the ZCR of an 80 Hz to 2.8 kHz sine:
voiced speech sits low in it, fricatives high) rejects hum and DC offsets below it and broadband
white-noise-like hiss (ZCR ~0.5) above it.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

FRAME_MS = 20
DBFS_FLOOR = -120.0
VAD_MIN_DBFS = -40.0
VAD_ZCR_RANGE = (0.01, 0.35)
MIN_SAMPLE_RATE = 8000
MAX_SAMPLE_RATE = 48000
DEFAULT_BINARY_SAMPLE_RATE = 16000

FloatArray = NDArray[np.float64]


class InvalidAudio(ValueError):
    """The message does not describe usable PCM audio."""


@dataclass(frozen=True)
class FrameFeatures:
    rms: FloatArray
    dbfs: FloatArray
    zcr: FloatArray
    vad: NDArray[np.bool_]


def decode_pcm16(data: bytes) -> FloatArray:
    """Little-endian int16 bytes -> float64 samples in [-1, 1)."""
    if len(data) % 2:
        raise InvalidAudio(f"PCM must be 16-bit samples (an even number of bytes), got {len(data)} bytes")
    return np.frombuffer(data, dtype="<i2").astype(np.float64) / 32768.0


def encode_pcm16(samples: FloatArray) -> bytes:
    """float samples in [-1, 1] -> little-endian int16 bytes (rounded, clipped)."""
    return np.clip(np.round(samples * 32767.0), -32768, 32767).astype("<i2").tobytes()


def frame_length(sample_rate: int) -> int:
    if not MIN_SAMPLE_RATE <= sample_rate <= MAX_SAMPLE_RATE or sample_rate * FRAME_MS % 1000:
        raise InvalidAudio(
            f"sample_rate must be {MIN_SAMPLE_RATE}-{MAX_SAMPLE_RATE} Hz and a multiple of "
            f"{1000 // FRAME_MS} Hz, got {sample_rate}"
        )
    return sample_rate * FRAME_MS // 1000


def frame_features(samples: FloatArray, sample_rate: int) -> FrameFeatures:
    size = frame_length(sample_rate)
    n_frames = len(samples) // size
    if n_frames == 0:
        raise InvalidAudio(f"need at least one full {FRAME_MS} ms frame ({size} samples), got {len(samples)}")
    frames = samples[: n_frames * size].reshape(n_frames, size)
    rms = np.sqrt(np.mean(frames**2, axis=1))
    with np.errstate(divide="ignore"):
        dbfs = np.maximum(20.0 * np.log10(rms), DBFS_FLOOR)
    positive = frames >= 0
    zcr = np.mean(positive[:, 1:] != positive[:, :-1], axis=1)
    vad = (dbfs > VAD_MIN_DBFS) & (zcr >= VAD_ZCR_RANGE[0]) & (zcr <= VAD_ZCR_RANGE[1])
    return FrameFeatures(rms=rms, dbfs=dbfs, zcr=zcr, vad=vad)


def summarize(features: FrameFeatures) -> dict[str, Any]:
    n = len(features.vad)
    speech = int(features.vad.sum())
    return {
        "frames": n,
        "speech_frames": speech,
        "speech_ratio": round(speech / n, 3),
        "mean_dbfs": round(float(features.dbfs.mean()), 1),
        "vad": [bool(v) for v in features.vad],
    }


def analyze_pcm(data: bytes, sample_rate: int) -> dict[str, Any]:
    return summarize(frame_features(decode_pcm16(data), sample_rate))


def handle_message(message: str | bytes) -> dict[str, Any]:
    """One protocol message -> one reply (a summary, or ``{"error": ...}`` for invalid input).

    Text: ``{"sample_rate": 16000, "pcm_b64": "<base64 int16 LE mono>"}``.
    Binary: raw int16 LE mono PCM at 16 kHz.
    """
    try:
        if isinstance(message, bytes):
            return analyze_pcm(message, DEFAULT_BINARY_SAMPLE_RATE)
        return analyze_pcm(*_parse_text(message))
    except InvalidAudio as exc:
        return {"error": str(exc)}


def _parse_text(message: str) -> tuple[bytes, int]:
    try:
        payload: Any = json.loads(message)
    except json.JSONDecodeError as exc:
        raise InvalidAudio(f"message is not valid JSON: {exc}") from None
    if not isinstance(payload, dict):
        raise InvalidAudio('expected a JSON object like {"sample_rate": 16000, "pcm_b64": "..."}')
    sample_rate = payload.get("sample_rate")
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, int):
        raise InvalidAudio(f"'sample_rate' must be an integer, got {sample_rate!r}")
    pcm_b64 = payload.get("pcm_b64")
    if not isinstance(pcm_b64, str):
        raise InvalidAudio("'pcm_b64' must be a base64 string")
    try:
        data = base64.b64decode(pcm_b64, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidAudio(f"'pcm_b64' is not valid base64: {exc}") from None
    return data, sample_rate


def golden_pcm(sample_rate: int = 16000) -> bytes:
    """100 ms test clip: 60 ms of a 220 Hz sine at amplitude 0.5, then 40 ms of digital silence."""
    t = np.arange(3 * frame_length(sample_rate)) / sample_rate
    tone = 0.5 * np.sin(2.0 * np.pi * 220.0 * t)
    return encode_pcm16(np.concatenate([tone, np.zeros(2 * frame_length(sample_rate))]))
