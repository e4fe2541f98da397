"""affective-processing-center: text-affect classification with multinomial naive Bayes."""

SERVICE_NAME = "affective-processing-center"
DEFAULT_PORT = 6560
# The catalog's model this service is released with ([models.affect-nb], `models = ["affect-nb"]` on its
# service table): a deploy mounts it at $MODEL_CACHE_DIR/affect-nb, where the service looks for it.
MODEL_NAME = "affect-nb"

__all__ = ["DEFAULT_PORT", "MODEL_NAME", "SERVICE_NAME"]
