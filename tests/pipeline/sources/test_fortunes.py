"""The fortunes source: record parsing, encodings, deduplication across splits, real files."""

from __future__ import annotations

from pathlib import Path
from typing import get_args

import numpy as np
import pytest

from pipeline.config import ConfigError, load_config
from pipeline.config.sections import FortuneLanguage
from pipeline.sources import FORTUNES_DIR, LANGUAGES, DataError, fortunes, missing_debian_packages
from pipeline.sources.fortunes import decode, deduplicate, record_key, split_records


def test_records_split_on_percent_lines_only_and_empty_records_are_dropped():
    text = ("First line\nsecond line\n%\n  \n%\n50% off, not a separator\n% \r\n"
            "Last\n%\n%\n")
    assert split_records(text) == ["First line\nsecond line", "50% off, not a separator", "Last"]
    assert split_records("") == [] and split_records("%\n%\n") == []


def test_backspace_overstriking_is_undone():
    assert split_records("_\bb_\bo_\bl_\bd text\n%\n") == ["bold text"]


def test_utf8_then_the_language_legacy_encoding(tmp_path: Path):
    utf8, latin1, latin2 = tmp_path / "utf8", tmp_path / "latin1", tmp_path / "latin2"
    utf8.write_bytes("Größe\n%\n".encode())
    latin1.write_bytes("Größe\n%\n".encode("latin-1"))
    latin2.write_bytes("Zażółć gęślą jaźń\n%\n".encode("iso-8859-2"))
    assert decode(utf8, "latin-1") == "Größe\n%\n"
    assert decode(latin1, "latin-1") == "Größe\n%\n"
    assert decode(latin2, LANGUAGES["pl"].legacy_encoding) == "Zażółć gęślą jaźń\n%\n"
    assert decode(latin2, "latin-1", declared="iso-8859-2").startswith("Zażółć")


@pytest.mark.parametrize("content, reason", [
    (b"smart \x93quotes\x94 from Windows\n%\n", "not UTF-8 (byte 0x93 at offset 6)"),
    (b"text\0binary\n", "NUL bytes"),
])
def test_an_undecodable_file_is_named(tmp_path: Path, content: bytes, reason: str):
    path = tmp_path / "de" / "broken"
    path.parent.mkdir()
    path.write_bytes(content)
    with pytest.raises(DataError) as error:
        decode(path, "latin-1")
    message = str(error.value)
    assert message.startswith(f"cannot decode {path}") and reason in message
    assert "\n" not in message


def test_deduplicate_keeps_first_and_drops_texts_with_two_labels():
    records = [("Hello  World", 0), ("hello world", 0), ("Ciao", 1), ("Ok", 0), ("ok", 1)]
    assert deduplicate(records) == [("Hello  World", 0), ("Ciao", 1)]


def write_tree(root: Path) -> Path:
    """A fortunes folder shaped like Debian's: top-level English, language folders, noise."""
    root.mkdir()
    repeated = "A fortune found in two English files"
    (root / "wisdom").write_text("".join(f"English wisdom number {i}\n%\n" for i in range(30))
                                 + repeated + "\n%\n")
    (root / "people").write_text(repeated + "\n%\n" + "People say thing {i}\n%\n" * 1)
    (root / "wisdom.dat").write_bytes(b"\0\0\0\2binary strfile index")
    (root / "wisdom.u8").symlink_to("wisdom")
    (root / "brasil").write_text("".join(f"Ditado brasileiro {i}\n%\n" for i in range(20)))
    (root / "de").mkdir()
    (root / "de" / "sprueche").write_bytes("".join(
        f"Spruch Nummer {i}: Größe zählt\n%\n" for i in range(30)).encode("latin-1"))
    (root / "de" / "leer.u8").write_bytes(b"")
    (root / "de" / "off").mkdir()
    (root / "de" / "off" / "derb").write_text("Offensiver Spruch\n%\n")
    (root / "adams").symlink_to(root / "de" / "sprueche")  # like the top-level Italian links
    return root


def fortunes_config(root: Path, **extra):
    overrides = {"data.source": "fortunes", "data.path": str(root),
                 "data.languages": ["en", "de", "pt"], "data.validation_fraction": 0.2,
                 "data.test_fraction": 0.2, "data.text_split": "character", **extra}
    return load_config(None, overrides).data


def texts(source, split: str) -> list[str]:
    return [text.decode() for text, _ in source.splits[split].examples.as_numpy_iterator()]


def test_fortunes_tree_gives_labelled_deduplicated_disjoint_splits(tmp_path: Path):
    root = write_tree(tmp_path / "fortunes")
    source = fortunes(fortunes_config(root), seed=3)
    assert source.class_names == ("en", "de", "pt")
    every = [text for split in ("train", "validation", "test") for text in texts(source, split)]
    keys = [record_key(text) for text in every]
    assert len(keys) == len(set(keys)) == 30 + 1 + 1 + 20 + 30  # the repeat once; no links
    assert not any("Offensiv" in text for text in every)  # off/ left out by default
    assert any("Größe zählt" in text for text in every)  # Latin-1 file decoded
    for first, second in (("train", "test"), ("train", "validation"), ("validation", "test")):
        assert not {record_key(t) for t in texts(source, first)} & {
            record_key(t) for t in texts(source, second)}
    assert source.identity["records"] == "en=32,de=30,pt=20"
    assert len(source.manifest) == 4 and all("\t" in line for line in source.manifest)
    assert source.input_spec.split == "character" and "ö" in source.input_spec.vocabulary
    again = fortunes(fortunes_config(root), seed=3)
    assert texts(again, "test") == texts(source, "test")


def test_offensive_sets_on_request_and_classes_capped(tmp_path: Path):
    root = write_tree(tmp_path / "fortunes")
    source = fortunes(fortunes_config(root, **{"data.include_offensive": True,
                                               "data.max_per_class": 10}), seed=0)
    labels = np.concatenate([[label for _, label in split.examples.as_numpy_iterator()]
                             for split in source.splits.values()])
    assert np.bincount(labels).tolist() == [10, 10, 10]
    assert source.identity["records"] == "en=10,de=10,pt=10"
    assert sum(split.size for split in source.splits.values()) == 30


def test_a_language_without_files_and_a_bad_encoding_are_named(tmp_path: Path):
    root = write_tree(tmp_path / "fortunes")
    with pytest.raises(DataError, match="no Polish fortune files under .*fortunes/pl"):
        fortunes(fortunes_config(root, **{"data.languages": ["en", "pl"]}), seed=0)
    with pytest.raises(ConfigError, match="data.encodings.de/x: unknown encoding 'klingon'"):
        fortunes_config(root, **{"data.encodings": {"de/x": "klingon"}})
    with pytest.raises(ConfigError, match="data.languages"):
        fortunes_config(root, **{"data.languages": ["en", "xx"]})


def test_config_languages_are_the_sources_languages():
    assert set(get_args(FortuneLanguage)) == set(LANGUAGES)


@pytest.mark.skipif(not (FORTUNES_DIR / "de").is_dir(), reason="fortunes-de not installed")
def test_real_fortunes_slice_with_package_identity():
    config = load_config(None, {"data.source": "fortunes", "data.languages": ["de", "cs"],
                                "data.max_per_class": 40, "data.text_split": "character"}).data
    assert missing_debian_packages(config) == ()
    source = fortunes(config, seed=42)
    assert source.identity["origin"] == "debian:fortunes"
    assert "fortunes-de=" in source.identity["packages"]
    assert "fortunes-cs=" in source.identity["packages"]
    assert not any(line.startswith("cs/klasik-sk") for line in source.manifest)  # Slovak
    assert sum(split.size for split in source.splits.values()) == 80
    assert len(source.identity["sha256"]) == 64


def test_missing_packages_are_named_for_make_data():
    config = load_config(None, {"data.source": "fortunes", "data.languages": ["en"]}).data
    installed = missing_debian_packages(config) == ()
    assert installed == (FORTUNES_DIR / "fortunes").is_file()
