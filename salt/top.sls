# -*- coding: utf-8 -*-
# vim: ft=sls
---
{#- Roles come from the `ksha` pillar's groups, never from hand-set grains.
    Each cluster host gets ksha.common plus the states of its roles.
    `loadbalancer` is derived: in keepalived mode, ksha:loadbalancer:hosts
    (default: the masters). #}
{%- import_yaml 'ksha/roles.yaml' as role_states %}
{%- set groups = salt['pillar.get']('ksha:groups', {}) %}
{%- set lb = salt['pillar.get']('ksha:loadbalancer', {}) %}
{%- set roles = dict(groups) %}
{%- if lb.get('mode') == 'keepalived' %}
{%-   do roles.update({'loadbalancer': lb.get('hosts') or groups.get('kube-master') or []}) %}
{%- endif %}
base:
{%- for host in salt['pillar.get']('ksha:hosts', []) %}
{%-   set states = [] %}
{%-   for role in ['all'] + (roles | list) %}
{%-     if role == 'all' or host.name in (roles[role] or []) %}
{%-       for state in role_states.get(role) or [] if state not in states %}
{%-         do states.append(state) %}
{%-       endfor %}
{%-     endif %}
{%-   endfor %}
  '{{ host.name }}':
  {%- for state in states %}
    - {{ state }}
  {%- endfor %}
{%- endfor %}
