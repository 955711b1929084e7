# -*- coding: utf-8 -*-
# vim: ft=sls
---
{#- ksha.loadbalancer.external: the LB exists already (a cloud LB); ksha
    installs nothing, ksha.common pointed the LB domain at its address, and
    this checks that the host reaches it (ksha:loadbalancer:external:check). #}
{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ "/map.jinja" import ksha with context %}
{%- set lb = ksha.loadbalancer %}

ksha-loadbalancer-external-address-reachable:
  ksha_lb.reachable:
    - name: {{ lb.address }}
    - port: {{ lb.port }}
    - domain: {{ lb.domain }}
    - expect: {{ lb.external.check }}
    - timeout: {{ lb.external.timeout }}
