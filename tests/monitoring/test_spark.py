"""Spark reads the payload log as one table, as pandas, pyarrow and DuckDB do: the hive partitions give
`model` and `date`, `mergeSchema` merges the models' own columns. Slow (a JVM starts): the slow suite
installs pyspark (`make test-slow`, the `spark` extra)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

from service.api.app import create_app
from service.monitoring.payload import PREDICTIONS, read_log
from tests.helpers import TABULAR, VISION, adult_rows, image_bytes, make_settings, started_client

pytestmark = pytest.mark.slow


async def test_spark_reads_the_log_as_one_table(
    trained_store: Path, tmp_path: Path, adult_frame: pd.DataFrame
) -> None:
    pyspark_sql = pytest.importorskip("pyspark.sql", reason="pyspark: `make test-slow` installs it")
    if shutil.which("java") is None:
        pytest.skip("Spark needs a Java runtime (17 or newer) on the PATH")
    answered: list[str] = []
    async for c in started_client(create_app(make_settings(trained_store, log_dir=tmp_path, log_flush_s=60))):
        for _ in range(2):
            rows = await c.post(
                f"/api/v1/tabular/{TABULAR}/predict", json={"rows": adult_rows(adult_frame, 3)}
            )
            files = [("files", ("a.png", image_bytes(size=(32, 30)), "image/png"))]
            images = await c.post(f"/api/v1/vision/{VISION}/predict", files=files)
            answered += [p["id"] for p in rows.json()["predictions"] + images.json()["predictions"]]
    expected = read_log(tmp_path)
    spark = (
        pyspark_sql.SparkSession.builder.master("local[1]").config("spark.ui.enabled", "false").getOrCreate()
    )
    try:
        frame = spark.read.option("mergeSchema", "true").parquet(str(tmp_path / PREDICTIONS)).toPandas()
    finally:
        spark.stop()
    assert sorted(frame["id"]) == sorted(answered) == sorted(expected.column("id").to_pylist())
    assert set(frame.columns) == set(expected.column_names)  # every model's columns, and model and date
    assert frame.groupby("model").size().to_dict() == {TABULAR: 6, VISION: 2}
    tabular = frame[frame["model"] == TABULAR]
    assert tabular["width"].isna().all() and tabular["age"].notna().all()
    assert (frame.loc[frame["model"] == VISION, "width"] == 32).all()
