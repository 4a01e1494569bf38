"""Where a study's files live (mmc_sweep.study.storage.store): URIs as a user types them."""
from __future__ import annotations

from mmc_sweep.study.storage.results import _damaged
from mmc_sweep.study.storage.store import Store

QUERY = "?endpoint_override=127.0.0.1:9&scheme=http"


def test_a_uri_keeps_its_query_at_the_end_of_every_uri_built_from_it():
    store = Store.open(f"s3://bucket/studies/{QUERY}")  # no request is made: nothing listens on port 9
    assert (store.root, store.uri) == ("bucket/studies", f"s3://bucket/studies{QUERY}")
    assert store.uri_of("study", "results") == f"s3://bucket/studies/study/results{QUERY}"
    assert store.path("study", "results") == "bucket/studies/study/results"  # what Tune and pyarrow are given
    assert store.given_filesystem is store.fs and Store.open("/tmp").given_filesystem is None


def test_a_damaged_file_in_an_object_store_is_named_by_its_uri():
    store = Store.open(f"s3://bucket/studies{QUERY}")
    message = str(_damaged(store, "bucket/studies/s/results/trials/t1.parquet", OSError("magic bytes not found")))
    assert message.startswith(f"s3://bucket/studies/s/results/trials/t1.parquet{QUERY}: not a readable Parquet file")
