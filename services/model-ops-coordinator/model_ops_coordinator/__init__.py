"""model-ops-coordinator: classifies a serving node's load level with a tiny softmax model."""

SERVICE_NAME = "model-ops-coordinator"
DEFAULT_PORT = 8212

__all__ = ["DEFAULT_PORT", "SERVICE_NAME"]
