"""The README's method and settings tables are the registry's (generated, checked here)."""

from __future__ import annotations

from denoise.methods.registry import markdown_settings_table, markdown_table
from tests.conftest import REPO


def test_readme_tables_are_generated_from_the_registry():
    text = (REPO / "README.md").read_text()
    for table, what in ((markdown_table(), "denoise methods"), (markdown_settings_table(), "settings")):
        block = f"<!-- generated: {what} (tests/test_readme.py checks it) -->\n{table}\n<!-- end generated -->"
        assert block in text, f"README's {what} table is stale: regenerate it from the registry"
