"""The card's `build`: everything up to the pushed digest (plan, render, buildx, reuse, attestations)."""
