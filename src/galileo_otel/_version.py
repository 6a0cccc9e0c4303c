"""The package version: stamped as ``client_version`` on every Create Session and Log Traces."""

__version__ = "0.1.0"
