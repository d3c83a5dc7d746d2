"""End to end: one real server process, REST and gRPC against in-process SavedModel outputs.

The server serves three models from one models.config: `demo` (versions 1 and 2, labels
stable/canary, warmup requests in v1), `half_plus_two` (classify/regress signatures) and
`swap` (latest policy; the hot-swap test drops new versions into it while requests run).
One server serves every module of this folder; they run in name order, and
test_status_and_swap.py, which changes what is served, comes last.
"""

from __future__ import annotations

import pytest

from serving.bench.demo_model import sample_pixels
from tests.serving.serving_fixtures import copy_version, pixel_request, write_warmup


@pytest.fixture(scope="package")
def server(model_store, start_server, tmp_path_factory):
    root = tmp_path_factory.mktemp("served")
    demo_v1 = copy_version(model_store["demo_v1"], root / "demo", 1) if (root / "demo").mkdir() is None else None
    copy_version(model_store["demo_v1"], root / "demo", 2)
    write_warmup(demo_v1, [pixel_request("demo", sample_pixels(2, seed=5))])
    (root / "half_plus_two").mkdir()
    copy_version(model_store["hpt_v1"], root / "half_plus_two", 1)
    (root / "swap").mkdir()
    copy_version(model_store["demo_v1"], root / "swap", 1)
    config = root / "models.config"
    config.write_text(f"""
model_config_list {{
  config {{
    name: "demo" base_path: "{root / 'demo'}" model_platform: "tensorflow"
    model_version_policy {{ specific {{ versions: 1 versions: 2 }} }}
    version_labels {{ key: "stable" value: 1 }}
    version_labels {{ key: "canary" value: 2 }}
  }}
  config {{ name: "half_plus_two" base_path: "{root / 'half_plus_two'}" model_platform: "tensorflow" }}
  config {{ name: "swap" base_path: "{root / 'swap'}" model_platform: "tensorflow" }}
}}
""")
    monitoring = root / "monitoring.config"
    monitoring.write_text('prometheus_config { enable: true, path: "/monitoring/prometheus/metrics" }')
    process = start_server([
        f"--model_config_file={config}", "--allow_version_labels_for_unavailable_models",
        f"--monitoring_config_file={monitoring}", "--file_system_poll_wait_seconds=1",
        "--max_request_bytes=1000000", "--max_num_load_retries=0",
    ])
    process.root = root
    yield process
    assert process.stop() == 0, process.log()
