"""The API server's fast paths give the same answers as the slow ones: orjson with the
standard library's results, an update that skips the read, the certificate cache."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

from api import errors as e
from api import jsoncodec
from controlplane.apiserver import authn, pki
from controlplane.apiserver.objects import ObjectService
from controlplane.apiserver.resources import RESOURCES
from controlplane.storage import InMemoryStore

CMS, NS = RESOURCES["configmaps"], RESOURCES["namespaces"]


@pytest.mark.parametrize("text", [
    pytest.param(b'{"a":1,"b":[true,null,"x"]}', id="plain"),
    pytest.param(b'{"n":123456789012345678901234567890}', id="int-over-64-bits"),
    pytest.param(b'{"n":-9223372036854775809}', id="int-under-int64"),
    pytest.param('{"s":"é ☃ \\u00e9"}'.encode(), id="unicode"),
    pytest.param(b'{"a":1,"a":2}', id="duplicate-key-last-wins"),
    pytest.param(b'{"f":1e16,"g":0.1}', id="floats"),
    pytest.param(b"NaN", id="nan-as-stdlib"),
])
def test_loads_answers_as_the_standard_library(text: bytes) -> None:
    got, want = jsoncodec.loads(text), json.loads(text)
    if isinstance(want, float) and math.isnan(want):
        assert math.isnan(got)
    else:
        assert got == want
        assert type(got) is type(want)


@pytest.mark.parametrize("text", [
    pytest.param(b"{bad", id="syntax"),
    pytest.param(b"\xff\xfe", id="not-utf8"),
    pytest.param(b"", id="empty"),
])
def test_loads_fails_as_the_standard_library(text: bytes) -> None:
    with pytest.raises(ValueError) as want:
        json.loads(text)
    with pytest.raises(ValueError) as got:
        jsoncodec.loads(text)
    assert type(got.value) is type(want.value)


def test_loads_of_deep_nesting_raises_recursion_error_like_json() -> None:
    text = b"[" * 100_000 + b"]" * 100_000
    with pytest.raises(RecursionError):
        jsoncodec.loads(text)


@pytest.mark.parametrize("obj", [
    pytest.param({"a": 1, "b": "é", "c": [1.5, None, True]}, id="plain"),
    pytest.param({"big": 2 ** 70}, id="int-over-64-bits"),
    pytest.param({1: "x"}, id="non-string-key"),
])
def test_dumps_is_compact_json_the_standard_library_reads_back(obj: Any) -> None:
    out = jsoncodec.dumps(obj)
    assert json.loads(out) == json.loads(json.dumps(obj))
    assert b", " not in out and b": " not in out


class CountingStore(InMemoryStore):
    def __init__(self) -> None:
        super().__init__()
        self.gets = 0

    async def get(self, key: str) -> tuple[bytes, int]:
        self.gets += 1
        return await super().get(key)


def cm(name: str, value: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name},
            "data": {"v": value}}


async def _service() -> tuple[ObjectService, CountingStore]:
    store = CountingStore()
    svc = ObjectService(store)
    await svc.create(NS, {"apiVersion": "v1", "kind": "Namespace",
                          "metadata": {"name": "default"}})
    await svc.create(CMS, cm("warm", "0"), namespace="default")  # the namespace check
    return svc, store


@pytest.mark.asyncio
async def test_update_at_the_version_this_process_wrote_skips_the_read() -> None:
    svc, store = await _service()
    made = await svc.create(CMS, cm("a", "1"), namespace="default")
    before = store.gets
    made["data"]["v"] = "2"
    second = await svc.update(CMS, made, namespace="default")
    second["data"]["v"] = "3"
    third = await svc.update(CMS, second, namespace="default")
    assert store.gets == before  # neither update read etcd
    got = await svc.get(CMS, namespace="default", name="a")
    assert got == third
    assert got["metadata"]["uid"] == made["metadata"]["uid"]


@pytest.mark.asyncio
async def test_update_at_a_stale_version_still_conflicts_naming_the_current_one() -> None:
    svc, _ = await _service()
    made = await svc.create(CMS, cm("a", "1"), namespace="default")
    other = ObjectService(svc.store)  # another API server process: not in our cache
    moved = await other.update(CMS, {**made, "data": {"v": "theirs"}}, namespace="default")
    with pytest.raises(e.APIError) as info:
        await svc.update(CMS, {**made, "data": {"v": "mine"}}, namespace="default")
    assert info.value.reason is e.Reason.CONFLICT
    assert moved["metadata"]["resourceVersion"] in info.value.message
    got = await svc.get(CMS, namespace="default", name="a")
    assert got["data"] == {"v": "theirs"}


@pytest.mark.asyncio
async def test_update_after_delete_and_recreate_elsewhere_is_not_served_stale() -> None:
    svc, _ = await _service()
    made = await svc.create(CMS, cm("a", "1"), namespace="default")
    other = ObjectService(svc.store)
    await other.delete(CMS, namespace="default", name="a")
    await other.create(CMS, cm("a", "new"), namespace="default")
    with pytest.raises(e.APIError) as info:
        await svc.update(CMS, {**made, "data": {"v": "mine"}}, namespace="default")
    assert info.value.reason is e.Reason.CONFLICT
    assert (await svc.get(CMS, namespace="default", name="a"))["data"] == {"v": "new"}


def test_certificate_identity_is_parsed_once_per_certificate() -> None:
    ca = pki.create_ca()
    pair = pki.issue(ca, common_name="alice", organizations=["devs"], client=True)
    authn.user_from_certificate.cache_clear()
    first = authn.user_from_certificate(pair.cert_pem)
    again = authn.user_from_certificate(pair.cert_pem)
    assert first == again == authn.User(name="alice", groups=(
        "devs", authn.AUTHENTICATED_GROUP))
    info = authn.user_from_certificate.cache_info()
    assert (info.hits, info.misses) == (1, 1)


def test_a_bad_certificate_is_refused_every_time() -> None:
    authn.user_from_certificate.cache_clear()
    for _ in range(2):
        with pytest.raises(authn.Unauthenticated):
            authn.user_from_certificate(b"-----BEGIN CERTIFICATE-----\nnope\n")
    assert authn.user_from_certificate.cache_info().currsize == 0


@pytest.mark.parametrize(("argv", "workers"), [
    pytest.param([], None, id="default"),
    pytest.param(["--workers", "3"], 3, id="explicit"),
])
def test_workers_option(argv: list[str], workers: int | None) -> None:
    from controlplane import main
    args = main.parse_args(["--etcd-endpoints", "http://127.0.0.1:2379", "--data-dir",
                            "/nonexistent", *argv])
    assert args.workers == (workers or main.default_workers())
    assert args.workers >= 1 and args.worker_id == 0


def test_workers_below_one_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    from controlplane import main
    with pytest.raises(SystemExit):
        main.parse_args(["--etcd-endpoints", "x", "--data-dir", "d", "--workers", "0"])
    assert "--workers 0: must be >= 1" in capsys.readouterr().err


@pytest.mark.parametrize("err", [
    pytest.param(e.APIError(e.Reason.BAD_REQUEST, "ConfigMap cfg: apiVersion " + "é" * 10000),
                 id="long-non-ascii-message"),
    pytest.param(e.invalid("ConfigMap", "cfg", [(f"data.k{i}", "☃" * 300) for i in range(40)]),
                 id="many-long-causes"),
    pytest.param(e.APIError(e.Reason.BAD_REQUEST, "x" * 100_000, kind="ConfigMap",
                            name="n" * 5000), id="long-details"),
    pytest.param(e.invalid("ConfigMap", "é" * 10000, [("metadata.name", "too long")]),
                 id="long-name-then-field"),
])
def test_the_status_trailer_always_fits_and_still_names_the_object(err: e.APIError) -> None:
    from controlplane.apiserver import service
    data = service.status_bytes(err)
    assert len(data) <= service.MAX_TRAILER
    back = e.APIError.from_status(json.loads(data))
    assert back.reason is err.reason
    assert back.message.startswith(err.message[:16])
    assert back.message.endswith(err.message[-16:])  # the field and problem after an echo


def test_a_short_status_is_sent_whole() -> None:
    from controlplane.apiserver import service
    err = e.conflict("ConfigMap", "cfg", current=7)
    assert json.loads(service.status_bytes(err)) == err.status()
