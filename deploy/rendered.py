"""Sorts the objects of one rendered kustomization for deploy/check.sh, and checks the ones that
kubernetes-validate cannot.

kubernetes-validate bundles the schemas of Kubernetes' own kinds only: it passes a custom
resource such as the Prometheus Operator's ServiceMonitor with a mere warning, so a typo there
would go unnoticed. This script therefore
- writes the built-in objects to one file, for `kubernetes-validate --strict`;
- validates each ServiceMonitor against a schema derived from the prometheus-operator CRD
  (the pydantic models of PyPI `cloudcoil.models.prometheus_operator`, made strict: an unknown
  field is an error, as with `--strict`);
- refuses any other kind it does not know, so that a new custom resource gets a check too;
- writes the `config.toml` of every ConfigMap to a directory, for `crossdock check-config`.

Usage: rendered.py RENDERED.yaml BUILTIN_OUT.yaml CONFIG_DIR
Exit status 0 when all is well, 1 with the problems on stderr.
"""

import pathlib
import sys

import jsonschema
import yaml

# API groups whose schemas kubernetes-validate bundles ("" is the core group, `v1`).
BUILTIN_GROUPS = {"", "apps", "batch", "policy", "rbac.authorization.k8s.io", "networking.k8s.io"}


def group_of(api_version: str) -> str:
    return api_version.rpartition("/")[0]


def make_strict(node):
    """Forbids properties a schema does not name, everywhere in it (pydantic's models, like
    the CRD they come from, would otherwise let a misspelled field through)."""
    if isinstance(node, dict):
        if node.get("type") == "object" and "properties" in node:
            node.setdefault("additionalProperties", False)
        for value in node.values():
            make_strict(value)
    elif isinstance(node, list):
        for value in node:
            make_strict(value)
    return node


def servicemonitor_validator():
    # Imported here: the models are large, and only overlays with a ServiceMonitor need them.
    from cloudcoil.models.prometheus_operator.v1 import ServiceMonitor

    schema = ServiceMonitor.model_json_schema(by_alias=True, mode="validation")
    return jsonschema.Draft202012Validator(make_strict(schema))


def main(rendered: str, builtin_out: str, config_dir: str) -> int:
    docs = [d for d in yaml.safe_load_all(pathlib.Path(rendered).read_text()) if d]
    problems = []
    builtin = []
    configs = pathlib.Path(config_dir)
    configs.mkdir(parents=True, exist_ok=True)
    sm_validator = None

    for doc in docs:
        kind, api_version = doc.get("kind", "?"), doc.get("apiVersion", "?")
        name = doc.get("metadata", {}).get("name", "?")
        where = f"{rendered}: {kind}/{name}"
        if group_of(api_version) in BUILTIN_GROUPS:
            builtin.append(doc)
            if kind == "ConfigMap" and "config.toml" in doc.get("data", {}):
                out = configs / f"{name}.toml"
                out.write_text(doc["data"]["config.toml"])
                print(f"{where}: config.toml -> {out}")
        elif (api_version, kind) == ("monitoring.coreos.com/v1", "ServiceMonitor"):
            sm_validator = sm_validator or servicemonitor_validator()
            errors = sorted(sm_validator.iter_errors(doc), key=lambda e: list(e.absolute_path))
            for e in errors:
                path = ".".join(str(p) for p in e.absolute_path) or "(root)"
                problems.append(f"{where}: {path}: {e.message}")
            if not errors:
                print(f"{where}: valid against the prometheus-operator v0.80 ServiceMonitor schema")
        else:
            problems.append(f"{where}: no schema known for {api_version} {kind}; add a check")

    pathlib.Path(builtin_out).write_text(yaml.safe_dump_all(builtin, sort_keys=False))
    for p in problems:
        print(f"error: {p}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    sys.exit(main(*sys.argv[1:]))
