"""STAND-INS, test-only: what the lab runs in place of the Kubernetes release, which cannot be
downloaded here (``release``: upstream's tarball layout with ``kube_component`` per component and
this machine's real kubectl; ``deploy``: starts the installed kube-apiserver stand-in until ksha
runs its own unit), and a throw-away test CA for unit tests (``pki``)."""
