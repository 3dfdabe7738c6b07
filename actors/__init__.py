"""Thin Ray wrappers around the echo package: they hold state and call plain functions."""
