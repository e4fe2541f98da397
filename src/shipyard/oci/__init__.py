"""The OCI registry protocol and nothing of shipyard's policy: client, retry, credentials, artifacts."""
