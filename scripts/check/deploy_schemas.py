#!/usr/bin/env python3
"""Schema check of the custom resources in rendered manifests, which kubernetes-validate skips.

kubernetes-validate carries the schemas of the built-in kinds only; for a custom resource it
prints a warning and checks nothing. This script takes every resource of the given files whose
kind kubernetes-validate has no schema for, validates it against the minimal strict schema in
scripts/check/crd-schemas/<kind>-<group>-<version>.yaml (JSON Schema 2020-12), and fails when
one does not validate or has no schema there. It prints which kinds were checked which way.

    deploy_schemas.py K8S_VERSION FILE...
    deploy_schemas.py --self-test K8S_VERSION FILE...   breaks one resource of each custom kind
                                                         and fails unless the schema catches it
"""
from __future__ import annotations

import collections
import copy
import os
import sys

import jsonschema
import yaml
from kubernetes_validate import utils as kv

SCHEMAS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "crd-schemas")


def builtin(doc: dict, version: str) -> bool:
    """Whether kubernetes-validate has a schema for this kind (it then checks it itself)."""
    try:
        kv.validate(doc, version, strict=True)
        return True
    except kv.SchemaNotFoundError:
        return False
    except Exception:  # a validation error: a built-in kind, reported by kubernetes-validate
        return True


def schema_for(doc: dict):
    group_version = doc["apiVersion"].replace("/", "-")
    path = os.path.join(SCHEMAS, f"{doc['kind'].lower()}-{group_version}.yaml")
    if not os.path.exists(path):
        return None, path
    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f), path


def self_test(version: str, files: list) -> int:
    """A misspelt field and a wrong type in one resource of each custom kind must be caught."""
    seen, missed = set(), 0
    for name in files:
        with open(name, encoding="utf-8") as f:
            for doc in (d for d in yaml.safe_load_all(f) if d):
                if doc["kind"] in seen or builtin(doc, version):
                    continue
                seen.add(doc["kind"])
                schema, _ = schema_for(doc)
                for what, broken in (("a misspelt field", {**copy.deepcopy(doc), "spec": {**doc["spec"], "spce": {}}}),
                                     ("spec of the wrong type", {**copy.deepcopy(doc), "spec": "x"})):
                    if schema is None or not list(jsonschema.Draft202012Validator(schema).iter_errors(broken)):
                        print(f"  MISSED  {doc['kind']} with {what}")
                        missed += 1
                    else:
                        print(f"  caught  {doc['kind']} with {what}")
    print(f"self-test: {2 * len(seen) - missed} passed, {missed} failed")
    return 1 if missed or not seen else 0


def main() -> int:
    args = sys.argv[1:]
    if args[:1] == ["--self-test"]:
        return self_test(args[1], args[2:]) if len(args) >= 3 else 2
    if len(args) < 2:
        print(__doc__)
        return 2
    version, files = args[0], args[1:]
    failures = 0
    checked = collections.Counter()
    builtins = collections.Counter()
    for name in files:
        with open(name, encoding="utf-8") as f:
            docs = [d for d in yaml.safe_load_all(f) if d]
        for doc in docs:
            kind = f"{doc['kind']} ({doc['apiVersion']})"
            if builtin(doc, version):
                builtins[kind] += 1
                continue
            schema, path = schema_for(doc)
            where = f"{name}: {doc['kind']}/{doc['metadata'].get('name')}"
            if schema is None:
                print(f"ERROR {where}: no schema for {kind}: write {os.path.relpath(path)} from its CRD")
                failures += 1
                continue
            errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(doc), key=lambda e: list(e.path))
            for e in errors:
                print(f"ERROR {where}: {'.'.join(str(p) for p in e.path) or '(root)'}: {e.message}")
            failures += len(errors)
            checked[kind] += 1
    print("built-in kinds (strict schemas of kubernetes-validate): "
          + ", ".join(f"{k} x{n}" for k, n in sorted(builtins.items())))
    print("custom resources (minimal strict schemas in scripts/check/crd-schemas): "
          + (", ".join(f"{k} x{n}" for k, n in sorted(checked.items())) or "none"))
    if failures:
        print(f"{failures} schema finding(s) in custom resources")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
