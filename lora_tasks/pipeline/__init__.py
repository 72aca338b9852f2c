"""The job's stages as plain functions (what each DAG task calls), its workspace, tenancy, the batch
inbox, pods' needs and the capacity plan. May import: core, spec, stores, intake, train,
scheduling, ledger, publish."""
