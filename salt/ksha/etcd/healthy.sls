# -*- coding: utf-8 -*-
# vim: ft=sls
---
{#- ksha.etcd.healthy: wait until the etcd cluster is healthy (every member,
    one leader, one cluster ID) and record its ID in the grain
    ksha_etcd_cluster_id, so orch.ksha never bootstraps it again. #}
{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ "/map.jinja" import ksha with context %}

ksha-etcd-cluster-healthy-and-recorded:
  ksha_etcd.cluster_healthy:
    - name: {{ ksha.cluster_name }}
    - timeout: {{ ksha.etcd.wait_healthy_s }}
    - record: True
