"""Sorts the objects of one rendered kustomization for deploy/check.sh, checks the ones that
kubernetes-validate cannot, and extracts what the crossdock binary itself should check.

kubernetes-validate bundles the schemas of Kubernetes' own kinds only: it passes a custom
resource such as the Prometheus Operator's ServiceMonitor with a mere warning, so a typo there
would go unnoticed. This script therefore
- writes the built-in objects to one file, for `kubernetes-validate --strict`;
- validates each ServiceMonitor and PrometheusRule against a schema derived from the
  prometheus-operator CRD (the pydantic models of PyPI `cloudcoil.models.prometheus_operator`,
  made strict: an unknown field is an error, as with `--strict`), and checks that a
  PrometheusRule holds exactly the groups of deploy/prometheus/crossdock-alerts.yaml (the file
  `promtool test rules` tests);
- refuses any other kind it does not know, so that a new custom resource gets a check too;
- writes into OUT_DIR the `config.toml` of every ConfigMap (NAME.toml, for
  `crossdock check-config`) and the arguments of every crossdock container (KIND-NAME.args,
  NUL-separated, with the kubelet's `$(VAR)` expansion done from the container's env), so that
  check.sh can have the binary's own parser accept them.

Usage: rendered.py RENDERED.yaml BUILTIN_OUT.yaml OUT_DIR
Exit status 0 when all is well, 1 with the problems on stderr.
"""

import pathlib
import re
import sys

import jsonschema
import yaml

# API groups whose schemas kubernetes-validate bundles ("" is the core group, `v1`).
BUILTIN_GROUPS = {"", "apps", "batch", "policy", "rbac.authorization.k8s.io", "networking.k8s.io"}

# What a downward-API variable stands for when the arguments are checked offline: the first
# pod of an Indexed Job.
FIELD_EXAMPLES = {"metadata.annotations['batch.kubernetes.io/job-completion-index']": "0"}


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


# The plain Prometheus rules file that the PrometheusRule must mirror.
ALERTS_FILE = pathlib.Path(__file__).parent / "prometheus" / "crossdock-alerts.yaml"


def operator_validator(kind):
    # Imported here: the models are large, and only overlays with such objects need them.
    from cloudcoil.models.prometheus_operator import v1

    schema = getattr(v1, kind).model_json_schema(by_alias=True, mode="validation")
    return jsonschema.Draft202012Validator(make_strict(schema))


def pod_spec(doc):
    spec = doc.get("spec", {})
    if doc["kind"] == "CronJob":
        spec = spec.get("jobTemplate", {}).get("spec", {})
    template = spec.get("template")
    return template.get("spec") if template else None


def expanded_args(container, where, problems):
    """The container's arguments as the kubelet passes them: `$(VAR)` replaced by the value of
    the container's variable VAR."""
    env = {}
    for var in container.get("env", []):
        if "value" in var:
            env[var["name"]] = var["value"]
        else:
            field = var.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath")
            if field in FIELD_EXAMPLES:
                env[var["name"]] = FIELD_EXAMPLES[field]

    def expand(match):
        name = match.group(1)
        if name not in env:
            problems.append(f"{where}: $({name}) in the arguments has no value to check with")
            return match.group(0)
        return env[name]

    return [re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", expand, a) for a in container.get("args", [])]


def main(rendered: str, builtin_out: str, out_dir: str) -> int:
    docs = [d for d in yaml.safe_load_all(pathlib.Path(rendered).read_text()) if d]
    problems = []
    builtin = []
    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    validators = {}

    for doc in docs:
        kind, api_version = doc.get("kind", "?"), doc.get("apiVersion", "?")
        name = doc.get("metadata", {}).get("name", "?")
        where = f"{rendered}: {kind}/{name}"
        if group_of(api_version) in BUILTIN_GROUPS:
            builtin.append(doc)
            if kind == "ConfigMap" and "config.toml" in doc.get("data", {}):
                (out / f"{name}.toml").write_text(doc["data"]["config.toml"])
            spec = pod_spec(doc)
            for container in (spec or {}).get("containers", []):
                if container.get("name") == "crossdock":
                    args = expanded_args(container, where, problems)
                    (out / f"{kind}-{name}.args").write_text("".join(a + "\0" for a in args))
        elif api_version == "monitoring.coreos.com/v1" and kind in ("ServiceMonitor", "PrometheusRule"):
            validator = validators.setdefault(kind, operator_validator(kind))
            errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path))
            for e in errors:
                path = ".".join(str(p) for p in e.absolute_path) or "(root)"
                problems.append(f"{where}: {path}: {e.message}")
            if not errors:
                print(f"    {kind}/{name}: valid against prometheus-operator v0.80's schema (strict)")
            if kind == "PrometheusRule":
                want = yaml.safe_load(ALERTS_FILE.read_text())["groups"]
                if doc.get("spec", {}).get("groups") != want:
                    problems.append(
                        f"{where}: spec.groups differ from {ALERTS_FILE.name}; copy them over"
                    )
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
