"""The tenants' front door: the tenant API (``/lora/v1``) and the keys it is called with. A tenant sees its
own jobs, adapters and bill only. May import: core, stores, ledger."""
