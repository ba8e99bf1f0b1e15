"""Sphinx configuration of Attolytics' documentation site (built on Read the Docs, and by .ci/run with -W)."""

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
# The package is installed (pip install '.[docs]'); the extensions of this site live beside this file.
sys.path.insert(0, str(HERE / "_ext"))

from attolytics import __version__  # noqa: E402

project = "Attolytics"
author = "the Attolytics authors"
copyright = "the Attolytics authors"
version = release = __version__

extensions = [
    "myst_parser",
    "config_reference",  # writes generated/configuration-reference.md from attolytics.config.reference
]
source_suffix = {".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build"]

# Links to a section of another page (`api.md#cors`) use the anchors GitHub gives headings too.
myst_heading_anchors = 4
myst_enable_extensions = ["deflist"]

# Blocks without a language are shown as they are, not highlighted as Python.
highlight_language = "none"

html_theme = "alabaster"
html_title = f"Attolytics {release}"
html_theme_options = {
    "description": "Analytics events over HTTP into PostgreSQL",
    "fixed_sidebar": True,
    "page_width": "1100px",
    "sidebar_width": "230px",
}
