# -*- coding: utf-8 -*-
# vim: ft=sls
---
{#- ksha.etcd.restore: run by orch.ksha.etcd_restore, never by hand. With
    pillar ksha_restore (ksha.plan.restore): snapshot PATH, source MINION, and
    action, each member's: "restore" on the source, where the snapshot becomes
    a new one-member cluster; "move_aside" on the other members, whose old
    data is moved aside, so that they join it afterwards (ksha.etcd.join). #}
{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ "/map.jinja" import ksha, model, me with context %}
{%- set etcd = ksha.etcd %}
{%- set restore = salt['pillar.get']('ksha_restore', {}) %}

ksha-etcd-restore-service-stopped:
  service.dead:
    - name: etcd

ksha-etcd-restore-initial-cluster-removed:
  file.absent:
    - name: {{ model.etcd.initial_cluster_file }}
    - require:
      - service: ksha-etcd-restore-service-stopped

ksha-etcd-restore-bootstrap-record-removed:
  grains.absent:
    - name: {{ model.etcd.bootstrap_grain }}

{%- set action = restore.get('action', {}).get(me.name) %}
{%- if action not in ('restore', 'move_aside') %}
{{-   raise("ksha.etcd.restore: no action for " ~ me.name ~ " in pillar ksha_restore (run orch.ksha.etcd_restore)") }}
{%- endif %}

{%- if action == 'restore' %}

ksha-etcd-restore-snapshot-restored:
  ksha_etcd.restored:
    - name: {{ restore.snapshot }}
    - member: {{ me.name }}
    - peer_url: {{ me.etcd_member.peer_url }}
    - data_dir: {{ etcd.data_dir }}
    - user: {{ etcd.user }}
    - require:
      - file: ksha-etcd-restore-initial-cluster-removed

ksha-etcd-restore-restored-member-running:
  service.running:
    - name: etcd
    - require:
      - ksha_etcd: ksha-etcd-restore-snapshot-restored
{%- else %}

ksha-etcd-restore-old-data-moved-aside:
  cmd.run:
    - name: mv {{ etcd.data_dir }} {{ etcd.data_dir }}.before-restore-$(date +%Y%m%dT%H%M%S)
    - onlyif: test -d {{ etcd.data_dir }}
    - require:
      - service: ksha-etcd-restore-service-stopped

ksha-etcd-restore-empty-data-directory:
  file.directory:
    - name: {{ etcd.data_dir }}
    - user: {{ etcd.user }}
    - mode: '0700'
    - require:
      - cmd: ksha-etcd-restore-old-data-moved-aside
{%- endif %}
