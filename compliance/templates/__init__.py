"""Jinja2 templates of the evidence pack (data)."""
