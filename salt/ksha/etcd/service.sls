# -*- coding: utf-8 -*-
# vim: ft=sls
---
{#- ksha.etcd.service: etcd running and enabled. A change of its settings,
    unit, certificates or binary (ksha:etcd:source, a release or package
    upgrade) restarts it one member at a time (an etcd lock, with
    every other member healthy first), never two members at once. A member
    that has neither data nor an initial cluster is left stopped: only
    orch.ksha bootstraps a cluster or joins a member. #}
{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ "/map.jinja" import ksha, model, me with context %}
{%- set etcd = ksha.etcd %}

include:
  - .config

ksha-etcd-service-enabled:
  service.enabled:
    - name: etcd
    - require:
      - file: ksha-etcd-systemd-unit

ksha-etcd-service-running:
  service.running:
    - name: etcd
    - onlyif: test -d {{ etcd.data_dir }}/member -o -s {{ model.etcd.initial_cluster_file }}
    - require:
      - service: ksha-etcd-service-enabled
      - file: ksha-etcd-member-settings
      - x509: ksha-etcd-pki-member-server-certificate-issued
      - x509: ksha-etcd-pki-member-peer-certificate-issued

ksha-etcd-restarted-one-member-at-a-time:
  ksha_etcd.running_with_current_config:
    - name: etcd
    - watched: {{ me.etcd_member.watched | json }}
    - binary: {{ model.etcd.binary }}
    - timeout: {{ etcd.wait_healthy_s }}
    - require:
      - service: ksha-etcd-service-running
