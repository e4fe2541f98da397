"""real-time-audio-pipeline: per-frame energy and voice-activity detection over a WebSocket."""

SERVICE_NAME = "real-time-audio-pipeline"
DEFAULT_PORT = 6557

__all__ = ["DEFAULT_PORT", "SERVICE_NAME"]
