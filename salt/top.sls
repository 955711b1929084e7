# -*- coding: utf-8 -*-
# vim: ft=sls
---
{#- Roles come from the `ksha` pillar's groups, never from hand-set grains.
    Each cluster host gets ksha.common plus the states of its roles.
    The load-balancer roles are derived as ksha.inventory.lb_targets does:
    `loadbalancer` is ksha:loadbalancer:hosts (default: the masters) in
    keepalived mode, `loadbalancer-clean` every other host, and
    `loadbalancer-external` every host in external mode. #}
{%- import_yaml 'ksha/roles.yaml' as role_states %}
{%- set groups = salt['pillar.get']('ksha:groups', {}) %}
{%- set lb = salt['pillar.get']('ksha:loadbalancer', {}) %}
{%- set roles = dict(groups) %}
{%- set names = salt['pillar.get']('ksha:hosts', []) | map(attribute='name') | list %}
{%- set running = (lb.get('hosts') or groups.get('kube-master') or []) if lb.get('mode') == 'keepalived' else [] %}
{%- do roles.update({
      'loadbalancer': running,
      'loadbalancer-clean': names | reject('in', running) | list,
      'loadbalancer-external': names if lb.get('mode') == 'external' else [],
      'etcd-ca': [salt['pillar.get']('ksha:etcd:pki:ca_host') or (groups.get('etcd') or [None]) | first],
      'etcd-clean': names | reject('in', groups.get('etcd') or []) | list,
    }) %}
base:
{%- for host in salt['pillar.get']('ksha:hosts', []) %}
{%-   set states = [] %}
{%-   for role in role_states %}
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
