"""The wire layer: Galileo REST API models, a filter DSL and the HTTP clients; knows nothing of OTel."""

from galileo_otel.api.client import AsyncGalileoClient, Destination, GalileoClient, RetryPolicy

__all__ = ["AsyncGalileoClient", "Destination", "GalileoClient", "RetryPolicy"]
