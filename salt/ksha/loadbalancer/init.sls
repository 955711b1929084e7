# -*- coding: utf-8 -*-
# vim: ft=sls
---
# ksha.loadbalancer: haproxy + keepalived holding the API VIP (mode keepalived),
# on the LB hosts (ksha:loadbalancer:hosts, default the masters).
include:
  - .install
  - .config
  - .service
