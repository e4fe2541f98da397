"""real-time-audio-pipeline: frame features and VAD, the WebSocket protocol, the real entry point."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import signal
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from realtime_audio_pipeline import SERVICE_NAME
from realtime_audio_pipeline.dsp import (
    InvalidAudio,
    analyze_pcm,
    decode_pcm16,
    encode_pcm16,
    frame_features,
    frame_length,
    golden_pcm,
    handle_message,
)
from realtime_audio_pipeline.server import bound_port, create_server
from websockets.asyncio.client import connect

SERVICE_DIR = Path(__file__).resolve().parents[1]
SR = 16000
GOLDEN_PCM_B64 = base64.b64encode(golden_pcm()).decode()
# Pins the exact golden request (sha256 of the pcm_b64 string) handed to the release smoke test.
GOLDEN_PCM_B64_SHA256 = "ac1db086d5b2d6964a1f5580864d82ac22aa9b4429033179a8c8468d92116307"
GOLDEN_REQUEST = {"sample_rate": SR, "pcm_b64": GOLDEN_PCM_B64}
GOLDEN_EXPECT = {
    "frames": 5,
    "speech_frames": 3,
    "speech_ratio": 0.6,
    "mean_dbfs": -53.4,
    "vad": [True, True, True, False, False],
}


def sine(freq: float, amplitude: float, n: int, sr: int = SR) -> np.ndarray:
    return amplitude * np.sin(2 * np.pi * freq * np.arange(n) / sr)


# --- pure DSP ---------------------------------------------------------------------------------


def test_silence_is_not_speech() -> None:
    f = frame_features(np.zeros(5 * 320), SR)
    assert not f.vad.any()
    assert np.all(f.rms == 0) and np.all(f.dbfs == -120.0) and np.all(f.zcr == 0)


def test_sine_rms_dbfs_and_zcr() -> None:
    f = frame_features(sine(250.0, 0.5, 4 * 320), SR)  # 250 Hz: exactly 5 periods per 20 ms frame
    np.testing.assert_allclose(f.rms, 0.5 / np.sqrt(2), rtol=1e-12)
    np.testing.assert_allclose(f.dbfs, 20 * np.log10(0.5 / np.sqrt(2)), rtol=1e-12)
    assert f.dbfs[0] == pytest.approx(-9.031, abs=1e-3)
    np.testing.assert_allclose(f.zcr, 2 * 250 / SR, atol=2 / 319)  # ~2 crossings per period
    assert f.vad.all()


def test_full_scale_sine_is_minus_3_dbfs_after_int16_round_trip() -> None:
    samples = decode_pcm16(encode_pcm16(sine(500.0, 1.0, 320)))
    assert frame_features(samples, SR).dbfs[0] == pytest.approx(-3.01, abs=0.01)


@pytest.mark.parametrize(
    ("signal_", "why"),
    [
        (sine(300.0, 0.005, 320), "too quiet (-49 dBFS)"),
        (sine(50.0, 0.5, 320), "mains hum: ZCR too low"),
        (np.random.default_rng(0).uniform(-0.5, 0.5, 320), "white noise: ZCR too high"),
        (np.full(320, 0.5), "DC offset: no crossings"),
    ],
)
def test_non_speech_signals(signal_: np.ndarray, why: str) -> None:
    assert not frame_features(signal_, SR).vad.any(), why


def test_frame_length_and_partial_frames() -> None:
    assert (frame_length(8000), frame_length(16000), frame_length(48000)) == (160, 320, 960)
    assert len(frame_features(np.zeros(3 * 320 + 319), SR).vad) == 3
    for bad in (7999, 16010, 96000):
        with pytest.raises(InvalidAudio):
            frame_length(bad)
    with pytest.raises(InvalidAudio):
        frame_features(np.zeros(319), SR)


def test_golden_analysis() -> None:
    assert hashlib.sha256(GOLDEN_PCM_B64.encode()).hexdigest() == GOLDEN_PCM_B64_SHA256
    assert len(GOLDEN_PCM_B64) == 4268
    assert analyze_pcm(golden_pcm(), SR) == GOLDEN_EXPECT
    assert handle_message(json.dumps(GOLDEN_REQUEST)) == GOLDEN_EXPECT
    assert handle_message(golden_pcm()) == GOLDEN_EXPECT  # binary frames: raw int16 at 16 kHz


@pytest.mark.parametrize(
    "message",
    [
        "not json",
        "[1]",
        json.dumps({"pcm_b64": GOLDEN_PCM_B64}),
        json.dumps({"sample_rate": "16000", "pcm_b64": GOLDEN_PCM_B64}),
        json.dumps({"sample_rate": True, "pcm_b64": GOLDEN_PCM_B64}),
        json.dumps({"sample_rate": SR}),
        json.dumps({"sample_rate": SR, "pcm_b64": "%%%not base64"}),
        json.dumps({"sample_rate": SR, "pcm_b64": base64.b64encode(b"\x00" * 641).decode()}),
        json.dumps({"sample_rate": SR, "pcm_b64": ""}),
        json.dumps({"sample_rate": 12345, "pcm_b64": "AAAA"}),
        b"\x00" * 639,
    ],
)
def test_invalid_messages_give_errors(message: str | bytes) -> None:
    reply = handle_message(message)
    assert list(reply) == ["error"] and isinstance(reply["error"], str)


# --- real server ------------------------------------------------------------------------------


def http_get(url: str) -> tuple[int, str, Any]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, resp.headers["Content-Type"], json.loads(resp.read())
    except urllib.error.HTTPError as err:
        with err:
            return err.code, err.headers["Content-Type"], json.loads(err.read())


def test_websocket_round_trip_and_http_health(runtime_env: Callable[..., None]) -> None:
    runtime_env({"SHIPYARD_PROFILE": "edge-cpu", "OMP_NUM_THREADS": "4", "UVICORN_WORKERS": "8"})

    async def scenario() -> None:
        async with create_server("127.0.0.1", 0) as server:
            base = f"127.0.0.1:{bound_port(server)}"
            async with connect(f"ws://{base}/v1/stream") as ws:
                await ws.send(json.dumps(GOLDEN_REQUEST))
                assert json.loads(await ws.recv()) == GOLDEN_EXPECT
                await ws.send("{broken")
                assert "error" in json.loads(await ws.recv())
                await ws.send(golden_pcm())  # connection still open after an error; binary works too
                assert json.loads(await ws.recv()) == GOLDEN_EXPECT

            status, ctype, body = await asyncio.to_thread(http_get, f"http://{base}/health")
            assert (status, ctype) == (200, "application/json")
            assert body == {
                "status": "ok",
                "service": SERVICE_NAME,
                "profile": "edge-cpu",
                "accelerator": "none",
                "cuda_arch": None,
                "workers": 1,
                "omp_num_threads": "4",
            }
            status, ctype, body = await asyncio.to_thread(http_get, f"http://{base}/nope")
            assert (status, ctype) == (404, "application/json") and "error" in body

    asyncio.run(scenario())


def test_main_serves_and_stops_on_sigterm(start_service: Callable[..., Any]) -> None:
    # Printed only once the socket is bound.
    service = start_service(
        "realtime_audio_pipeline",
        SERVICE_DIR,
        r"ws://0\.0\.0\.0:(\d+)/v1/stream",
        output="stdout",
        env={"UVICORN_WORKERS": "1"},
    )
    status, _, body = http_get(f"{service.url}/health")
    assert status == 200 and body["service"] == SERVICE_NAME
    assert "stopped" in service.stop(signal.SIGTERM)
    assert service.proc.returncode == 0
