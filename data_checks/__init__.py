"""Great Expectations suites over intake manifests: the gate between intake and a GPU.

``run_checks`` validates the captioned manifest (and the filter's rejections) against the
job's ``dataset.checks`` thresholds and returns a short report naming each failed
expectation with what was observed. Great Expectations loads in seconds, so it is
imported only when checks run, never when a DAG file is parsed.
"""

from data_checks.dataset_suite import CheckReport, run_checks

__all__ = ["CheckReport", "run_checks"]
