"""clusterctl: corral's kubectl-like command line.

    clusterctl VERB ARGS
      main.py        finds VERB, imports only clusterctl/commands/<verb>.py, parses its flags
      session.py     --config/--context/-n → Client (grpc imported here, on first use),
                     namespace, errors in kubectl's shape, exit codes
      resources.py   "deploy", "deployments.apps", "po/web" → a discovered Resource
      manifests.py   -f FILE|DIR|- (recursive, multi-document) → Documents with file/line
      printers.py    tables per kind, AGE, -o yaml|json|name|wide|jsonpath (jsonpath.py)
      commands/      one module per verb: add_arguments(parser) and run(args) -> exit code

Start-up is a hot path: `--help`, `explain` and `version --client` import neither grpc
nor the client; commands import what they need inside `run`.
"""

VERSION = "v0.1.0"  # the corral release (pyproject's version)
