#!/usr/bin/env python3
"""Checks specs/schema.json against the spec files and the malformed-spec corpus.

Every specs/*.json must satisfy the schema. Every file in
Tests/DeepLearningTests/BadSpecs/ that is valid JSON (so the Swift parser rejects it
for its content, not its syntax) must be rejected by the schema too. Exits non-zero
on any failure. Needs the `jsonschema` package (pip install jsonschema).
"""
import json
import pathlib
import sys

import jsonschema

SPECS = pathlib.Path(__file__).resolve().parent
BAD_SPECS = SPECS.parent / "Tests" / "DeepLearningTests" / "BadSpecs"

# Faults JSON Schema cannot express. Its "integer" is any number with no fraction, so
# 3.0 passes; the parser insists on an integer literal.
SCHEMA_CANNOT_SEE = {"11-units-integral-double.json"}


def refuse_constant(name):
    raise ValueError(f"{name} is not JSON")


NOT_JSON = object()


def load(path):
    """The parsed file, or NOT_JSON when it is not strict JSON (NaN and Infinity included)."""
    try:
        return json.loads(path.read_bytes().decode("utf-8"), parse_constant=refuse_constant)
    except ValueError:      # json.JSONDecodeError and UnicodeDecodeError are ValueErrors
        return NOT_JSON


def main():
    schema = json.loads((SPECS / "schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    failures = []

    good = sorted(p for p in SPECS.glob("*.json") if p.name != "schema.json")
    for path in good:
        spec = load(path)
        errors = ["not valid JSON"] if spec is NOT_JSON else [e.message for e in validator.iter_errors(spec)]
        if errors:
            failures.append(f"{path.name}: should pass the schema: {errors[0]}")

    bad = sorted(BAD_SPECS.glob("*.json"))
    syntax = 0
    for path in bad:
        spec = load(path)
        if spec is NOT_JSON:
            syntax += 1
        elif path.name not in SCHEMA_CANNOT_SEE and validator.is_valid(spec):
            failures.append(f"{path.name}: should fail the schema but passes")

    for failure in failures:
        print("FAIL", failure)
    print(f"{len(good)} specs, {len(bad)} bad specs ({syntax} not JSON, "
          f"{len(bad) - syntax - len(SCHEMA_CANNOT_SEE)} refused by the schema): "
          f"{'FAILED' if failures else 'ok'}")
    return 1 if failures or not good or not bad else 0


if __name__ == "__main__":
    sys.exit(main())
