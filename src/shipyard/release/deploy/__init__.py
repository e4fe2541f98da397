"""Deploying to targets: what each runs, the edge proxy in front of it, the strategies and appliers, the ledger."""
