"""Configs of e5."""
