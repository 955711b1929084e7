# -*- coding: utf-8 -*-
# vim: ft=sls
---
{#- ksha.loadbalancer.external: the LB exists (a cloud LB: the operator's in
    external mode, ksha's QingCloud load balancers in qingcloud mode, made by
    the step before); ksha installs nothing on the host, and this checks that
    the host reaches it (ksha:loadbalancer:external:check). The orchestration's
    step right after ksha's QingCloud load balancers are made passes pillar
    ksha_lb_made_by_this_run (ksha.plan): under test=True they are not there yet. #}
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
    - made_by_this_run: {{ salt['pillar.get']('ksha_lb_made_by_this_run', False) }}
