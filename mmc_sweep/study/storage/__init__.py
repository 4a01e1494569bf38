"""Where a study's files live and how they are written: store, results, compaction, artifacts, lock."""
