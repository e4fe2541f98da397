"""affective-processing-center: text-affect classification with multinomial naive Bayes."""

SERVICE_NAME = "affective-processing-center"
DEFAULT_PORT = 6560

__all__ = ["DEFAULT_PORT", "SERVICE_NAME"]
