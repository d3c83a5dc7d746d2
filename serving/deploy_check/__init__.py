"""`python -m serving.deploy_check` (`make deploy-check`): the files in deploy/, checked offline.

- deploy/k8s/: the kustomization is rendered as kustomize renders the parts it uses
  (resources and bases, configMapGenerator, images) and every object is validated against
  the Kubernetes OpenAPI schemas that kubernetes-validate bundles, strictly: a field that
  Kubernetes does not know fails, as `kubectl apply` would refuse it.
- deploy/compose.yaml: validated against the Compose specification's JSON schema (the copy
  that check-jsonschema ships, taken from github.com/compose-spec/compose-spec).
- Every TF Serving file either of them hands to `tensorflow_model_server`
  (--model_config_file, --batching_parameters_file, --monitoring_config_file) is found
  through its mount and parsed with TF Serving's messages; the model that health checks ask
  for must be in models.config, and Prometheus must scrape the path monitoring.config sets.
Each problem is one line naming the file, the object and the field; the exit status is 1.
"""


from __future__ import annotations

import argparse
import sys
from pathlib import Path

from serving.deploy_check.common import Check, shown
from serving.deploy_check.compose import check_compose
from serving.deploy_check.kubernetes import KUBERNETES_VERSION, check_kubernetes


def main(argv: list[str] | None = None) -> int:
    """Check deploy/; print what was checked, or one line per problem; return 0 or 1."""
    parser = argparse.ArgumentParser(prog="python -m serving.deploy_check", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--deploy-dir", type=Path, default=Path("deploy"))
    parser.add_argument("--kubernetes-version", default=KUBERNETES_VERSION)
    args = parser.parse_args(argv)
    check = Check()
    compose = args.deploy_dir / "compose.yaml"
    if not compose.is_file() or not (args.deploy_dir / "k8s" / "kustomization.yaml").is_file():
        print(f"error: {args.deploy_dir} has no compose.yaml or k8s/kustomization.yaml", file=sys.stderr)
        return 1
    services = check_compose(compose, check)
    objects = check_kubernetes(args.deploy_dir / "k8s", check, args.kubernetes_version)
    for problem in dict.fromkeys(check.problems):  # a file two servers mount: once
        print(f"error: {problem}", file=sys.stderr)
    if check.problems:
        return 1
    print(f"{shown(compose)}: {services} services valid against the Compose specification")
    print(f"{shown(args.deploy_dir / 'k8s')}: {objects} objects valid against the Kubernetes "
          f"{args.kubernetes_version} schemas (strict)")
    parsed = sorted({shown(path) for path in check.parsed})
    print(f"TF Serving files parsed with its protos: {', '.join(parsed)}")
    return 0

