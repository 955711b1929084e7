# -*- coding: utf-8 -*-
# vim: ft=sls
---
include:
  - .config

# reload, not restart: open connections survive a config change.
ksha-loadbalancer-haproxy-running:
  service.running:
    - name: haproxy
    - enable: True
    - reload: True
    - watch:
      - file: ksha-loadbalancer-haproxy-config
    - require:
      - sysctl: ksha-loadbalancer-nonlocal-bind-enabled

ksha-loadbalancer-keepalived-running:
  service.running:
    - name: keepalived
    - enable: True
    - reload: True
    - watch:
      - file: ksha-loadbalancer-keepalived-config
      - file: ksha-loadbalancer-keepalived-check-script
    - require:
      - service: ksha-loadbalancer-haproxy-running
