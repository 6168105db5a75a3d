"""Compliance evidence: collectors read the live system; evaluators and renderers turn it into a pack."""
