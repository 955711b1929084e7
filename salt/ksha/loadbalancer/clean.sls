# -*- coding: utf-8 -*-
# vim: ft=sls
---
{#- ksha.loadbalancer.clean: on a host that is not (or no longer) an LB host,
    stop the haproxy and keepalived that ksha set up and remove ksha's files,
    so a pillar change that moves the LB leaves nothing holding the VIP behind.
    Only what carries ksha's marker is touched: an haproxy or keepalived the
    host runs for something else is left alone, and so are the packages. #}
{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ "/map.jinja" import model with context %}
{%- set lb = model.loadbalancer %}
{%- set ksha_config = "grep -qs '" ~ lb.marker ~ "' " ~ lb.keepalived_conf ~ " " ~ lb.haproxy_cfg %}

# keepalived first: the VIP leaves before the haproxy behind it does.
ksha-loadbalancer-clean-keepalived-stopped:
  service.dead:
    - name: keepalived
    - enable: False
    - onlyif: {{ ksha_config }}

ksha-loadbalancer-clean-haproxy-stopped:
  service.dead:
    - name: haproxy
    - enable: False
    - onlyif: {{ ksha_config }}
    - require:
      - service: ksha-loadbalancer-clean-keepalived-stopped

{%- for daemon, path in [('keepalived', lb.keepalived_conf), ('haproxy', lb.haproxy_cfg)] %}
ksha-loadbalancer-clean-{{ daemon }}-config-removed:
  file.absent:
    - name: {{ path }}
    - onlyif: grep -qs '{{ lb.marker }}' {{ path }}
    - require:
      - service: ksha-loadbalancer-clean-haproxy-stopped
{% endfor %}
ksha-loadbalancer-clean-check-script-removed:
  file.absent:
    - name: {{ lb.check_script }}

ksha-loadbalancer-clean-nonlocal-bind-config-removed:
  file.absent:
    - name: {{ lb.sysctl_file }}

ksha-loadbalancer-clean-nonlocal-bind-disabled:
  cmd.run:
    - name: sysctl -q -w net.ipv4.ip_nonlocal_bind=0
    - onchanges:
      - file: ksha-loadbalancer-clean-nonlocal-bind-config-removed
