"""The tenants' front door: the tenant API (``/lora/v1``) and the keys it is called with. A tenant sees its
own jobs, adapters and bill only; its jobs are triggered in Airflow as the platform's service identity.
May import: core, spec, stores, ledger, pipeline, train, intake."""
