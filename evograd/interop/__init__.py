"""Adapters to other libraries' algorithms behind our protocol (optional extras)."""
