"""Do two demo lakes hold the same products? The check behind a refactoring.

A change that should alter no output (a redesign, a rename, a split function) is run as
the demo twice, once before and once after, each into its own folder. This script
fingerprints a lake and compares two fingerprints:

- the demo's per-site x night summary table (:func:`telescope_assets.headless.summary`),
- every Parquet table by content (schema and values, not the file's bytes, which carry
  the writer's metadata), and again by its values alone (columns by name, all-null
  columns left out), so that a change of layout only — typed columns, their order — is
  told apart from a change of what a table says;
- every JSON file by its parsed content, every Avro packet by its records (a container's
  sync marker is random), every other product by its bytes.

What records when or by which run something was made (the ingest ledger, the masters
manifests' ``made_now``, MLflow run ids, the ``seconds`` a step took, when a file was
received) differs between any two runs: left out of the fingerprint, or listed apart as
"run-dependent", it does not fail the comparison.

Usage::

    python bench/same_outputs.py fingerprint data/lake > before.json
    # ... change the code, run the demo again into another folder ...
    python bench/same_outputs.py fingerprint other/data/lake > after.json
    python bench/same_outputs.py compare before.json after.json

Not a test: it needs two demos (about 12 minutes each on two cores).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

from tqdm import tqdm

#: Folders whose files say when or by which run something happened.
RUN_DEPENDENT = ("ingest/",)
#: JSON keys and table columns that name a run or a time, removed before hashing.
RUN_KEYS = {"made_now", "run_id", "received_at", "written_at", "batch_id", "mlflow_run_id"}
#: Columns that time a step (``seconds``) or say when a file arrived.
RUN_COLUMNS = {"seconds", "received_at"}


def _strip(obj):
    if isinstance(obj, dict):
        return {k: _strip(v) for k, v in sorted(obj.items()) if k not in RUN_KEYS}
    if isinstance(obj, list):
        return [_strip(v) for v in obj]
    return obj


def _table_digest(path: Path) -> str:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pq.read_table(path).replace_schema_metadata(None)
    table = table.drop_columns([c for c in table.column_names if c in RUN_COLUMNS])
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return hashlib.sha256(sink.getvalue().to_pybytes()).hexdigest()


def _values_digest(path: Path) -> str:
    """The information in a table, whatever its layout: columns by name, all-null columns
    left out, numbers as floats, the rest as text."""
    import pandas as pd

    df = pd.read_parquet(path)
    df = df.drop(columns=[c for c in df.columns if c in RUN_COLUMNS or df[c].isna().all()])
    df = df[sorted(df.columns)]
    for column in df.columns:
        if pd.api.types.is_bool_dtype(df[column]) or pd.api.types.is_numeric_dtype(df[column]):
            df[column] = df[column].astype(float)
        else:
            df[column] = (
                df[column]
                .astype(object)
                .where(df[column].notna(), None)
                .map(lambda v: None if v is None else str(v))
            )
    text = df.to_json(orient="split", double_precision=15, index=False)
    return hashlib.sha256(text.encode()).hexdigest()


def digest(path: Path) -> str:
    """Content fingerprint of one product."""
    if path.suffix == ".parquet":
        return _table_digest(path)
    if path.suffix == ".avro":
        # An Avro container's sync marker is random: compare the records.
        import fastavro

        with path.open("rb") as f:
            records = list(fastavro.reader(f))
        text = json.dumps(records, sort_keys=True, default=lambda b: b.hex())
        return hashlib.sha256(text.encode()).hexdigest()
    if path.suffix == ".json":
        text = json.dumps(_strip(json.loads(path.read_text())), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()
    return hashlib.sha256(path.read_bytes()).hexdigest()


def fingerprint(root: Path) -> dict:
    """The summary table and a digest of every product under a lake folder."""
    from telescope_assets.lake import Lake

    lake = Lake(str(root))
    sites = lake.list_dirs("raw")
    every = [(site, night) for site in sites for night in lake.list_dirs(f"raw/{site}")]
    from telescope_assets.headless import summary

    table = summary(lake, every)
    files = sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith("."))
    products, values = {}, {}
    for path in tqdm(files, desc="fingerprinting", unit="file", file=sys.stderr):
        rel = path.relative_to(root).as_posix()
        products[rel] = digest(path)
        if path.suffix == ".parquet":
            values[rel] = _values_digest(path)
    return {"summary": table.to_csv(index=False), "products": products, "values": values}


def compare(before: dict, after: dict) -> int:
    """Print the differences; non-zero when a product or the summary changed."""
    failed = 0
    if before["summary"] != after["summary"]:
        print("summary table DIFFERS\n--- before\n" + before["summary"])
        print("--- after\n" + after["summary"])
        failed = 1
    else:
        print("summary table: identical")
    b, a = before["products"], after["products"]
    changed = sorted(k for k in b.keys() & a.keys() if b[k] != a[k])
    only_before = sorted(b.keys() - a.keys())
    only_after = sorted(a.keys() - b.keys())
    run_dependent = [k for k in changed + only_before + only_after if k.startswith(RUN_DEPENDENT)]
    # A table whose layout changed (typed columns, their order) but not its information.
    bv, av = before.get("values", {}), after.get("values", {})
    layout = [k for k in changed if k in bv and k in av and bv[k] == av[k]]
    real = [k for k in changed if k not in run_dependent and k not in layout]
    lost = [k for k in only_before if k not in run_dependent]
    new = [k for k in only_after if k not in run_dependent]
    same = len(b.keys() & a.keys()) - len(changed)
    catalogs = [k for k in b if k.startswith("catalogs/")]
    print(f"products: {same} identical of {len(b)} before, {len(a)} after")
    print(f"catalogs: {sum(b[k] == a.get(k) for k in catalogs)} of {len(catalogs)} identical")
    for label, keys in (("changed", real), ("only before", lost), ("only after", new)):
        for key in keys:
            print(f"  {label}: {key}")
    if layout:
        print(f"layout only (same values, other columns or types): {len(layout)} tables")
    if run_dependent:
        print(f"run-dependent, not compared: {len(run_dependent)} files under {RUN_DEPENDENT}")
    return failed or int(bool(real or lost or new))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    fp = sub.add_parser("fingerprint", help="print a lake's fingerprint as JSON")
    fp.add_argument("lake", type=Path)
    cmp = sub.add_parser("compare", help="compare two fingerprints")
    cmp.add_argument("before", type=Path)
    cmp.add_argument("after", type=Path)
    args = parser.parse_args(argv)
    if args.command == "fingerprint":
        json.dump(fingerprint(args.lake), sys.stdout, indent=1)
        return 0
    return compare(json.loads(args.before.read_text()), json.loads(args.after.read_text()))


if __name__ == "__main__":
    raise SystemExit(main())
