"""One module per verb: `add_arguments(parser, verb)` and `run(args) -> exit code`."""
