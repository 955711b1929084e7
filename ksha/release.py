"""The Kubernetes release ksha installs: upstream's URL of the server tarball and the refusal when
its checksum is not set (read by the model, the plan through the model, and the validator)."""

from __future__ import annotations


def upstream_url(version: str) -> str:
    return f"https://dl.k8s.io/{version}/kubernetes-server-linux-amd64.tar.gz"


def checksum_fix(version: str) -> str:
    """What to do about a missing ksha:kubernetes:archive:sha256: where upstream publishes the
    checksum (a mirror serves the same tarball, so the same checksum). The archive's URL is not
    shown: a mirror's may carry credentials."""
    return (
        f"ksha installs no Kubernetes release it cannot check; set it to the sha256 of "
        f"kubernetes-server-linux-amd64.tar.gz {version}, which upstream publishes at {upstream_url(version)}.sha256"
    )


def checksum_missing(version: str) -> str:
    """The plan's refusal (and the install state's failure) without the checksum."""
    return f"ksha:kubernetes:archive:sha256 is not set: {checksum_fix(version)}"
