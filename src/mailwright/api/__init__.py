"""HTTP APIs: one router module per dialect, all calling the same services."""
