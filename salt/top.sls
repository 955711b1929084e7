# -*- coding: utf-8 -*-
# vim: ft=sls
---
{#- Each cluster host gets the states the cluster model gives it
    (ksha/model.py: its groups and derived roles, in phase order), published
    by the master's external pillar as ksha_model:hosts. #}
{%- set errors = salt['pillar.get']('ksha_model:errors', []) %}
{%- if errors %}
{{-   raise("ksha: the 'ksha' pillar is invalid (salt-run ksha.validate): " ~ errors | join('; ')) }}
{%- endif %}
base:
{%- for host in salt['pillar.get']('ksha_model:hosts', []) %}
  '{{ host.name }}':
  {%- for state in host.states %}
    - {{ state }}
  {%- endfor %}
{%- else %}
  {}  {#- no model in this minion's pillar (yet): no states, and still a valid top file #}
{%- endfor %}
