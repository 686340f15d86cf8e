"""The ``misuan`` command: thin over the SDK."""
