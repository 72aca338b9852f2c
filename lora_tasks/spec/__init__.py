"""The job spec: its schema, YAML loading with limits, the key/value/fix messages, the DAG-conf mapping,
and the checks that need the base model on disk. May import: core."""
