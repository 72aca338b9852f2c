"""Great Expectations suites over intake manifests, as code, and the one function that runs them: the
gate between intake and a GPU. May import: nothing of ours (great_expectations, lazily).

``run_checks`` validates the kept samples (and the filter's rejections) against the job's
``dataset.checks`` thresholds and returns a short report naming each failed expectation with what was
observed. Great Expectations loads in seconds, so it is imported only when checks run.
"""

from data_checks.dataset_suite import CheckReport, run_checks

__all__ = ["CheckReport", "run_checks"]
