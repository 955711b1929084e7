# -*- coding: utf-8 -*-
# vim: ft=sls
---
{#- ksha.node.drain: on the first master (admin.conf), each host of the pillar
    key ksha_nodes_leaving (orch.ksha's step: the hosts that are no node any
    more and still hold ksha's node units, ksha.plan) cordoned and drained
    through the API, for at most ksha:nodes:drain_timeout_s; pods that stay
    fail the state, named (salt/_states/ksha_kube.py node_drained). #}
{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ "/map.jinja" import model, me with context %}
{%- set leaving = salt['pillar.get']('ksha_nodes_leaving', []) %}

{%- if grains['id'] == model.nodes.api_host and leaving %}
{%-   for node in leaving %}

ksha-node-{{ node }}-cordoned-and-drained:
  ksha_kube.node_drained:
    - name: {{ node }}
    - timeout: {{ model.nodes.drain_timeout_s }}
    - kubeconfig: {{ me.kubeconfigs.admin.path }}
{%-   endfor %}
{%- else %}
ksha-node-drain-nothing-for-this-host:
  test.nop:
    - name: {{ grains['id'] }} drains no node (the first master drains those orch.ksha names)
{%- endif %}
