"""NIST OSCAL 1.2.1 JSON schemas (data), vendored for offline validation; see README.md."""
