"""Dataset intake before any GPU is spent: scan, filter (antivirus, NSFW, duplicates), caption, check,
and the held-out split. May import: core, spec, stores, data_checks."""
