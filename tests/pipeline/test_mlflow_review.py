"""Reviewing a run in the MLflow UI: what a training run leaves for a reviewer to read.

One tiny training run (module fixture) in a temp store; the tests read it back through
MLflow's client, through `python -m pipeline mlflow-links`, and through the real UI in a
headless Chromium (Selenium), as a reviewer would open it.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from mlflow import MlflowClient

from pipeline.config import load_config
from pipeline.stages import train
from pipeline.tracking import EXPERIMENT_KIND, NOTE_TAG
from tests.conftest import tiny_overrides, write_image_folder

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Return (TrainResult, MlflowClient) of one tiny run in a fresh store."""
    folder = tmp_path_factory.mktemp("review")
    store = folder / "mlruns"
    store.mkdir()
    uri = f"sqlite:///{store / 'mlflow.db'}"
    config = load_config(None, tiny_overrides(write_image_folder(folder / "images"), **{
        "tracking.tracking_uri": uri, "export.base_dir": str(folder / "saved_models"),
        "train.checkpoint_dir": str(folder / "checkpoints")}))
    result = train.run(config, log=lambda line: None)
    return result, MlflowClient(tracking_uri=uri, registry_uri=uri)


def test_the_experiment_opens_in_the_model_training_view(trained):
    result, client = trained
    experiment = client.get_experiment_by_name(result.experiment)
    assert experiment.tags[EXPERIMENT_KIND[0]] == "custom_model_development"


def test_the_export_is_a_logged_model_linked_to_its_registered_version(trained):
    result, client = trained
    run = client.get_run(result.run_id)
    [output] = run.outputs.model_outputs
    model = client.get_logged_model(output.model_id)
    assert model.source_run_id == result.run_id and str(model.status) in ("READY", "LoggedModelStatus.READY")
    assert model.model_type == "cnn" and model.tags["model_version"] == str(result.model_version)
    assert {metric.key for metric in model.metrics} >= {"test_accuracy", "test_macro_f1"}
    assert "saved_model.pb" in {item.path for item in client.list_logged_model_artifacts(model.model_id)}
    version = client.get_model_version("tiny", str(result.model_version))
    assert version.source == f"models:/{model.model_id}" and version.run_id == result.run_id
    assert json.loads(model.tags["mlflow.modelVersions"]) == [
        {"name": "tiny", "version": str(result.model_version)}]


def test_the_run_and_the_version_describe_themselves(trained):
    result, client = trained
    run = client.get_run(result.run_id)
    note = run.data.tags[NOTE_TAG]
    assert "| test accuracy | test macro-F1 | test loss | training time | host |" in note
    assert f"{result.metrics['test_accuracy']:.4f}" in note and socket.gethostname() in note
    assert f"(#/models/tiny/versions/{result.model_version})" in note
    assert f"export `{result.export_path}`" in note
    version = client.get_model_version("tiny", str(result.model_version))
    assert f"test accuracy **{result.metrics['test_accuracy']:.4f}**" in version.description
    assert f"runs/{result.run_id})" in version.description and "config fingerprint" in version.description
    assert run.info.run_name == "tiny · cnn · train"
    assert run.data.tags["mlflow.source.type"] == "LOCAL" and run.data.tags["mlflow.source.name"]


def test_mlflow_links_prints_the_experiment_and_the_latest_run(trained, tmp_path):
    result, client = trained
    done = subprocess.run(
        [sys.executable, "-m", "pipeline", "mlflow-links", "--config", str(ROOT / "configs/fashion_cnn.yaml"),
         "--set", f"tracking.tracking_uri={client.tracking_uri}", "--set", "tracking.experiment=tests",
         "--ui-url", "http://ui.example:5000"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    experiment_id = client.get_experiment_by_name("tests").experiment_id
    base = f"http://ui.example:5000/#/experiments/{experiment_id}"
    assert f"experiment tests: {base}?workflowType=machine_learning\n" in done.stdout
    assert (f"latest run tiny · cnn · train (FINISHED): {base}/runs/{result.run_id}"
            "?workflowType=machine_learning\n") in done.stdout


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def mlflow_ui(trained):
    """Yield the address of `mlflow ui` serving the tiny run's store (stopped afterwards)."""
    _, client = trained
    port = free_port()
    mlflow = Path(sys.executable).parent / "mlflow"
    # Its own process group: `mlflow ui` runs uvicorn as a child, stopped with it.
    process = subprocess.Popen(
        [str(mlflow), "ui", "--backend-store-uri", client.tracking_uri, "--host", "127.0.0.1",
         "--port", str(port), "--workers", "1"], stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 180
        while True:
            try:
                urllib.request.urlopen(f"{url}/health", timeout=2)
                break
            except OSError:
                if process.poll() is not None or time.time() > deadline:
                    raise RuntimeError("mlflow ui did not start") from None
                time.sleep(0.5)
        yield url
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:  # `mlflow ui` can outlive its workers' exit
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=20)


@pytest.fixture
def browser():
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver):
        pytest.skip("needs Debian's chromium and chromium-driver (CI installs them)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                     "--disable-gpu", "--window-size=1600,1200"):
        options.add_argument(argument)
    session = webdriver.Chrome(service=Service(driver), options=options)
    session.set_page_load_timeout(60)
    try:
        yield session
    finally:
        session.quit()


def wait_for(browser, predicate, what: str, timeout: float = 120.0):
    """Wait until `predicate()` holds; on timeout fail naming `what`, with a screenshot."""
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(browser, timeout, poll_frequency=0.5).until(lambda _: predicate())
    except TimeoutException:
        shot = Path(os.environ.get("PYTEST_SCREENSHOTS", "/tmp")) / "mlflow-ui-failure.png"
        browser.save_screenshot(str(shot))
        pytest.fail(f"the MLflow UI never showed {what} (screenshot: {shot}); page text: "
                    f"{page_text(browser)[:500]!r}")


def page_text(browser) -> str:
    from selenium.webdriver.common.by import By

    return browser.find_element(By.TAG_NAME, "body").text


def open_page(browser, url: str) -> None:
    browser.get("about:blank")  # a fresh load each time, not a route change inside the app
    browser.get(url)


def test_the_ui_shows_the_run_its_metrics_chart_and_its_figures(trained, mlflow_ui, browser):
    from selenium.webdriver.common.by import By

    result, client = trained
    experiment_id = client.get_experiment_by_name("tests").experiment_id
    experiment_url = f"{mlflow_ui}/#/experiments/{experiment_id}"
    run_url = f"{experiment_url}/runs/{result.run_id}"
    view = "?workflowType=machine_learning"

    open_page(browser, experiment_url + view)  # the runs table, not GenAI's traces overview
    wait_for(browser, lambda: "tiny · cnn · train" in page_text(browser), "the run in the table")
    assert "Token Usage" not in page_text(browser)

    open_page(browser, run_url + view)  # overview: source, description, registered version
    wait_for(browser, lambda: "test macro-F1" in page_text(browser), "the run's description")
    text = page_text(browser)
    assert "No description" not in text and "tiny version 1" in text
    assert "Registered models" in text

    open_page(browser, f"{run_url}/model-metrics{view}")  # per-epoch charts, drawn by plotly
    search = wait_for(browser, lambda: browser.find_elements(
        By.CSS_SELECTOR, "input[placeholder*='Search metric']"), "the chart search box")[0]
    search.send_keys("val_accuracy")  # charts off screen are not drawn: bring this one up
    wait_for(browser, lambda: "tiny · cnn · train (val_accuracy)" in page_text(browser),
             "the val_accuracy chart")
    wait_for(browser, lambda: browser.find_elements(By.CSS_SELECTOR, ".js-plotly-plot .main-svg"),
             "a metrics chart")

    open_page(browser, f"{run_url}/artifacts/evaluation/confusion_matrix.png")
    wait_for(browser, lambda: any(  # the PNG, decoded: the artifact viewer shows it as a blob
        (image.get_attribute("src") or "").startswith("blob:")
        and int(image.get_attribute("naturalWidth") or 0) > 100
        for image in browser.find_elements(By.TAG_NAME, "img")), "the confusion matrix PNG")


def test_links_of_a_tracking_server_that_does_not_answer_are_one_line(monkeypatch):
    from pipeline.tracking import ui_links

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    [line] = ui_links(f"http://127.0.0.1:{free_port()}", "tests", "http://ui.example:5000")
    assert line.startswith("cannot read http://127.0.0.1:")
