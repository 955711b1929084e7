# -*- coding: utf-8 -*-
# vim: ft=sls
---
{#- ksha.etcd.leave: remove the members orch.ksha names in the pillar
    ksha_etcd_leaving (members no longer in ksha:groups:etcd), one at a time,
    from a member that stays. Each removal is refused while the cluster is
    unhealthy or when it would break quorum; each takes a snapshot first. #}
{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ "/map.jinja" import ksha with context %}
{%- for name in salt['pillar.get']('ksha_etcd_leaving', []) %}
ksha-etcd-member-{{ name }}-removed:
  ksha_etcd.member_absent:
    - name: {{ name }}
    - timeout: {{ ksha.etcd.wait_healthy_s }}
{%-   if not loop.first %}
    - require:
      - ksha_etcd: ksha-etcd-member-{{ loop.previtem }}-removed
{%-   endif %}
{%- endfor %}
