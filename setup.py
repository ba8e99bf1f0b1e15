"""Packaging for Attolytics; installs the twistd plugin into twisted/plugins."""

import re
from pathlib import Path

from setuptools import find_packages, setup

# The version is written once, in the package; setup reads it without importing the package.
VERSION = re.search(r'^__version__ = "([^"]+)"', Path("attolytics/__init__.py").read_text(), re.M).group(1)

setup(
    name="attolytics",
    version=VERSION,
    description="A small, strict analytics-event collector: JSON over HTTP into PostgreSQL.",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.11",
    packages=find_packages(include=["attolytics", "attolytics.*"]) + ["twisted.plugins"],
    package_data={"attolytics.http": ["static/*"], "attolytics.live": ["static/*"]},
    install_requires=[
        # Tested on 25.5.0, 26.4.0 and 26.10.0 (older ones fall short: see the docstring of
        # attolytics/twisted_internals.py, which holds what the service needs of Twisted beyond its
        # public API, pinned by tests/test_twisted_internals.py: run it before raising the bound).
        "twisted>=25.5,<27",
        "klein>=23.5",
        "txpostgres>=1.7",
        "psycopg2-binary>=2.9",
        "pyyaml>=6.0",
        "orjson>=3.9",
        "msgspec>=0.18",
        "prometheus-client>=0.17",
        "pgserver>=0.1.4,<0.2",  # its PostgreSQL major version and the internals embedded.py uses
    ],
    extras_require={
        "test": [
            "pytest>=8",
            "pytest-twisted>=1.14",
            "treq>=23.11",
            "hypothesis>=6.100",
            "selenium>=4.20",
            "schemathesis>=4.32,<5",
            "jsonschema-rs>=0.20",
            # The Segment-compatible intake's real clients (tests/test_segment_sdks.py), Segment's
            # and RudderStack's Python SDKs; tested with 2.4.0 and 2.1.9.
            "segment-analytics-python>=2.3,<3",
            "rudder-sdk-python>=2.1,<3",
        ],
        # The documentation site in docs/ (Sphinx, pages in MyST Markdown); built with 9.0.4 and 5.2.0.
        "docs": [
            "sphinx>=8.1,<10",
            "myst-parser>=4.0,<6",
        ],
    },
)
