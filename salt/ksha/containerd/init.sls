# -*- coding: utf-8 -*-
# vim: ft=sls
---
# ksha.containerd: the container runtime on every node (ksha:nodes): containerd
# with ksha's config.toml, runc and the CNI plugin binaries.
include:
  - .install
  - .config
  - .service
