"""CJIB order ingestion: HTTP and Kafka, one validation path, Postgres with an outbox."""
