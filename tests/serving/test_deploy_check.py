"""make deploy-check: the files in deploy/ pass, and one wrong field anywhere fails it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from serving import deploy_check

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def test_the_deploy_files_pass(capsys):
    assert deploy_check.main(["--deploy-dir", str(DEPLOY)]) == 0
    out = capsys.readouterr().out
    assert "valid against the Compose specification" in out
    assert "valid against the Kubernetes 1.28 schemas (strict)" in out
    for name in ("models.config", "batching.config", "monitoring.config"):
        assert f"tfserving/{name}" in out


@pytest.mark.parametrize("file, old, new, expected", [
    ("k8s/deployment.yaml", "terminationGracePeriodSeconds:", "terminationGracePeriodSecond:",
     "Deployment/tfserving: spec.template.spec: Additional properties are not allowed "
     "('terminationGracePeriodSecond' was unexpected)"),
    ("k8s/deployment.yaml", "            limits:\n              memory: 8Gi", "            limit:\n              memory: 8Gi",
     "Deployment/tfserving: spec.template.spec.containers.0.resources: Additional properties "
     "are not allowed ('limit' was unexpected)"),
    ("k8s/service.yaml", "targetPort: grpc", "targetPorts: grpc", "'targetPorts' was unexpected"),
    ("k8s/hpa.yaml", "averageUtilization: 70", "averageUtilization: high", "averageUtilization"),
    ("compose.yaml", "    restart: unless-stopped\n\n  postgres:", "    restarts: 3\n\n  postgres:",
     "services.tfserving: "),
    ("tfserving/batching.config", "max_batch_size {", "max_batch_sizes {",
     'BatchingParameters" has no field named "max_batch_sizes"'),
    ("tfserving/models.config", 'base_path: "/models/fashion_cnn"', 'base_path: "models/fashion_cnn"',
     "Expected model fashion_cnn to have an absolute path"),
    ("k8s/kustomization.yaml", "MODEL_NAME=fashion_cnn", "MODEL_NAME=fashion_rnn",
     "MODEL_NAME 'fashion_rnn' is not in models.config (fashion_cnn)"),
    ("prometheus/prometheus.yml", "metrics_path: /monitoring/prometheus/metrics", "metrics_path: /metrics",
     "job tfserving scrapes /metrics, not the monitoring config's"),
    ("k8s/deployment.yaml", "--batching_parameters_file=/config/batching.config",
     "--batching_parameters_file=/etc/batching.config", "is not a file of a mounted ConfigMap"),
    ("k8s/kustomization.yaml", "  - name: tfpipe\n", "  - name: tfpipes\n",
     "images: no container uses the image 'tfpipes'"),
])
def test_one_wrong_field_fails_naming_it(tmp_path, capsys, file, old, new, expected):
    copy = tmp_path / "deploy"
    shutil.copytree(DEPLOY, copy)
    text = (copy / file).read_text()
    assert old in text
    (copy / file).write_text(text.replace(old, new, 1))
    assert deploy_check.main(["--deploy-dir", str(copy)]) == 1
    errors = capsys.readouterr().err
    assert expected in errors
    assert all(line.startswith("error: ") for line in errors.splitlines())
