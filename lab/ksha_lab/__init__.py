"""ksha-lab: test equipment, not the product. The systemd-nspawn lab (hosts with real systemd
and Salt; ``ksha-lab --help``) and, in ``ksha_lab.standins``, the Kubernetes release of stand-ins."""
