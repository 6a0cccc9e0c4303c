"""OTLP/HTTP trace ingestion (placeholder while being written)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter


def otlp_router(state: Any) -> APIRouter:
    """Placeholder."""
    return APIRouter()
