"""STAND-INS, test-only: what the lab runs in place of components ksha does not deploy yet
(``kube_apiserver``: a TLS /readyz server, not an apiserver), with their throw-away test CA."""
