"""corral-runc: runc's command line over runtime.oci, one module per verb.

main.py parses the global flags and imports only the verb's module, so each call pays
for exactly what it uses (a `create` never imports the code of `events`)."""
