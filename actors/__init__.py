"""Thin Ray wrappers around core/: they hold state and call plain functions."""
