# -*- coding: utf-8 -*-
# vim: ft=sls
---
ksha-loadbalancer-packages-installed:
  pkg.installed:
    - pkgs:
      - haproxy
      - keepalived
      - socat
