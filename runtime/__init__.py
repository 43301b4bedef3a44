"""corral's node runtime: `oci` (the low-level, runc-compatible runtime) and, later,
`service` (the containerd-like daemon). Nothing here imports anything above it."""
