# -*- coding: utf-8 -*-
# vim: ft=sls
---
{#- After etcd lost quorum for good: restore every member from one snapshot.

      salt-run state.orchestrate orch.ksha.etcd_restore
      salt-run state.orchestrate orch.ksha.etcd_restore pillar='{"ksha_restore": {"source": "master1", "snapshot": "/var/backups/kube_etcd/etcd-X.db"} }'

    Renders the plan of `salt-run ksha.etcd_restore_plan` (ksha/plan.py) as it is:
    without pillar, the newest snapshot on any member (ksha:etcd:backup:dir).
    etcd is stopped on every member; the snapshot becomes a new one-member
    cluster on its host; the other members' data is moved aside (kept,
    renamed) and they join one at a time; the cluster is recorded. #}
{%- set given = salt['pillar.get']('ksha_restore', {}) %}
{%- set plan = salt['ksha.runner']('ksha.etcd_restore_plan', source=given.get('source'), snapshot=given.get('snapshot'), output='data') %}
{%- from 'orch/ksha/steps.jinja' import render with context %}
{{- render(plan.steps) }}
