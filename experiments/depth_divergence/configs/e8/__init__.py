"""Configs of e8."""
