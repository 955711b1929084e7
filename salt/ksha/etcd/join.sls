# -*- coding: utf-8 -*-
# vim: ft=sls
---
{#- ksha.etcd.join: this host joins the running etcd cluster (orch.ksha runs
    it on a host added to ksha:groups:etcd, or on a member whose data is gone,
    one host at a time): a snapshot, member add as a learner, start, promote.
    Safe to rerun after a failure half way (ksha_etcd.member_present). #}
{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ "/map.jinja" import ksha, model, me with context %}
{%- set etcd = ksha.etcd %}

include:
  - .install
  - .pki
  - .config
  - .service

ksha-etcd-member-joined-the-cluster:
  ksha_etcd.member_present:
    - name: {{ me.name }}
    - peer_url: {{ me.etcd_member.peer_url }}
    - initial_cluster_file: {{ model.etcd.initial_cluster_file }}
    - timeout: {{ etcd.wait_healthy_s }}
    - require:
      - file: ksha-etcd-member-settings
      - file: ksha-etcd-systemd-unit
      - x509: ksha-etcd-pki-member-server-certificate-issued
      - x509: ksha-etcd-pki-member-peer-certificate-issued
      - x509: ksha-etcd-pki-admin-client-certificate-issued
    - require_in:
      - service: ksha-etcd-service-running
