"""Attaching containers to one network (a conflist): ADD, DEL, CHECK, GC, with a result cache.

    add(att)    plugins in list order; each gets the previous one's result as prevResult
                (portmap only when the pod maps host ports: ``_needed``);
                the last result is cached under cache_dir/results/<net>-<id>-<ifname>
                (on failure the plugins already run are undone with a DEL, then it raises)
    check(att)  plugins in order, prevResult = the cached result (NotAttached without one)
    delete(att) plugins in reverse order, prevResult = the cached result if there is one;
                a netns that no longer pins a namespace is passed as "" (CNI: torn down),
                then bridge's ipMasq rules for the ID are dropped here (masq.py);
                idempotent: without a cache entry (a second DEL, a crash mid-ADD) the
                plugins still run and clean up what exists; the entry goes on success
    gc(valid)   DEL for every cached attachment not in VALID, then GC (spec 1.1.0) with
                ``cni.dev/valid-attachments``

The cache entry holds what DEL needs when the caller has forgotten it: the netns, CNI_ARGS
and capability args (``portMappings``) of the ADD.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from runtime.service.cni import masq
from runtime.service.cni.config import NetworkConfigList, PluginConf, plugin_stdin
from runtime.service.cni.errors import (
    CNIError,
    IncompatibleVersion,
    NotAttached,
    PluginError,
)
from runtime.service.cni.exec import (
    Invocation,
    Runner,
    VersionInfo,
    probe_version,
    run_plugin,
    validate_args,
    validate_container_id,
    validate_ifname,
)
from runtime.service.cni.netns import is_netns
from runtime.service.cni.result import Result, parse_result

CACHE_KIND = "cniCacheV1"


@dataclass(frozen=True)
class Attachment:
    """One container's interface on one network: the key is (network, container_id, ifname)."""

    container_id: str
    netns: str
    ifname: str = "eth0"
    args: tuple[tuple[str, str], ...] = ()
    capability_args: Mapping[str, Any] = field(default_factory=dict)

    def validate(self) -> None:
        validate_container_id(self.container_id)
        validate_ifname(self.ifname)
        validate_args(self.args)


@dataclass(frozen=True)
class CachedAttachment:
    attachment: Attachment
    result: Result | None
    path: str


class Network:
    def __init__(self, conf: NetworkConfigList, *, plugin_dirs: Sequence[str], cache_dir: str,
                 runner: Runner = run_plugin, timeout: float = 60.0) -> None:
        self.conf = conf
        self.plugin_dirs = tuple(plugin_dirs)
        self.cache_dir = cache_dir
        self.runner = runner
        self.timeout = timeout

    @property
    def name(self) -> str:
        return self.conf.name

    # -- the verbs ---------------------------------------------------------------------

    def add(self, att: Attachment) -> Result:
        att.validate()
        prev: dict[str, Any] | None = None
        result: Result | None = None
        for plugin in self._needed(att):
            try:
                out = self._run(plugin.type, "ADD", att,
                                plugin_stdin(self.conf, plugin, prev_result=prev,
                                             capability_args=att.capability_args))
                if out is None:
                    raise PluginError(plugin=plugin.type, command="ADD", network=self.name,
                                      container=att.container_id, msg="printed no result")
                result = parse_result(out, where=f"network {self.name}, plugin "
                                      f"{plugin.type}: result")
            except CNIError as e:
                self._undo(att, prev, e)
                raise
            prev = out
        assert prev is not None and result is not None  # a list has at least one plugin
        self._write_cache(att, prev)
        return result

    def check(self, att: Attachment) -> None:
        att.validate()
        if not self.conf.supports("0.4.0"):
            raise PluginError(plugin=self.conf.plugins[0].type, command="CHECK",
                              network=self.name, container=att.container_id, code=1,
                              msg=f"cniVersion {self.conf.cni_version} has no CHECK (0.4.0+)")
        if self.conf.disable_check:
            return
        cached = self.cached(att.container_id, att.ifname)
        if cached is None or cached.result is None:
            raise NotAttached(f"network {self.name}, container {att.container_id}, interface "
                              f"{att.ifname}: no cached ADD result to CHECK against")
        att = self._with_cached(att, cached.attachment)
        for plugin in self.conf.plugins:
            self._run(plugin.type, "CHECK", att,
                      plugin_stdin(self.conf, plugin, prev_result=cached.result.raw,
                                   capability_args=att.capability_args))

    def delete(self, att: Attachment) -> None:
        att.validate()
        cached = self.cached(att.container_id, att.ifname)
        prev = cached.result.raw if cached and cached.result else None
        if cached is not None:
            att = self._with_cached(att, cached.attachment)
        gone = bool(att.netns) and not is_netns(att.netns)
        if gone:
            # the namespace is gone (its file removed, or left behind unmounted): the spec
            # lets DEL run without CNI_NETNS, so IPAM still releases the address
            att = Attachment(container_id=att.container_id, netns="", ifname=att.ifname,
                             args=att.args, capability_args=att.capability_args)
        self._del_all(att, prev, known=cached is not None)
        if gone and self.runner is run_plugin and masq.uses_masquerade(self.conf):
            masq.drop(self.name, att.container_id)  # what bridge needs the netns to undo
        self._remove_cache(att.container_id, att.ifname)

    def gc(self, valid: Iterable[tuple[str, str]]) -> list[Attachment]:
        """Detach every cached attachment not in VALID ((container_id, ifname) pairs), then
        send GC to the plugins if the list speaks 1.1.0. Returns what was detached."""
        keep = set(valid)
        removed = []
        for entry in self.attachments():
            a = entry.attachment
            if (a.container_id, a.ifname) not in keep:
                self.delete(a)
                removed.append(a)
        if self.conf.supports("1.1.0") and not self.conf.disable_gc:
            attachments = [{"containerID": c, "ifname": i} for c, i in sorted(keep)]
            for plugin in self.conf.plugins:
                conf = plugin_stdin(self.conf, plugin)
                conf["cni.dev/valid-attachments"] = attachments
                conf["cni.dev/attachments"] = attachments  # the draft's key, as libcni sends
                self.runner(plugin.type, inv=Invocation(command="GC", path=self.plugin_dirs),
                            stdin=conf, network=self.name, timeout=self.timeout)
        return removed

    def versions(self) -> dict[str, VersionInfo]:
        """VERSION of every plugin; IncompatibleVersion if one lacks the list's cniVersion."""
        found = {}
        for plugin in self.conf.plugins:
            info = probe_version(plugin.type, path=self.plugin_dirs,
                                 cni_version=self.conf.cni_version, runner=self.runner)
            if self.conf.cni_version not in info.supported_versions:
                raise IncompatibleVersion(
                    plugin=plugin.type, command="VERSION", network=self.name, code=1,
                    msg=f"speaks {', '.join(info.supported_versions)}, not the list's "
                        f"cniVersion {self.conf.cni_version}")
            found[plugin.type] = info
        return found

    # -- the cache ---------------------------------------------------------------------

    def _cache_path(self, container_id: str, ifname: str) -> str:
        return os.path.join(self.cache_dir, "results", f"{self.name}-{container_id}-{ifname}")

    def cached(self, container_id: str, ifname: str = "eth0") -> CachedAttachment | None:
        path = self._cache_path(container_id, ifname)
        try:
            with open(path, "rb") as f:
                obj = json.load(f)
        except FileNotFoundError:
            return None
        except ValueError as e:
            raise CNIError(f"{path}: cached result is not valid JSON: {e}") from None
        return self._entry(obj, path)

    def attachments(self) -> list[CachedAttachment]:
        """The cached attachments of this network (what GC compares with the valid set)."""
        results = os.path.join(self.cache_dir, "results")
        try:
            names = sorted(os.listdir(results))
        except FileNotFoundError:
            return []
        out = []
        for n in names:
            if not n.startswith(self.name + "-") or n.startswith("."):
                continue
            try:
                with open(os.path.join(results, n), "rb") as f:
                    obj = json.load(f)
            except (OSError, ValueError):
                continue
            if obj.get("networkName") == self.name:
                out.append(self._entry(obj, os.path.join(results, n)))
        return out

    def _entry(self, obj: dict[str, Any], path: str) -> CachedAttachment:
        if obj.get("kind") != CACHE_KIND:
            raise CNIError(f"{path}: kind: expected {CACHE_KIND}, got {obj.get('kind')!r}")
        att = Attachment(container_id=str(obj.get("containerId", "")),
                         netns=str(obj.get("netns", "")), ifname=str(obj.get("ifName", "")),
                         args=tuple((str(k), str(v)) for k, v in obj.get("cniArgs") or []),
                         capability_args=dict(obj.get("capabilityArgs") or {}))
        raw = obj.get("result")
        result = parse_result(raw, where=f"{path}: result") if raw is not None else None
        return CachedAttachment(attachment=att, result=result, path=path)

    def _write_cache(self, att: Attachment, result: dict[str, Any]) -> None:
        path = self._cache_path(att.container_id, att.ifname)
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        entry = {"kind": CACHE_KIND, "containerId": att.container_id, "ifName": att.ifname,
                 "networkName": self.name, "netns": att.netns,
                 "cniArgs": [list(a) for a in att.args],
                 "capabilityArgs": dict(att.capability_args),
                 "config": self.conf.to_json(), "result": result}
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".tmp-")
        try:
            with os.fdopen(fd, "w") as f:
                f.write(json.dumps(entry))
            os.replace(tmp, path)
        except BaseException:
            os.unlink(tmp)
            raise

    def _remove_cache(self, container_id: str, ifname: str) -> None:
        try:
            os.unlink(self._cache_path(container_id, ifname))
        except FileNotFoundError:
            pass

    # -- helpers -----------------------------------------------------------------------

    def _run(self, plugin: str, command: str, att: Attachment,
             stdin: dict[str, Any]) -> dict[str, Any] | None:
        inv = Invocation(command=command, container_id=att.container_id, netns=att.netns,
                         ifname=att.ifname, args=att.args, path=self.plugin_dirs)
        return self.runner(plugin, inv=inv, stdin=stdin, network=self.name,
                           timeout=self.timeout)

    def _del_all(self, att: Attachment, prev: Mapping[str, Any] | None, *,
                 known: bool = True) -> None:
        """DEL every plugin in reverse order; every one runs even if an earlier one fails
        (each cleans what it can), then the first failure is raised."""
        first: CNIError | None = None
        for plugin in reversed(self._needed(att, known=known)):
            try:
                self._run(plugin.type, "DEL", att,
                          plugin_stdin(self.conf, plugin, prev_result=prev,
                                       capability_args=att.capability_args))
            except CNIError as e:
                first = first or e
        if first is not None:
            raise first

    def _undo(self, att: Attachment, prev: Mapping[str, Any] | None, cause: CNIError) -> None:
        try:
            self._del_all(att, prev)
        except CNIError as e:
            cause.add_note(f"and undoing the ADD failed too: {e}")

    def _needed(self, att: Attachment, *, known: bool = True) -> tuple[PluginConf, ...]:
        """The plugins ATT needs: portmap only for a pod that maps host ports (without any,
        its ADD passes the result through and its DEL is a round of iptables calls, as
        containerd skips it); all of them when the ADD's arguments are unknown (no cache)."""
        if not known or att.capability_args.get("portMappings"):
            return self.conf.plugins
        return tuple(p for p in self.conf.plugins if p.type != "portmap")

    @staticmethod
    def _with_cached(att: Attachment, cached: Attachment) -> Attachment:
        return Attachment(container_id=att.container_id, netns=att.netns or cached.netns,
                          ifname=att.ifname, args=att.args or cached.args,
                          capability_args=att.capability_args or cached.capability_args)
