"""Write the workflow's JSON schemas from the pydantic models (single source of truth)."""

from __future__ import annotations

import json
from pathlib import Path

from denoise.config import dataset_row_schema, json_schema

SCHEMA_DIR = Path("workflow/schemas")


def render() -> dict[str, str]:
    """File name -> JSON text of every generated schema."""
    return {
        "config.schema.json": json.dumps(json_schema(), indent=2, sort_keys=True) + "\n",
        "datasets.schema.json": json.dumps(dataset_row_schema(), indent=2, sort_keys=True) + "\n",
    }


def write(directory: Path = SCHEMA_DIR) -> None:
    """(Re)write the schema files; run after changing denoise/config.py."""
    for name, text in render().items():
        (directory / name).write_text(text)


if __name__ == "__main__":
    write()
