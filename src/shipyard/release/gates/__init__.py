"""The gates a release passes: verify, scan and canary, each a verdict on every unit."""
