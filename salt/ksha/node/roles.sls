# -*- coding: utf-8 -*-
# vim: ft=sls
---
{#- ksha.node.roles: on the first master, every node's role labels and taints
    as the cluster model gives them (ksha/model.py _nodes: roles), through the
    API with admin.conf; the state decides the merge patch
    (salt/_states/ksha_kube.py _node_patch) and waits for a node its kubelet
    has not registered yet. #}
{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ "/map.jinja" import model, me with context %}

{%- if grains['id'] == model.nodes.roles_host %}
ksha-node-roles-labelled-and-tainted:
  ksha_kube.node_roles:
    - name: {{ model.nodes.roles | length }} nodes
    - nodes: {{ model.nodes.roles | json }}
    - kubeconfig: {{ me.kubeconfigs.admin.path }}
{%- else %}
ksha-node-roles-nothing-for-this-host:
  test.nop:
    - name: {{ grains['id'] }} does not set the nodes' roles
{%- endif %}
