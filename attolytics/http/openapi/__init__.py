"""The OpenAPI 3.1 document of a running service."""

from attolytics.http.openapi.document import document

__all__ = ["document"]
