"""What every evaluation result offers, so the CLI reports them all with one helper."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from typing import Protocol


class EvalResult(Protocol):
    @property
    def title(self) -> str: ...  # table title, e.g. "CorLoc · voc07"

    def columns(self) -> dict[str, str]: ...  # human table: column name -> formatted value

    def to_dict(self) -> dict: ...  # the JSON payload (--json)


def csv_bytes(header: Sequence[str], rows: Iterable[Sequence[object]]) -> bytes:
    """A per-image table as CSV (LF line ends)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)
    return buf.getvalue().encode()
