"""The sequence rules of funnels and paths inside Spark, next to the data.

Spark SQL picks the rows, as on every engine; then ``groupBy(bucket).applyInPandas`` hands
each executor whole customers (a bucket is ``customer_id`` modulo a few times the cluster's
parallelism, so one call folds thousands of customers with the compiled rules rather than
one). Each call sorts its rows by customer and time and runs the very function the
in-process runner runs (``funnel._attempts``); only one row per customer in the funnel
comes back to the driver. Paths work the same way: each call counts its customers' paths
(``paths.count_paths``), and the driver adds up one row per distinct path and bucket.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from cxloop.analytics.funnel_spec import FunnelSpec
from cxloop.analytics.paths import PathsSpec, count_paths

if TYPE_CHECKING:
    import pandas as pd

    from cxloop.analytics.funnel import _Found

# ``grouped`` rows are step attribution's entries per customer and value (``_Found.groups``).
_RESULT = "customer_id long, reached long, times array<long>, value string, grouped boolean"
_KERNEL_COLUMNS = ["customer_id", "at", "steps", "exclusions", "value"]


def funnel_attempts(spec: FunnelSpec, frame: Any, zone: ZoneInfo) -> _Found:
    """Every customer's best attempt, folded in the executors."""
    from pyspark.sql import functions as F

    from cxloop.analytics.funnel import _Found

    session = frame.sparkSession
    buckets = max(8, 4 * session.sparkContext.defaultParallelism)
    rows = frame.withColumn("value", F.col("value").cast("string"))
    seen = rows.agg(F.bit_or("steps").alias("seen")).collect()[0]["seen"] or 0

    def fold(group: pd.DataFrame) -> pd.DataFrame:
        return _fold_bucket(spec, zone, group)

    result: pa.Table = (
        rows.select("customer_id", "at", "steps", "exclusions", "value")
        .groupBy(F.pmod(F.col("customer_id"), F.lit(buckets)))
        .applyInPandas(fold, schema=_RESULT)
        .toArrow()
    )
    grouped = result.column("grouped")
    found = _decoded(result.filter(pc.invert(grouped)), len(spec.steps))
    groups = None
    if spec.breakdown is not None and spec.breakdown.attribution == "step":
        groups = _decoded(result.filter(grouped), len(spec.steps))
    return _Found(found.customers, found.reached, found.times, found.values, int(seen), groups)


def _decoded(result: pa.Table, n_steps: int) -> _Found:
    from cxloop.analytics.funnel import _Found

    flat = pc.list_flatten(result.column("times")).to_numpy(zero_copy_only=False)
    return _Found(
        np.asarray(result.column("customer_id").to_numpy(), dtype=np.int64),
        np.asarray(result.column("reached").to_numpy(), dtype=np.int64),
        np.asarray(flat, dtype=np.int64).reshape(result.num_rows, n_steps),
        result.column("value").to_pylist(),
    )


def _fold_bucket(spec: FunnelSpec, zone: ZoneInfo, group: pd.DataFrame) -> pd.DataFrame:
    """Runs in an executor: one bucket's rows, sorted as the in-process query sorts them."""
    import pandas as pd

    from cxloop.analytics.funnel import _attempts

    ordered = group.sort_values(["customer_id", "at"], kind="stable")
    table = pa.Table.from_pandas(ordered[_KERNEL_COLUMNS], preserve_index=False)
    found = _attempts(spec, table, zone)
    parts = [(found, False)] + ([(found.groups, True)] if found.groups is not None else [])
    return pd.concat(
        [
            pd.DataFrame(
                {
                    "customer_id": part.customers,
                    "reached": part.reached,
                    "times": pd.Series(part.times.tolist(), dtype=object),
                    "value": pd.Series(part.values, dtype=object),
                    "grouped": grouped,
                }
            )
            for part, grouped in parts
        ],
        ignore_index=True,
    )


def spark_paths(
    spec: PathsSpec, frame: Any, start: datetime | None, end: datetime | None
) -> Counter[tuple[str | None, ...]]:
    """Customers per path, counted in the executors."""
    from pyspark.sql import functions as F

    buckets = max(8, 4 * frame.sparkSession.sparkContext.defaultParallelism)

    def count(group: pd.DataFrame) -> pd.DataFrame:
        import pandas as pd

        ordered = group.sort_values(["customer_id", "at", "message_id"], kind="stable")
        table = pa.Table.from_pandas(
            ordered[["customer_id", "at", "name", "anchor"]], preserve_index=False
        )
        found = count_paths(spec, table, start, end)
        return pd.DataFrame(
            {"path": pd.Series([list(p) for p in found], dtype=object),
             "customers": pd.Series(list(found.values()), dtype="int64")}
        )  # fmt: skip

    result: pa.Table = (
        frame.groupBy(F.pmod(F.col("customer_id"), F.lit(buckets)))
        .applyInPandas(count, schema="path array<string>, customers long")
        .toArrow()
    )
    totals: Counter[tuple[str | None, ...]] = Counter()
    for path, n in zip(
        result.column("path").to_pylist(), result.column("customers").to_pylist(), strict=True
    ):
        totals[tuple(path)] += n
    return totals
