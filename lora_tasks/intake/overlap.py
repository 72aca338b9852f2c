"""Stages write only into their own folder; these checks make sure that folder is never inside the
user's dataset (nor the dataset inside a folder a stage replaces), so intake cannot touch source data."""

from __future__ import annotations

import os
import posixpath
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import unquote

from lora_tasks.errors import DatasetError


def refuse_overlap(dataset: Path, stage: Path, rewritten: Iterable[str] = ()) -> None:
    """Stages write into their own folder and replace some of its subfolders on every run, so
    that folder must not lie inside the user's dataset, and no replaced subfolder may hold it."""
    dataset, stage = dataset.resolve(), stage.resolve()
    if stage.is_relative_to(dataset):
        raise DatasetError(f"the stage folder {stage} is inside the dataset {dataset}; stages never write into a "
                           "user's data. Fix: choose an output folder outside the dataset")
    for name in rewritten:
        if dataset.is_relative_to(stage / name):
            raise DatasetError(f"the dataset {dataset} is inside {stage / name}, which this stage replaces on "
                               "every run. Fix: move the dataset or choose another output folder")


def refuse_writing_among(sources: Iterable[str], stage: Path, rewritten: Iterable[str] = ()) -> None:
    """``refuse_overlap`` for a stage that reads a manifest: the folder common to the local files
    its rows came from (their ``file://`` sources; an archive member's is its archive's) stands
    for the dataset."""
    folders = [posixpath.dirname(unquote(uri.split("#", 1)[0].removeprefix("file://"))) for uri in sources
               if uri.startswith("file://")]  # string work: a manifest has thousands of rows
    if folders:
        refuse_overlap(Path(os.path.commonpath(folders)), stage, rewritten)
