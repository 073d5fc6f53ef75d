"""What a CSV file looks like before it is read: its encoding, delimiter and header, and where it breaks.

The importer (pandas) and the folder datasets (DuckDB) both ask here first, so that a file in another
encoding, a header with a name twice or a row with more fields than the header is a message naming
the file, the line and the setting to change, not a traceback or a silently shifted column.
"""

from __future__ import annotations

import codecs
import csv
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from features.errors import DataError

DEFAULT_ENCODING = "utf-8"
_HEAD_BYTES = 1 << 16
_DELIMITERS = ",;\t|"


@dataclass(frozen=True)
class CsvShape:
    """The dialect of a CSV file as its first lines show it.

    Attributes:
        path: the file.
        encoding: the text encoding it is read with.
        delimiter: the field separator.
        header: the column names of the first line.
    """

    path: Path
    encoding: str
    delimiter: str
    header: list[str]


def encoding_hint(setting: str) -> str:
    """What to do about a file in another encoding, naming the user's setting."""
    return f"give its encoding with {setting}, e.g. gbk or gb18030 for Chinese Windows exports, big5 for Traditional Chinese, cp1252 for Western European ones"


def codec_name(encoding: str | None, setting: str) -> str:
    """The Python codec for ``encoding`` (default UTF-8, a byte-order mark allowed).

    Raises:
        DataError: the encoding is unknown.
    """
    name = encoding or DEFAULT_ENCODING
    try:
        found = codecs.lookup(name).name
    except LookupError:
        raise DataError(f"unknown encoding {name!r} in {setting}: use a name such as utf-8, gbk, gb18030, big5 or cp1252") from None
    return "utf-8-sig" if found in ("utf-8", "utf-8-sig") else found


def sniff_csv(path: Path, *, encoding: str | None, setting: str, label: str) -> CsvShape:
    """The encoding, delimiter and header of a CSV file, read from its first 64 KiB.

    Args:
        path: the file.
        encoding: its text encoding (None: UTF-8).
        setting: the option that sets the encoding, for messages ("--encoding").
        label: what the file is, for messages ("table orders").

    Returns:
        The file's shape.

    Raises:
        DataError: the start of the file is not text in that encoding, or its header names a column twice.
    """
    codec = codec_name(encoding, setting)
    with path.open("rb") as fh:
        head = fh.read(_HEAD_BYTES)
    try:
        text = codecs.getincrementaldecoder(codec)().decode(head, final=len(head) < _HEAD_BYTES)
    except UnicodeDecodeError as err:
        raise not_in_encoding(path, codec, err, head, setting, label) from None
    lines = text.splitlines()
    try:
        delimiter = csv.Sniffer().sniff("\n".join(lines[:50]), delimiters=_DELIMITERS).delimiter
    except csv.Error:
        delimiter = ","
    header = next(csv.reader(lines[:1], delimiter=delimiter), [])
    shape = CsvShape(path, codec, delimiter, header)
    check_unique_names(path.name, header, label)
    return shape


def not_in_encoding(path: Path, codec: str, err: UnicodeDecodeError, data: bytes, setting: str, label: str, *, offset: int = 0) -> DataError:
    """The message for a file that is not text in ``codec``: where it breaks and what to set."""
    at = offset + err.start
    line = data[: err.start].count(b"\n") + 1 if offset == 0 else None
    where = f"line {line}" if line is not None else f"byte {at:,}"
    shown = "UTF-8" if codec == "utf-8-sig" else codec
    return DataError(f"{label}: {path} is not {shown} text ({where}: bytes {err.object[err.start:err.start + 2]!r}): {encoding_hint(setting)}")


def check_unique_names(file_name: str, header: list[str], label: str) -> None:
    """Refuse a header that names a column twice (ignoring case and spaces, as the engines do).

    Raises:
        DataError: naming the column and both positions.
    """
    seen: dict[str, int] = {}
    for position, name in enumerate(header, start=1):
        key = str(name).strip().lower()
        if key in seen:
            raise DataError(
                f"{label}: {file_name} names the column {str(name).strip()!r} twice (columns {seen[key]} and {position} of the header): "
                "rename or remove one (only one of them could be read)"
            )
        seen[key] = position


def text_lines(shape: CsvShape) -> Iterator[str]:
    """The file's text, decoded in its encoding, for the csv module."""
    with shape.path.open(encoding=shape.encoding, newline="") as fh:
        yield from fh


def ragged_row(shape: CsvShape, label: str) -> DataError | None:
    """The first row whose number of fields differs from the header's, as a message; None when every row fits.

    Args:
        shape: the file's shape (from :func:`sniff_csv`).
        label: what the file is, for messages.

    Returns:
        A :class:`DataError` naming the line, or None.
    """
    reader = csv.reader(text_lines(shape), delimiter=shape.delimiter)
    width = len(shape.header)
    for row in reader:
        if reader.line_num > 1 and row and len(row) != width:
            return DataError(
                f"{label}: line {reader.line_num} of {shape.path.name} has {len(row)} fields where the header has {width} "
                f"({', '.join(shape.header)}): a value holding the delimiter {shape.delimiter!r} must be quoted, or a field is missing or extra"
            )
    return None


def utf8_copy(shape: CsvShape, target: Path, setting: str, label: str) -> Path:
    """The file re-encoded as UTF-8 at ``target`` (for readers that take only UTF-8).

    Raises:
        DataError: a part of the file is not text in the shape's encoding.
    """
    decoder = codecs.getincrementaldecoder(shape.encoding)()
    offset = 0
    with shape.path.open("rb") as src, target.open("w", encoding="utf-8", newline="") as dst:
        while chunk := src.read(1 << 20):
            try:
                dst.write(decoder.decode(chunk))
            except UnicodeDecodeError as err:
                raise not_in_encoding(shape.path, shape.encoding, err, chunk, setting, label, offset=offset) from None
            offset += len(chunk)
        dst.write(decoder.decode(b"", final=True))
    return target


def decode_failure(shape: CsvShape, setting: str, label: str) -> DataError | None:
    """Where the whole file stops being text in its encoding, as a message; None when it is text throughout."""
    decoder = codecs.getincrementaldecoder(shape.encoding)()
    offset = 0
    with shape.path.open("rb") as src:
        while chunk := src.read(1 << 20):
            try:
                decoder.decode(chunk)
            except UnicodeDecodeError as err:
                return not_in_encoding(shape.path, shape.encoding, err, chunk, setting, label, offset=offset)
            offset += len(chunk)
    return None

