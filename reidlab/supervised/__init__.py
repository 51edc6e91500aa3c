"""The supervised trainer and the re-ID losses (cross-entropy with label smoothing, batch-hard triplet)."""
