# -*- coding: utf-8 -*-
# vim: ft=sls
---
# ksha.node: a node's kernel modules and sysctls, its kubelet and kube-proxy (the node tarball of
# ksha:kubernetes:version), their certificates from kubernetes-ca, kubeconfigs
# through the LB domain, configuration files and units. containerd comes first
# (ksha.containerd, the step before).
include:
  - .kernel
  - .install
  - .pki
  - .config
  - .service
