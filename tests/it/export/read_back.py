"""Reads an exported file with readers that are not the service's own, and prints what
they see as one JSON object, for tests/it/export.rs to compare with the API's prices.

    python read_back.py FORMAT PATH_OR_URL

FORMAT is feather, parquet, json, jsongz or csv. Parquet and Feather are read by pyarrow
(and pandas, as `pandas.read_parquet(url)` reads them); JSON, JSON.gz and CSV by Python's own
json, gzip and csv modules; every format freqtrade reads, by freqtrade itself (its data
handler, as a backtest loads its `datadir`). Prints:

    {"columns": [...], "types": [...], "rows": [[ms, open, high, low, close, volume,
     source or null], ...], "disputed": [bool, ...] or null, "lz4": bool or null,
     "freqtrade_rows": int or null}

CSV dates are days (`2024-01-01`) or hours (`2024-01-01T04:00:00Z`).
"""

import csv
import datetime
import gzip
import io
import json
import sys
import urllib.request

OHLCV = ["date", "open", "high", "low", "close", "volume"]
# The magic number that opens every LZ4 frame (0x184D2204, little-endian).
LZ4_FRAME_MAGIC = b"\x04\x22\x4d\x18"


def columnar(fmt, source):
    import pandas as pd
    import pyarrow as pa
    import pyarrow.dataset as ds
    import pyarrow.feather as feather
    import pyarrow.parquet as pq

    if source.startswith("http"):
        # What the README promises: pandas reads the URL alone.
        frame = pd.read_parquet(source) if fmt == "parquet" else pd.read_feather(source)
        table = pa.Table.from_pandas(frame, preserve_index=False)
        data = None
    else:
        table = feather.read_table(source) if fmt == "feather" else pq.read_table(source)
        with open(source, "rb") as f:
            data = f.read()
    dates = table.column("date").cast(pa.timestamp("ms", tz="UTC")).cast(pa.int64()).to_pylist()
    values = [table.column(name).to_pylist() for name in OHLCV[1:]]
    sources = table.column("source").to_pylist()
    rows = [[d, *v, s] for d, *v, s in zip(dates, *values, sources)]
    result = {
        "columns": table.column_names,
        "types": [str(t) for t in table.schema.types],
        "rows": rows,
        "disputed": table.column("disputed").to_pylist() if "disputed" in table.column_names else None,
        "lz4": None,
        "freqtrade_rows": None,
    }
    if data is not None:
        if fmt == "feather":
            # Feather's buffers are LZ4 frames when compressed as freqtrade writes them.
            result["lz4"] = LZ4_FRAME_MAGIC in data
        else:
            codecs = {
                pq.ParquetFile(io.BytesIO(data)).metadata.row_group(0).column(i).compression
                for i in range(table.num_columns)
            } if table.num_rows else set()
            result["codecs"] = sorted(codecs)
        result["freqtrade_rows"] = freqtrade_load(source, fmt)
    return result


def freqtrade_load(path, fmt):
    """How many candles freqtrade itself loads from the file, through its own data handler
    for `fmt` (feather, parquet, json, jsongz), as a backtest with `datadir` pointing at
    the file's folder would; freqtrade logs a file it cannot read and loads nothing. None
    for a file not named as freqtrade names its files."""
    import pathlib
    import re

    from freqtrade.data.history import get_datahandler
    from freqtrade.enums import CandleType

    path = pathlib.Path(path)
    named = re.fullmatch(r"([A-Z0-9]+)_([A-Z]+)-(\w+?)\.[a-z.]+", path.name)
    if named is None:
        # Not under freqtrade's name (an API answer saved as it came): freqtrade finds
        # no pair in it.
        return None
    base, quote, timeframe = named.groups()
    handler = get_datahandler(path.parent, fmt)
    frame = handler.ohlcv_load(
        f"{base}/{quote}", timeframe, candle_type=CandleType.SPOT, fill_missing=False
    )
    if list(frame.columns) != OHLCV:
        raise SystemExit(f"freqtrade loaded the columns {list(frame.columns)}")
    return len(frame)


def milliseconds(date):
    """A CSV date, `2024-01-01` or `2024-01-01T04:00:00Z` (nothing else), in ms since 1970."""
    shape = "%Y-%m-%dT%H:%M:%SZ" if "T" in date else "%Y-%m-%d"
    at = datetime.datetime.strptime(date, shape).replace(tzinfo=datetime.timezone.utc)
    return int(at.timestamp() * 1000)


def text(fmt, path):
    opener = gzip.open if fmt == "jsongz" else open
    if fmt in ("json", "jsongz"):
        with opener(path, "rt") as f:
            candles = json.load(f)
        rows = [[*candle, None] for candle in candles]
        loaded = freqtrade_load(path, fmt)
        return {"columns": OHLCV, "types": [], "rows": rows, "disputed": None, "lz4": None, "freqtrade_rows": loaded}
    with open(path, newline="") as f:
        reader = csv.reader(f)
        header = next(reader)
        rows = []
        for date, *values, source in reader:
            rows.append([milliseconds(date), *map(float, values), source])
    return {"columns": header, "types": [], "rows": rows, "disputed": None, "lz4": None, "freqtrade_rows": None}


def main():
    fmt, source = sys.argv[1], sys.argv[2]
    result = columnar(fmt, source) if fmt in ("feather", "parquet") else text(fmt, source)
    json.dump(result, sys.stdout)


if __name__ == "__main__":
    main()
