"""The card's `release`: everything after the pushed digest, reading the record and the registry."""
