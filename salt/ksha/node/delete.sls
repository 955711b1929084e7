# -*- coding: utf-8 -*-
# vim: ft=sls
---
{#- ksha.node.delete: on the first master (admin.conf), the Node of each host
    of the pillar key ksha_nodes_leaving deleted from the API, once orch.ksha
    drained it and ksha.node.stopped stopped its kubelet (a running kubelet
    registers its Node again). #}
{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ "/map.jinja" import model, me with context %}
{%- set leaving = salt['pillar.get']('ksha_nodes_leaving', []) %}

{%- if grains['id'] == model.nodes.api_host and leaving %}
{%-   for node in leaving %}

ksha-node-{{ node }}-deleted-from-the-api:
  ksha_kube.node_absent:
    - name: {{ node }}
    - kubeconfig: {{ me.kubeconfigs.admin.path }}
{%-   endfor %}
{%- else %}
ksha-node-delete-nothing-for-this-host:
  test.nop:
    - name: {{ grains['id'] }} deletes no Node (the first master deletes those orch.ksha names)
{%- endif %}
