# -*- coding: utf-8 -*-
# vim: ft=sls
---
# ksha.containerd: the container runtime on every node (ksha:nodes): containerd
# with ksha's config.toml, runc and the CNI plugin binaries; the node's kernel
# modules and sysctls first (overlay for the snapshotter).
include:
  - ksha.node.kernel
  - .install
  - .config
  - .service
