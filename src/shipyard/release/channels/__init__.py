"""Channels: moving tags set by digest, their ledgers, promotion and rollback."""
