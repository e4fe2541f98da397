"""model-ops-coordinator: classifies a serving node's load level with a tiny softmax model."""

SERVICE_NAME = "model-ops-coordinator"
DEFAULT_PORT = 8212
# The catalog's model this service is released with ([models.ops-softmax], `models = ["ops-softmax"]` on its
# service table): a deploy mounts it at $MODEL_CACHE_DIR/ops-softmax, where the service looks for it.
MODEL_NAME = "ops-softmax"

__all__ = ["DEFAULT_PORT", "MODEL_NAME", "SERVICE_NAME"]
