"""Serving: one base pipeline, adapters loaded on demand from the artifact store into a two-tier cache.
May import: core, ledger, stores, train."""
