"""Bipupu server: postcards between pager-like devices, over REST and WebSocket."""

__version__ = "0.1.0"
