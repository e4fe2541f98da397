"""shipyard: build, push and release the container images of ML inference services."""

__version__ = "0.1.0"
