"""I/O adapters: DynamoDB table and store, model registry (local/S3), decision log, ingest orchestration."""
