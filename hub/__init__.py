"""Hub validator: ingest, consensus, chain store, state machine, REST API."""
