# -*- coding: utf-8 -*-
# vim: ft=sls
---
{#- ksha.etcd.leave: remove the members orch.ksha names in the pillar
    ksha_etcd_leaving (members no longer in ksha:groups:etcd), one at a time,
    from a member that stays. Each removal is refused while the cluster is
    unhealthy or when it would break quorum; each takes a snapshot first. #}
{%- for name in salt['pillar.get']('ksha_etcd_leaving', []) %}
ksha-etcd-member-{{ name }}-removed:
  ksha_etcd.member_absent:
    - name: {{ name }}
{%-   if not loop.first %}
    - require:
      - ksha_etcd: ksha-etcd-member-{{ loop.previtem }}-removed
{%-   endif %}
{%- endfor %}
