"""Object storage behind one URI interface (local files, S3) and the dataset sources."""
