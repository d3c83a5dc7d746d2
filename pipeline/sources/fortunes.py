"""Debian's fortune files as labelled text: one example per fortune, its language the label.

The `fortunes*` packages put real, human-written text in many languages under
/usr/share/games/fortunes/: English at the top level, the others in one folder per
language (Portuguese is the top-level file `brasil`). Records are separated by lines holding
only `%`; `.dat` files are strfile indexes, `.u8` names are links to (or empty stand-ins
for) the text files, and `off/` holds offensive sets, left out unless
`data.include_offensive`. Top-level links point into other languages' folders and are
skipped, so no file is read twice.

Files are UTF-8 on current Debian, but older packages shipped Latin-1 and ISO-8859-2 text:
each file is decoded as UTF-8 when it is valid UTF-8, else in its language's legacy
encoding, or in the encoding `data.encodings` declares for it. A file that none of these
decodes cleanly (NUL bytes, or C1 control characters after the legacy decoding) is an error
naming the file.

The same fortune appears in several files (and a few in two languages): records are
deduplicated before the seeded split, so a record never sits on both sides of it, and a
text found under two languages is dropped as ambiguous.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tensorflow as tf

from pipeline.config import DataConfig
from pipeline.sources.base import (
    DataError,
    MissingPackages,
    Source,
    Split,
    finish_source,
    installed_versions,
    partition,
    sha256_file,
)

FORTUNES_DIR = Path("/usr/share/games/fortunes")
RECORD_SEPARATOR = re.compile(r"^%[ \t\r]*$", re.MULTILINE)
OVERSTRIKE = re.compile(r".\x08")  # old English files underline or bold by backspacing
C1_CONTROLS = re.compile("[\x80-\x9f]")


@dataclass(frozen=True)
class Language:
    name: str
    packages: tuple[str, ...]  # the Debian packages that install its files
    folder: str  # under the fortunes folder; "" for the top level
    legacy_encoding: str  # what its files were written in before Debian moved to UTF-8
    only: tuple[str, ...] = ()  # at the top level: these files and no others
    exclude: tuple[str, ...] = ()  # file names that are not this language


LANGUAGES: dict[str, Language] = {
    "en": Language("English", ("fortunes", "fortunes-min"), "", "latin-1", exclude=("brasil",)),
    "de": Language("German", ("fortunes-de",), "de", "latin-1"),
    "es": Language("Spanish", ("fortunes-es",), "es", "latin-1"),
    "it": Language("Italian", ("fortunes-it",), "it", "latin-1"),
    "pt": Language("Portuguese", ("fortunes-br",), "", "latin-1", only=("brasil",)),
    "pl": Language("Polish", ("fortunes-pl",), "pl", "iso-8859-2"),
    # fortunes-cs also ships klasik-sk, Slovak classics: not Czech, so not under cs.
    "cs": Language("Czech", ("fortunes-cs",), "cs", "iso-8859-2", exclude=("klasik-sk",)),
    "eo": Language("Esperanto", ("fortunes-eo",), "eo", "iso-8859-3"),
    "ga": Language("Irish", ("fortunes-ga",), "ga", "latin-1"),
}


def language_packages(config: DataConfig) -> tuple[str, ...]:
    """Return the Debian packages holding the configured languages' files."""
    return tuple(package for code in _languages(config) for package in LANGUAGES[code].packages)


def _languages(config: DataConfig) -> tuple[str, ...]:
    return tuple(config.languages or LANGUAGES)


def language_files(root: Path, code: str, include_offensive: bool) -> list[Path]:
    """Return the text files of one language, sorted; links, indexes and empty files left out."""
    language = LANGUAGES[code]
    folders = [root / language.folder]
    if include_offensive and language.folder:
        folders.append(root / language.folder / "off")
    files = []
    for folder in folders:
        if not folder.is_dir():
            continue
        for path in sorted(folder.iterdir()):
            if (path.is_symlink() or not path.is_file() or path.suffix in (".dat", ".u8")
                    or path.stat().st_size == 0 or path.name in language.exclude
                    or (language.only and path.name not in language.only)):
                continue
            files.append(path)
    return files


def decode(path: Path, legacy_encoding: str, declared: str | None = None) -> str:
    """Return a fortune file's text: `declared` encoding, else UTF-8, else the legacy one."""
    raw = path.read_bytes()
    if b"\0" in raw:
        raise DataError(f"cannot decode {path}: it holds NUL bytes (binary, not a fortune file)")
    if declared:
        try:
            return raw.decode(declared)
        except UnicodeDecodeError as error:
            raise DataError(f"cannot decode {path} as {declared} (data.encodings): byte "
                            f"0x{raw[error.start]:02x} at offset {error.start}") from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as error:
        utf8_error = error
    text = raw.decode(legacy_encoding, errors="replace")
    bad = C1_CONTROLS.search(text) or re.search("\ufffd", text)
    if bad:
        offset = utf8_error.start
        raise DataError(f"cannot decode {path}: not UTF-8 (byte 0x{raw[offset]:02x} at offset "
                        f"{offset}) and not {legacy_encoding}; declare its encoding in "
                        f"data.encodings")
    return text


def split_records(text: str) -> list[str]:
    """Return the non-empty records of a fortune file's text, stripped, backspacing undone."""
    records = (OVERSTRIKE.sub("", part).strip() for part in RECORD_SEPARATOR.split(text))
    return [record for record in records if record]


def record_key(text: str) -> str:
    """Return what makes two records the same fortune: case and spacing ignored."""
    return " ".join(text.casefold().split())


def deduplicate(records: list[tuple[str, int]]) -> list[tuple[str, int]]:
    """Return each distinct record once, in first-seen order; drop texts with two labels."""
    first: dict[str, tuple[str, int]] = {}
    ambiguous: set[str] = set()
    for text, label in records:
        key = record_key(text)
        if key in first and first[key][1] != label:
            ambiguous.add(key)
        first.setdefault(key, (text, label))
    return [record for key, record in first.items() if key not in ambiguous]


def balance(records: list[tuple[str, int]], limit: int | None, seed: int) -> list[tuple[str, int]]:
    """Return at most `limit` records per label, chosen by a seeded permutation, in order."""
    if limit is None:
        return records
    order = np.random.default_rng(seed).permutation(len(records))
    kept, counts = [], {}
    for index in order:
        label = records[index][1]
        if counts.get(label, 0) < limit:
            counts[label] = counts.get(label, 0) + 1
            kept.append(index)
    return [records[index] for index in sorted(kept)]


def read_records(root: Path, config: DataConfig) -> tuple[list[tuple[str, int]], list[str]]:
    """Return (text, label) of every record of the configured languages, and the manifest."""
    records, manifest = [], []
    declared = {str(name): encoding for name, encoding in config.encodings.items()}
    for label, code in enumerate(_languages(config)):
        files = language_files(root, code, config.include_offensive)
        if not files:
            raise DataError(f"data.languages: no {LANGUAGES[code].name} fortune files under "
                            f"{root / LANGUAGES[code].folder}")
        for path in files:
            relative = str(path.relative_to(root))
            text = decode(path, LANGUAGES[code].legacy_encoding, declared.get(relative))
            records += [(record, label) for record in split_records(text)]
            manifest.append(f"{relative}\t{sha256_file(path)}")
    return records, manifest


def fortunes(config: DataConfig, seed: int) -> Source:
    """Return Debian's fortunes as (text, language) examples in seeded, disjoint splits."""
    root = Path(config.path or FORTUNES_DIR)
    codes = _languages(config)
    versions = installed_versions(language_packages(config)) if root == FORTUNES_DIR else {}
    missing = tuple(package for package, version in versions.items() if version is None)
    if missing:
        raise MissingPackages(f"fortunes: Debian packages {', '.join(missing)} are not "
                              f"installed; `make data` installs them "
                              f"(sudo apt-get install {' '.join(missing)})", missing)
    if not root.is_dir():
        raise DataError(f"data.path: fortunes folder not found: {root}")
    records, manifest = read_records(root, config)
    records = balance(deduplicate(records), config.max_per_class, seed)
    fractions = {"validation": config.validation_fraction, "test": config.test_fraction}
    splits = {}
    for part, indices in partition(len(records), fractions, seed).items():
        indices = indices if config.max_examples is None else indices[:config.max_examples]
        texts = tf.constant([records[i][0] for i in indices], dtype=tf.string)
        labels = np.array([records[i][1] for i in indices], dtype=np.int64)
        splits[part] = Split(tf.data.Dataset.from_tensor_slices((texts, labels)), len(indices))
    counts = np.bincount([label for _, label in records], minlength=len(codes))
    identity = {
        "origin": "debian:fortunes", "name": "fortunes", "folder": str(root),
        "languages": ",".join(codes), "files": len(manifest),
        "records": ",".join(f"{code}={count}" for code, count in zip(codes, counts)),
        "packages": ",".join(f"{package}={version}" for package, version in versions.items()),
        "sha256": hashlib.sha256("\n".join(manifest).encode()).hexdigest(),
    }
    source = finish_source(splits, None, codes, identity, config)
    return Source(source.splits, source.input_spec, codes, identity, manifest)
