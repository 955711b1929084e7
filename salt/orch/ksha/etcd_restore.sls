# -*- coding: utf-8 -*-
# vim: ft=sls
---
{#- After etcd lost quorum for good: restore every member from one snapshot.

      salt-run state.orchestrate orch.ksha.etcd_restore
      salt-run state.orchestrate orch.ksha.etcd_restore pillar='{"ksha_restore": {"source": "master1", "snapshot": "/var/backups/kube_etcd/etcd-X.db"} }'

    Without pillar, the newest snapshot on any member (ksha:etcd:backup:dir)
    is used. etcd is stopped on every member; the snapshot becomes a new
    one-member cluster on its host; the other members' data is moved aside
    (kept, renamed) and they join one at a time; the cluster is recorded. #}
{%- set given = salt['pillar.get']('ksha_restore', {}) %}
{%- set plan = salt['saltutil.runner']('ksha.etcd_restore_plan', source=given.get('source'), snapshot=given.get('snapshot')) %}
{%- if plan.problem %}

ksha-etcd-restore-snapshot-chosen:
  test.fail_without_changes:
    - name: "{{ plan.problem }}"
    - failhard: True
{%- else %}
{%-   set restore_pillar = {} %}
{%-   do restore_pillar.update(ksha_restore={'source': plan.source, 'snapshot': plan.snapshot}) %}

ksha-etcd-restore-snapshot-chosen:
  test.succeed_without_changes:
    - name: "restoring {{ plan.snapshot }} from {{ plan.source }} onto {{ plan.members | join(', ') }}"

ksha-etcd-restore-every-member-stopped-and-prepared:
  salt.state:
    - tgt: '{{ plan.members | join(',') }}'
    - tgt_type: list
    - sls:
      - ksha.etcd.restore
    - pillar: {{ restore_pillar | json }}
    - failhard: True
    - require:
      - test: ksha-etcd-restore-snapshot-chosen
{%-   set ns = namespace(previous='ksha-etcd-restore-every-member-stopped-and-prepared') %}
{%-   for name in plan.members if name != plan.source %}

ksha-etcd-restore-{{ name }}-joined:
  salt.state:
    - tgt: {{ name }}
    - sls:
      - ksha.etcd.join
    - failhard: True
    - require:
      - salt: {{ ns.previous }}
{%-     set ns.previous = 'ksha-etcd-restore-' ~ name ~ '-joined' %}
{%-   endfor %}

ksha-etcd-restore-cluster-healthy:
  salt.state:
    - tgt: '{{ plan.members | join(',') }}'
    - tgt_type: list
    - sls:
      - ksha.etcd.healthy
    - failhard: True
    - require:
      - salt: {{ ns.previous }}
{%- endif %}
