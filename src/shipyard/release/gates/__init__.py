"""The gates a release passes: verify, scan and canary, each a verdict on every unit.

Each is a member of one shape (``gate.py``: the ``Gate`` protocol, the ``GATES`` table and ``run_gate``,
the one place verdicts are signed); the verdicts are typed (``shipyard.verdicts``) and stored in the record.
"""
