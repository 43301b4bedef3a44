"""Write corral's command launchers into a bin directory.

pip's console_scripts wrappers import `re` and run `site` (about 15 ms before our first
line). The OCI runtime sits on every container start, so its launcher starts Python with
-I -S and puts only the directory that holds our packages on sys.path: the runtime
imports nothing from outside the standard library.
"""

import os
import sys

LAUNCHERS = {
    "corral-runc": "runtime.oci.cli.main",
}

TEMPLATE = """#!{python} -IS
import sys
sys.path.insert(0, {root!r})
from {module} import main
sys.exit(main())
"""


def main() -> None:
    bindir = sys.argv[1]
    import runtime

    root = os.path.dirname(os.path.dirname(os.path.abspath(runtime.__file__)))
    # The venv's base interpreter itself: with -I -S the venv adds nothing to the
    # runtime (it has no third-party imports) but costs ~2 ms of start-up.
    python = os.path.realpath(os.path.join(os.path.abspath(bindir), "python3"))
    for name, module in LAUNCHERS.items():
        path = os.path.join(bindir, name)
        text = TEMPLATE.format(python=python, root=root, module=module)
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            f.write(text)
        os.chmod(tmp, 0o755)
        os.replace(tmp, path)


if __name__ == "__main__":
    main()
