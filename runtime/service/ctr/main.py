"""corral-ctr's entry point: global flags, the verb table, errors to exit codes."""

from __future__ import annotations

import sys

from runtime.service.ctr.conn import DEFAULT_SOCKET, UsageError

VERBS = {
    "pull": "pull_cmd", "images": "images_cmd", "rmi": "rmi_cmd", "import": "import_cmd",
    "run": "run_cmd", "ps": "ps_cmd", "logs": "logs_cmd", "exec": "exec_cmd",
    "stop": "stop_cmd", "rm": "rm_cmd", "info": "info_cmd",
}
USAGE = ("usage: corral-ctr [--socket PATH] [-n NAMESPACE] "
         f"{{{','.join(VERBS)}}} [ARGS...]")
# gRPC status -> exit code (the one place): 1 failure, 2 usage, 3 not found, 4 exists
EXIT_CODES = {"NOT_FOUND": 3, "ALREADY_EXISTS": 4, "INVALID_ARGUMENT": 2}


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    socket_path: str | None = None
    namespace = "default"
    while args and args[0].startswith("-"):
        flag = args.pop(0)
        if flag in ("-h", "--help"):
            print(USAGE)
            return 0
        if flag in ("--socket", "-n", "--namespace") and args:
            value = args.pop(0)
        elif "=" in flag:
            flag, value = flag.split("=", 1)
        else:
            print(f"corral-ctr: {flag}: unknown flag\n{USAGE}", file=sys.stderr)
            return 2
        if flag == "--socket":
            socket_path = value
        elif flag in ("-n", "--namespace"):
            namespace = value
        else:
            print(f"corral-ctr: {flag}: unknown flag\n{USAGE}", file=sys.stderr)
            return 2
    if not args or args[0] not in VERBS:
        print(f"corral-ctr: {args[0] + ': unknown verb' if args else 'no verb'}\n{USAGE}",
              file=sys.stderr)
        return 2
    verb = args.pop(0)
    if verb == "run":
        fast_rc = _run_fast(socket_path, namespace, args)
        if fast_rc is not None:
            return fast_rc
    _enable_site()
    import importlib

    import grpc  # type: ignore[import-untyped]

    from runtime.service.ctr.conn import Conn

    module = importlib.import_module(f"runtime.service.ctr.{VERBS[verb]}")
    conn = Conn(socket_path, namespace)
    try:
        rc: int = module.run(conn, args)
        return rc
    except grpc.RpcError as e:
        code = e.code().name if e.code() else "UNKNOWN"
        print(f"corral-ctr {verb}: {code}: {e.details()}", file=sys.stderr)
        return EXIT_CODES.get(code, 1)
    except UsageError as e:
        print(f"corral-ctr {verb}: {e}", file=sys.stderr)
        return 2
    finally:
        conn.close()


def _enable_site() -> None:
    """The launcher starts Python with -S (no site-packages: `run` needs none and starts
    ~20 ms sooner); the gRPC verbs turn site-packages on here."""
    if sys.flags.no_site:
        import site

        site.main()


def _run_fast(socket_path: str | None, namespace: str, args: list[str]) -> int | None:
    """`run` over the daemon's private socket; None when it serves none (use CRI)."""
    import os

    from runtime.service.ctr import fast, run_cmd

    try:
        a = run_cmd.parse(args)
    except UsageError as e:
        print(f"corral-ctr run: {e}", file=sys.stderr)
        return 2
    if a.interactive or a.tty:
        return None  # stdin and terminals go over CRI Attach (ctr/attach_io.py)
    path = socket_path or os.environ.get("CORRAL_RUNTIME_SOCKET") or DEFAULT_SOCKET
    try:
        client = fast.Client(path)
    except (FileNotFoundError, ConnectionRefusedError):
        return None
    try:
        return run_cmd.run_fast(client, namespace, a)
    except fast.CallError as e:
        print(f"corral-ctr run: {e.code}: {e}", file=sys.stderr)
        return EXIT_CODES.get(e.code, 1)
    finally:
        client.close()


if __name__ == "__main__":
    sys.exit(main())
