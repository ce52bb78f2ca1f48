"""The HTTP gateway: genq over HTTP for services in any language (FastAPI)."""

from producers.gateway.app import create_gateway

__all__ = ["create_gateway"]
