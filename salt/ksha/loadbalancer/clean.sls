# -*- coding: utf-8 -*-
# vim: ft=sls
---
{#- ksha.loadbalancer.clean: on a host that is not (or no longer) an LB host,
    stop the haproxy and keepalived that ksha set up and remove ksha's files,
    so a pillar change that moves the LB leaves nothing holding the VIP behind.
    Only what carries ksha's marker is touched: an haproxy or keepalived the
    host runs for something else is left alone, and so are the packages. #}
{%- set marker = 'Managed by Salt (ksha.loadbalancer)' %}
{%- set ksha_config = "grep -qs '" ~ marker ~ "' /etc/keepalived/keepalived.conf /etc/haproxy/haproxy.cfg" %}

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

{%- for daemon, path in [('keepalived', '/etc/keepalived/keepalived.conf'), ('haproxy', '/etc/haproxy/haproxy.cfg')] %}
ksha-loadbalancer-clean-{{ daemon }}-config-removed:
  file.absent:
    - name: {{ path }}
    - onlyif: grep -qs '{{ marker }}' {{ path }}
    - require:
      - service: ksha-loadbalancer-clean-haproxy-stopped
{% endfor %}
ksha-loadbalancer-clean-check-script-removed:
  file.absent:
    - name: /etc/keepalived/ksha-check-haproxy.sh

ksha-loadbalancer-clean-nonlocal-bind-config-removed:
  file.absent:
    - name: /etc/sysctl.d/60-ksha-loadbalancer.conf

ksha-loadbalancer-clean-nonlocal-bind-disabled:
  cmd.run:
    - name: sysctl -q -w net.ipv4.ip_nonlocal_bind=0
    - onchanges:
      - file: ksha-loadbalancer-clean-nonlocal-bind-config-removed
