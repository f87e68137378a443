"""Configs of e6."""
