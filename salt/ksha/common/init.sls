# -*- coding: utf-8 -*-
# vim: ft=sls
---
# ksha.common: base packages and name resolution, on every cluster host.
include:
  - .install
  - .config
