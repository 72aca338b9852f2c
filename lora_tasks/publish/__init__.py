"""Publishing a trained adapter: its weights in each requested format, a Hugging Face model card, the
evaluation report and samples, the job spec, and ``manifest.json`` last, as an immutable version of the
artifact store that the registry lists once complete. May import: core, spec, stores, ledger, train."""
