# -*- coding: utf-8 -*-
# vim: ft=sls
---
{#- ksha.node.stopped: on a host that is not (or no longer) a node, once orch.ksha
    drained it: kube-proxy, then the kubelet, stopped and disabled, each only
    where its unit carries ksha.node's marker. Before the API deletes the Node (a
    running kubelet registers it again); the files go after that
    (ksha.node.clean), so that a run that fails in between finds the host still
    leaving and deletes the Node then. Run by orch.ksha only. #}
{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ "/map.jinja" import model, me with context %}
{%- set nodes = model.nodes %}
{%- set clean = nodes.clean %}

{%- if not me.node_clean %}
ksha-node-stopped-nothing-for-a-node:
  test.nop:
    - name: {{ grains['id'] }} is a node
{%- else %}
{%-   for component in clean.components %}

ksha-node-clean-{{ component }}-stopped:
  service.dead:
    - name: {{ component }}
    - enable: False
    - onlyif: grep -qsF '{{ nodes.marker }}' {{ nodes.unit_files[component] }}
{%-     if not loop.first %}
    - require:
      - service: ksha-node-clean-{{ loop.previtem }}-stopped
{%-     endif %}
{%-   endfor %}
{%- endif %}
