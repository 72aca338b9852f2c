"""Fetch a published adapter version from the artifact store and check it before anything keeps it.

The manifest (written last by the publish) gives the weights file's sha256 and size; a file that does
not match, or does not parse as safetensors, raises AdapterIntegrityError, and nothing is cached, so a
later request reads the store again (after the file is restored, it works).

The file's header carries the adapter's LoRA config (rank, alpha, targets) as diffusers writes it; diffusers
reads it only from a path, so it is parsed here and kept beside the tensors: without it an adapter
trained with alpha != rank would be served at the wrong scale.
"""

from __future__ import annotations

import hashlib
import json
import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from lora_tasks.errors import LoraTaskError, StoreError
from lora_tasks.ledger.adapters import AdapterVersion
from lora_tasks.stores import open_store
from lora_tasks.stores.base import Store
from lora_tasks.stores.versions import MANIFEST
from lora_tasks.train.outputs import DIFFUSERS_FILE

if TYPE_CHECKING:
    import torch

StateDict = dict[str, "torch.Tensor"]


@dataclass(frozen=True)
class AdapterWeights:
    """What the tiers cache: the tensors, and diffusers' LoRA config from the file (None: alpha = rank)."""

    tensors: StateDict
    lora_metadata: dict[str, Any] | None = None

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.tensors.values())


class AdapterIntegrityError(LoraTaskError):
    """A published adapter's files do not match its manifest, or cannot be loaded into the base model."""


def adapter_key(version: AdapterVersion) -> str:
    """The cache key: owner, name and version, so two tenants' adapters of one name never share an entry."""
    return f"{version.tenant}/{version.name}@{version.version}"


def load_adapter(version: AdapterVersion, s3_endpoint_url: str | None = None) -> AdapterWeights:
    """The diffusers-format LoRA of ``version``, verified against its manifest."""
    from safetensors.torch import load

    where = f"{adapter_key(version)} ({version.uri})"
    if version.uri is None:
        raise AdapterIntegrityError(f"{where} has no files in the artifact store. Fix: publish it again")
    store = open_store(version.uri, s3_endpoint_url)
    manifest = _manifest(_read(store, MANIFEST), where)
    expected = manifest.get("files", {}).get(DIFFUSERS_FILE)
    if not isinstance(expected, dict):
        raise AdapterIntegrityError(f"{where}: the manifest lists no {DIFFUSERS_FILE}. Fix: publish it with the "
                                    "diffusers format")
    data = _read(store, DIFFUSERS_FILE)
    if len(data) != expected.get("bytes") or hashlib.sha256(data).hexdigest() != expected.get("sha256"):
        raise AdapterIntegrityError(f"{where}: {DIFFUSERS_FILE} does not match its manifest (sha256 or size "
                                    "differs). Fix: restore the file from the publish, or publish a new version")
    try:
        return AdapterWeights(load(data), lora_metadata(data))
    except Exception as exc:  # safetensors raises its own error types for a malformed header
        raise AdapterIntegrityError(f"{where}: {DIFFUSERS_FILE} is not a readable safetensors file ({exc})") from exc


def lora_metadata(data: bytes) -> dict[str, Any] | None:
    """diffusers' LoRA config from a safetensors file's header (8 bytes of length, then JSON), if it has one."""
    from diffusers.loaders.lora_base import LORA_ADAPTER_METADATA_KEY

    (length,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + length]).get("__metadata__") or {}
    raw = header.get(LORA_ADAPTER_METADATA_KEY)
    return json.loads(raw) if raw else None


def _read(store: Store, key: str) -> bytes:
    """A published file that is gone or unreadable is the version's fault as far as a caller can tell."""
    try:
        return store.read(key)
    except StoreError as exc:
        raise AdapterIntegrityError(f"{exc}. Fix: restore the version's files, or publish a new version") from exc


def _manifest(raw: bytes, where: str) -> dict[str, Any]:
    try:
        manifest = json.loads(raw)
    except ValueError as exc:
        raise AdapterIntegrityError(f"{where}: {MANIFEST} is not JSON ({exc})") from exc
    if not isinstance(manifest, dict):
        raise AdapterIntegrityError(f"{where}: {MANIFEST} is not a JSON object")
    return manifest
