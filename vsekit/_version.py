"""The package version, in a leaf module: reading it imports nothing else of vsekit."""

__version__ = "0.3.0"
