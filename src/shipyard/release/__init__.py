"""Everything after the pushed digest (gates, channels, deploy, retention), reading the record and the registry."""
