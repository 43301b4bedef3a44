"""Write corral's command launchers into a bin directory.

pip's console_scripts wrappers import `re` and run `site` (about 15 ms before our first
line). The OCI runtime sits on every container start, so its launcher starts Python with
-I -S and puts only the directory that holds our packages on sys.path: the runtime
imports nothing from outside the standard library.

It also compiles the shim's holder (runtime/service/shim/holder*.c, runcall.c) into
corral-shim-holder with the system C compiler (Debian: gcc, libc6-dev). Without a
compiler it says so and goes on: shims then keep serving in Python.
"""

import os
import shutil
import subprocess
import sys

LAUNCHERS = {
    "corral-runc": "runtime.oci.cli.main",
}
# Commands that import third-party packages (grpc, yaml): the venv's interpreter with its
# site-packages, still -I (no user site, no PYTHONPATH) and no console_scripts wrapper.
SITE_LAUNCHERS = {
    "corral-controlplane": "controlplane.main",
    "clusterctl": "clusterctl.main",
    "corral-runtimed": "runtime.service.daemon",
    "corral-agent": "agent.main",
    "corral-node": "nodehost.main",
}
# The venv's interpreter with -I -S: site-packages only when the command asks for them
# (corral-ctr's `run` imports nothing third-party; its gRPC verbs call site.main()).
LAZY_SITE_LAUNCHERS = {
    "corral-ctr": "runtime.service.ctr.main",
}

# gc.disable(): a short-lived command makes no cycles worth collecting, and collections
# during the imports cost time. os._exit(): interpreter teardown (module and object
# finalisation) is ~10 ms we do not need; stdout/stderr are flushed first. Together they
# take about a fifth off a `corral-runc run`.
TEMPLATE = """#!{python} -I{flags}
{gc}import sys
sys.path.insert(0, {root!r})
from {module} import main
rc = main()
sys.stdout.flush()
sys.stderr.flush()
import os
os._exit(rc)
"""


# Static: the holder maps no shared libraries, so each one's few dirty pages are nearly
# all it costs (a dynamic libc adds its relocations and data per process).
CFLAGS = ["-std=c11", "-O2", "-Wall", "-Wextra", "-static"]
HOLDER = "corral-shim-holder"
# the loop (holder.c, holder.h), its log writer, runtime calls and execs, protocol, and
# its client of the fork server's runtime socket (runcall.h)
HOLDER_SOURCES = ("holder.c", "holder_log.c", "holder_exec.c", "holder_req.c", "runcall.c")


def build_holder(bindir: str, root: str) -> str | None:
    """Compile holder*.c into BINDIR; the binary's path, or None without a compiler."""
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if not cc:
        print(f"make_launchers: no C compiler (cc): {HOLDER} not built; shims stay in Python",
              file=sys.stderr)
        return None
    srcs = [os.path.join(root, "runtime", "service", "shim", name) for name in HOLDER_SOURCES]
    path = os.path.join(bindir, HOLDER)
    tmp = path + ".tmp"
    built = subprocess.run([cc, *CFLAGS, "-o", tmp, *srcs], check=False)
    if built.returncode != 0:  # no static libc (libc.a): link it dynamically
        print(f"make_launchers: {HOLDER}: static link failed, linking dynamically",
              file=sys.stderr)
        subprocess.run([cc, *CFLAGS[:-1], "-o", tmp, *srcs], check=True)
    os.replace(tmp, path)
    return path


def main() -> None:
    bindir = sys.argv[1]
    import runtime

    root = os.path.dirname(os.path.dirname(os.path.abspath(runtime.__file__)))
    # The venv's base interpreter itself: with -I -S the venv adds nothing to the
    # runtime (it has no third-party imports) but costs ~2 ms of start-up.
    python = os.path.realpath(os.path.join(os.path.abspath(bindir), "python3"))
    venv_python = os.path.join(os.path.abspath(bindir), "python3")
    entries = [(n, m, python, "S", True) for n, m in LAUNCHERS.items()]
    entries += [(n, m, venv_python, "", False) for n, m in SITE_LAUNCHERS.items()]
    entries += [(n, m, venv_python, "S", False) for n, m in LAZY_SITE_LAUNCHERS.items()]
    for name, module, interpreter, flags, no_gc in entries:
        path = os.path.join(bindir, name)
        # daemons and watches live long: only the short-lived runtime turns the GC off
        gc = "import gc\ngc.disable()\n" if no_gc else ""
        text = TEMPLATE.format(python=interpreter, root=root, module=module, flags=flags,
                               gc=gc)
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            f.write(text)
        os.chmod(tmp, 0o755)
        os.replace(tmp, path)
    build_holder(bindir, root)


if __name__ == "__main__":
    main()
