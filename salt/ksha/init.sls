# -*- coding: utf-8 -*-
# vim: ft=sls
---
# Everything a host of the cluster gets whatever its role; top.sls adds the
# role-specific components.
include:
  - .common
