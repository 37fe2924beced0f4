"""The head process: the cluster tables (GCS) and their SQLite snapshot."""
