# -*- coding: utf-8 -*-
# vim: ft=sls
---
{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ "/map.jinja" import ksha with context %}
{%- set lb = ksha.loadbalancer %}
{#- Without an LB (a single master) the LB domain points at that master. #}
{%- set lb_address = lb.address if lb.mode != 'none' or lb.address else
      (ksha.hosts | selectattr('name', 'in', ksha.groups['kube-master']) | map(attribute='ip') | first) %}

# A managed block, so the lines a user keeps in the file survive.
ksha-common-hosts-file-cluster-names:
  file.blockreplace:
    - name: {{ ksha.common.hosts_file }}
    - marker_start: '# BEGIN ksha: cluster hosts and API load balancer (managed by Salt, do not edit)'
    - marker_end: '# END ksha'
    - content: |
    {%- for host in ksha.hosts %}
        {{ host.ip }} {{ host.name }}
    {%- endfor %}
    {%- if lb_address %}
        {{ lb_address }} {{ lb.domain }}
    {%- endif %}
    - append_if_not_found: True
    - backup: False
