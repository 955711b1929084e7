# -*- coding: utf-8 -*-
# vim: ft=sls
---
# ksha.etcd: a TLS-only etcd member (ksha:groups:etcd), its certificates from
# the etcd CA, and its periodic snapshots.
include:
  - .install
  - .pki
  - .config
  - .service
  - .backup
