"""The adapter registry and API keys on SQLite and PostgreSQL: versions reserved once per run and never
twice per name under concurrency, only published versions visible, references resolved per tenant."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import pytest

from lora_tasks.ledger import Ledger
from lora_tasks.ledger.adapters import AdapterNotFound, parse_ref

NOW = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)


def publish(ledger: Ledger, tenant: str, name: str, run_id: str, public: bool = False) -> int:
    version = ledger.reserve_adapter_version(tenant, name, run_id, base_model="tiny", formats=["diffusers"],
                                             created_at=NOW)
    ledger.mark_adapter_published(tenant, name, version, uri=f"file:///a/{tenant}/{name}/v{version}",
                                  figures={"loss_ratio": 0.9}, public=public, published_at=NOW)
    return version


def test_a_retried_publish_keeps_its_version_and_the_next_run_gets_the_next(ledger: Ledger) -> None:
    assert publish(ledger, "acme", "style", "run-1") == 1
    assert ledger.reserve_adapter_version("acme", "style", "run-1", base_model="tiny", formats=[],
                                          created_at=NOW) == 1
    assert publish(ledger, "acme", "style", "run-2") == 2
    assert publish(ledger, "globex", "style", "run-3") == 1  # versions count per tenant and name


def test_concurrent_publishes_of_one_name_get_distinct_versions(ledger: Ledger) -> None:
    versions: list[int] = []
    errors: list[BaseException] = []

    def reserve(run_id: str) -> None:
        try:
            versions.append(ledger.reserve_adapter_version("acme", "style", run_id, base_model="tiny",
                                                           formats=["diffusers"], created_at=NOW))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=reserve, args=(f"run-{i}",)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert sorted(versions) == list(range(1, 9))


def test_readers_see_only_published_versions_and_latest_is_the_newest_published(ledger: Ledger) -> None:
    publish(ledger, "acme", "style", "run-1")
    publish(ledger, "acme", "style", "run-2")
    ledger.reserve_adapter_version("acme", "style", "run-3", base_model="tiny", formats=[], created_at=NOW)
    assert [v.version for v in ledger.adapter_versions("acme", "style")] == [1, 2]
    assert [v.status for v in ledger.adapter_versions("acme", published_only=False)] == \
        ["published", "published", "publishing"]
    assert ledger.resolve_adapter("acme", "style").version == 2
    assert ledger.resolve_adapter("acme", "style@latest").version == 2
    assert ledger.resolve_adapter("acme", "style@1").uri == "file:///a/acme/style/v1"
    with pytest.raises(AdapterNotFound):
        ledger.resolve_adapter("acme", "style@3")  # reserved, not yet published


def test_another_tenants_adapter_resolves_only_when_public_with_the_same_error_as_absent(
        ledger: Ledger) -> None:
    publish(ledger, "globex", "secret", "run-1")
    publish(ledger, "globex", "shared", "run-2", public=True)
    with pytest.raises(AdapterNotFound) as foreign:
        ledger.resolve_adapter("acme", "globex/secret")
    with pytest.raises(AdapterNotFound) as absent:
        ledger.resolve_adapter("acme", "globex/nothing")
    assert str(foreign.value).replace("secret", "X") == str(absent.value).replace("nothing", "X")
    with pytest.raises(AdapterNotFound):
        ledger.resolve_adapter("acme", "secret")  # a bare name is the caller's own
    assert ledger.resolve_adapter("acme", "globex/shared@latest").tenant == "globex"


@pytest.mark.parametrize("ref, parsed", [("style", (None, "style", None)), ("style@3", (None, "style", 3)),
                                          ("style@v3", (None, "style", 3)), ("style@latest", (None, "style", None)),
                                          ("acme/style@2", ("acme", "style", 2))])
def test_references(ref: str, parsed: tuple[str | None, str, int | None]) -> None:
    assert parse_ref(ref) == parsed


@pytest.mark.parametrize("ref", ["", "style@", "style@x", "../style", "a/b/c", "style@-1"])
def test_malformed_references_say_how_to_write_one(ref: str) -> None:
    with pytest.raises(AdapterNotFound, match="name@latest"):
        parse_ref(ref)


def test_api_keys_act_for_one_tenant_until_revoked(ledger: Ledger) -> None:
    key = ledger.create_api_key("acme", "ci")
    other = ledger.create_api_key("globex")
    assert ledger.tenant_for_api_key(key) == "acme" and ledger.tenant_for_api_key(other) == "globex"
    assert ledger.tenant_for_api_key(key + "x") is None
    (info,) = ledger.api_keys("acme")
    assert key.split("_")[1] == info.key_id and key not in repr(info)
    ledger.revoke_api_key(info.key_id)
    assert ledger.tenant_for_api_key(key) is None
