"""asyncray's private runtime. Nothing here is public API; see asyncray/__init__.py."""
