"""Validate real output against the JSON Schemas in schemas/ (with their $refs)."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from referencing import Registry, Resource

SCHEMAS = Path(__file__).resolve().parent.parent / "schemas"


@cache
def _registry() -> Registry:
    resources = []
    for path in SCHEMAS.rglob("*.json"):
        doc = json.loads(path.read_text())
        if "$id" in doc:
            resources.append((doc["$id"], Resource.from_contents(doc)))
    return Registry().with_resources(resources)


def validator(relative: str) -> Draft202012Validator:
    """A validator for ``schemas/<relative>``; the schema itself is checked first."""
    schema = json.loads((SCHEMAS / relative).read_text())
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema, registry=_registry())


def validate(relative: str, instance: Any) -> None:
    """Raise jsonschema.ValidationError unless ``instance`` fits the schema."""
    validator(relative).validate(instance)
