# -*- coding: utf-8 -*-
# vim: ft=sls
---
{#- ksha.etcd.config: the member's settings (ETCD_* variables, from the map)
    and the formula's systemd unit. The initial cluster is written only when
    orch.ksha bootstraps the cluster (pillar ksha_etcd_bootstrap: true, set by
    the orchestration, never by hand) and only while the member has no data;
    a member joining a running cluster gets it from ksha_etcd.member_present. #}
{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ "/map.jinja" import ksha, model, me with context %}
{%- set etcd = ksha.etcd %}

include:
  - .install
  - .pki

ksha-etcd-config-directory-present:
  file.directory:
    - name: /etc/etcd
    - user: root
    - mode: '0755'

ksha-etcd-member-settings:
  file.managed:
    - name: {{ model.etcd.env_file }}
    - source: salt://{{ tplroot }}/etcd/files/ksha-etcd.env.jinja
    - template: jinja
    - user: root
    - group: {{ etcd.user }}
    - mode: '0640'
    - context:
        etcd: {{ etcd | json }}
        me: {{ me.etcd_member | json }}
        token: {{ model.etcd.token }}
        local_client_url: {{ model.etcd.local_client_url }}
        tls: {{ model.etcd.tls | json }}
        metrics_url: {{ model.etcd.metrics_url | json }}
        marker: {{ model.etcd.marker | json }}
    - require:
      - file: ksha-etcd-config-directory-present
      - file: ksha-etcd-data-directory-present

ksha-etcd-systemd-unit:
  file.managed:
    - name: {{ model.etcd.unit_file }}
    - source: salt://{{ tplroot }}/etcd/files/etcd.service.jinja
    - template: jinja
    - mode: '0644'
    - context:
        name: {{ me.name }}
        user: {{ etcd.user }}
        binary: {{ model.etcd.binary }}
        initial_cluster_file: {{ model.etcd.initial_cluster_file }}
        env_file: {{ model.etcd.env_file }}
        marker: {{ model.etcd.marker | json }}
        stop_timeout_s: {{ model.etcd.stop_timeout_s }}
        start_timeout_s: {{ model.etcd.start_timeout_s }}
    # the unit points at the binary only once it is there (a refused archive changes nothing)
    - require:
{%- if etcd.source == 'archive' %}
      - file: ksha-etcd-etcd-binary-linked
{%- else %}
      - pkg: ksha-etcd-packages-installed
{%- endif %}

{%- if salt['pillar.get']('ksha_etcd_bootstrap', False) %}

ksha-etcd-initial-cluster-for-bootstrap:
  file.managed:
    - name: {{ model.etcd.initial_cluster_file }}
    - mode: '0644'
    - contents: |
        # Written by orch.ksha when it bootstrapped the cluster; read only while the member has no data.
        ETCD_INITIAL_CLUSTER={{ model.etcd.initial_cluster }}
        ETCD_INITIAL_CLUSTER_STATE=new
    - unless: test -d {{ etcd.data_dir }}/member
    - require:
      - file: ksha-etcd-config-directory-present
{%- endif %}
