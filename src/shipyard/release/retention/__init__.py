"""Retention: which releases the registry must keep, and deleting the rest by digest (``shipyard prune``).

inventory (read the registry) -> plan (pure: kept releases and why, what to delete in which order, bytes
freed) -> apply (the deletes, through distribution's API or GHCR's package API).
"""
