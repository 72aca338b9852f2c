"""The adapter registry's command line: which adapters a tenant has, and what ``name@latest`` is.
The registry itself lives in the ledger. May import: core, ledger."""
