"""Markdown reports and seaborn figures from stored results."""
