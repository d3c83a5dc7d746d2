"""The TFDS source on a real TFDS data set prepared into a temp data_dir (no network), and its
download check: it probes the host and port of the data set's own download URLs."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow_datasets as tfds

from pipeline.config import load_config
from pipeline.sources import DataError, tfds_source
from pipeline.sources.tfds import download_endpoints, tfds_builder
from serving.common import free_port


class TinyStripes(tfds.core.GeneratorBasedBuilder):
    """8x8 images of a horizontal or a vertical stripe, generated: nothing to download."""

    VERSION = tfds.core.Version("1.0.0")

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict({
                "image": tfds.features.Image(shape=(8, 8, 1)),
                "label": tfds.features.ClassLabel(names=["horizontal", "vertical"])}),
            supervised_keys=("image", "label"))

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples(40, 0), "test": self._generate_examples(10, 1)}

    def _generate_examples(self, count: int, seed: int):
        rng = np.random.default_rng(seed)
        for index in range(count):
            image = rng.integers(0, 40, (8, 8, 1), dtype=np.uint8)
            label = index % 2
            row = int(rng.integers(0, 8))
            if label == 0:
                image[row, :, 0] = 250
            else:
                image[:, row, 0] = 250
            yield index, {"image": image, "label": label}


class TinyStripesFromNowhere(TinyStripes):
    """The same data set, said to download from a local port where nothing listens."""

    PORT = free_port()
    url_infos = {f"http://127.0.0.1:{PORT}/stripes.zip": None}


def config_for(name: str, data_dir, **extra):
    return load_config(None, {"data.source": "tfds", "data.name": name,
                              "data.data_dir": str(data_dir), **extra}).data


def test_a_tfds_data_set_is_prepared_into_data_dir_and_split(tmp_path):
    source = tfds_source(config_for("tiny_stripes", tmp_path), seed=0)
    assert source.class_names == ("horizontal", "vertical")
    assert {name: split.size for name, split in source.splits.items()} == {
        "validation": 4, "train": 36, "test": 10}
    image, label = next(iter(source.splits["train"].examples))
    assert image.shape == (8, 8, 1) and image.dtype.name == "uint8" and int(label) in (0, 1)
    assert source.identity["origin"] == "tensorflow-datasets"
    assert source.identity["version"] == "1.0.0"
    assert (tmp_path / "tiny_stripes" / "1.0.0").is_dir()
    again = tfds_source(config_for("tiny_stripes", tmp_path, **{"data.download": False}), seed=0)
    assert again.splits["test"].size == 10  # prepared: read without downloading


def test_download_check_probes_the_data_sets_own_host_and_port(tmp_path):
    port = TinyStripesFromNowhere.PORT
    assert download_endpoints(tfds_builder("tiny_stripes_from_nowhere", tmp_path)) == [
        ("127.0.0.1", port)]
    with pytest.raises(DataError, match=f"download host 127.0.0.1:{port} is unreachable"):
        tfds_source(config_for("tiny_stripes_from_nowhere", tmp_path), seed=0)


def test_download_endpoints_take_the_port_from_the_url_scheme(tmp_path):
    assert download_endpoints(tfds_builder("fashion_mnist", tmp_path)) == [
        ("fashion-mnist.s3-website.eu-central-1.amazonaws.com", 80)]
    assert download_endpoints(tfds_builder("mnist", tmp_path)) == [
        ("storage.googleapis.com", 443)]


def test_a_data_set_not_prepared_without_download_is_an_error(tmp_path):
    with pytest.raises(DataError, match="not prepared in .* and data.download is false"):
        tfds_source(config_for("tiny_stripes", tmp_path, **{"data.download": False}), seed=0)
