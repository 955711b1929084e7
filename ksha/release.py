"""The Kubernetes release ksha installs: upstream's URLs of the server and node tarballs and the
refusal when a checksum is not set (read by the model, the plan through the model, and the validator)."""

from __future__ import annotations

# what each tarball is called upstream, and the pillar key of its checksum
TARBALLS = {
    "server": ("kubernetes-server-linux-amd64.tar.gz", "ksha:kubernetes:archive:sha256"),
    "node": ("kubernetes-node-linux-amd64.tar.gz", "ksha:kubernetes:node_archive:sha256"),
}


def upstream_url(version: str, kind: str = "server") -> str:
    return f"https://dl.k8s.io/{version}/{TARBALLS[kind][0]}"


def checksum_fix(version: str, kind: str = "server") -> str:
    """What to do about a missing checksum: where upstream publishes it (a mirror serves the same
    tarball, so the same checksum). The archive's URL is not shown: a mirror's may carry
    credentials."""
    return (
        f"ksha installs no Kubernetes release it cannot check; set it to the sha256 of "
        f"{TARBALLS[kind][0]} {version}, which upstream publishes at {upstream_url(version, kind)}.sha256"
    )


def checksum_missing(version: str, kind: str = "server") -> str:
    """The plan's refusal (and the install state's failure) without the checksum."""
    return f"{TARBALLS[kind][1]} is not set: {checksum_fix(version, kind)}"
