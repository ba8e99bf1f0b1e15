"""Writes the configuration reference page from attolytics.config.reference before Sphinx reads the sources."""

from pathlib import Path

from attolytics.config.reference import render_markdown
from attolytics.reload import RESTART_ONLY

# Where the page goes, inside the source folder; .gitignore keeps it out of the repository.
PAGE = Path("generated") / "configuration-reference.md"


def write_reference(app) -> None:
    """Write the page, only when its text changed (so that an unchanged page is not read again)."""
    path = Path(app.srcdir) / PAGE
    text = render_markdown(RESTART_ONLY)
    if not path.exists() or path.read_text(encoding="utf-8") != text:
        path.parent.mkdir(exist_ok=True)
        path.write_text(text, encoding="utf-8")


def setup(app):
    """Sphinx's entry: write the page once the builder exists, before the sources are read."""
    app.connect("builder-inited", write_reference)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
