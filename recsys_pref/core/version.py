"""The library version, written into every saved artifact."""
__version__ = "0.1.0"
