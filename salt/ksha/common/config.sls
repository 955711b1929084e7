# -*- coding: utf-8 -*-
# vim: ft=sls
---
{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ "/map.jinja" import ksha, model with context %}

# A managed block, so the lines a user keeps in the file survive: every cluster host,
# and the LB domain at the LB address (without an LB, a single master: at that master).
ksha-common-hosts-file-cluster-names:
  file.blockreplace:
    - name: {{ ksha.common.hosts_file }}
    - marker_start: '# BEGIN ksha: cluster hosts and API load balancer (managed by Salt, do not edit)'
    - marker_end: '# END ksha'
    - content: |
    {%- for address, name in model.hosts_file %}
        {{ address }} {{ name }}
    {%- endfor %}
    - append_if_not_found: True
    - backup: False
