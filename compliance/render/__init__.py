"""Renderers: turn an evidence pack's results into its documents (diagram, pages, procedures, OSCAL)."""
