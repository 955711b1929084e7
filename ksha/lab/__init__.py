"""The ksha lab: systemd-nspawn hosts with real systemd and Salt (ksha lab --help)."""
