"""Offline schema check of the manifests in this folder.

Built-in kinds are checked against the Kubernetes JSON schemas that the
``kubernetes-validate`` package ships (strict: unknown fields are errors). The custom
resources (ECK Elasticsearch, KEDA ScaledObject) and the Kustomization are checked
against the hand-written schema subsets in ``schemas/`` with ``jsonschema``.

    python deploy/k8s/validate.py        # exit 1 and one line per problem when invalid
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import yaml

HERE = Path(__file__).resolve().parent
SCHEMAS = HERE / "schemas"
K8S_VERSION = "1.30.0"
CUSTOM = {
    ("elasticsearch.k8s.elastic.co/v1", "Elasticsearch"): "eck-elasticsearch-v1.json",
    ("keda.sh/v1alpha1", "ScaledObject"): "keda-scaledobject-v1alpha1.json",
    ("kustomize.config.k8s.io/v1beta1", "Kustomization"): "kustomization-v1beta1.json",
}


def manifests(root: Path = HERE) -> Iterator[tuple[Path, dict[str, Any]]]:
    """Every YAML document of every ``*.yaml`` file directly in ``root``."""
    for path in sorted(root.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                yield path, doc


def _custom_schema(name: str) -> dict[str, Any]:
    return json.loads((SCHEMAS / name).read_text())


def validate_doc(doc: dict[str, Any], k8s_version: str = K8S_VERSION) -> list[str]:
    """Problems found in one manifest (empty when valid)."""
    key = (doc.get("apiVersion"), doc.get("kind"))
    if key in CUSTOM:
        schema = _custom_schema(CUSTOM[key])
        validator = jsonschema.Draft202012Validator(schema)
        return [
            f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
            for e in sorted(validator.iter_errors(doc), key=lambda e: list(map(str, e.absolute_path)))
        ]
    try:
        kubernetes_validate.validate(doc, k8s_version, strict=True)
    except kubernetes_validate.SchemaNotFoundError:
        return [f"no schema for {key[0]} {key[1]}"]
    except kubernetes_validate.ValidationError as exc:
        return [f"{'/'.join(map(str, exc.path)) or '<root>'}: {exc.message}"]
    return []


def esrag_variables(doc: Any) -> set[str]:
    """ESRAG_* names a manifest sets: ConfigMap/Secret keys and container env names."""
    found: set[str] = set()
    if isinstance(doc, dict):
        for key, value in doc.items():
            if isinstance(key, str) and key.startswith("ESRAG_"):
                found.add(key)
            if key == "name" and isinstance(value, str) and value.startswith("ESRAG_"):
                found.add(value)
            found |= esrag_variables(value)
    elif isinstance(doc, list):
        for item in doc:
            found |= esrag_variables(item)
    return found


def validate_all(root: Path = HERE) -> list[str]:
    """One line per problem in any manifest under ``root``."""
    problems = []
    for path, doc in manifests(root):
        for problem in validate_doc(doc):
            problems.append(f"{path.name}: {doc.get('kind')} {doc.get('metadata', {}).get('name', '')}: "
                            f"{problem}")
    return problems


def main() -> int:
    """Print problems; exit status 1 when there are any."""
    problems = validate_all()
    for line in problems:
        print(line, file=sys.stderr)
    print(f"{len(list(manifests()))} manifests checked, {len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
