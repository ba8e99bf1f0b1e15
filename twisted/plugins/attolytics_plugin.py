"""Registers `twistd attolytics`."""

from twisted.application.service import ServiceMaker

attolytics = ServiceMaker(
    "Attolytics",
    "attolytics.tap",
    "Collect analytics events over HTTP into PostgreSQL.",
    "attolytics",
)
