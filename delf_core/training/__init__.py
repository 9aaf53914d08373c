"""The `train` step: losses, schedule, the distributed custom loop, checkpoints, summaries."""
