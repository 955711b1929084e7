# -*- coding: utf-8 -*-
# vim: ft=sls
---
{#- ksha.node.clean: on a host that is not (or no longer) a node, once orch.ksha
    drained it, stopped its kubelet (ksha.node.stopped, included) and deleted its
    Node: what ksha.node wrote
    removed (the host's node_clean: configuration files, certificates and keys,
    kubeconfigs, the cluster CA's certificate where no master needs it, the
    release and its links), then their units; containerd stopped and its
    config.toml removed (the packages stay). Each only where ksha's marker is:
    the node components and their files where one of ksha.node's units carries
    it, containerd where config.toml carries ksha.containerd's. Run by orch.ksha
    only (not in a highstate: a host's pods are drained first). #}
{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ "/map.jinja" import model, me with context %}
{%- set nodes = model.nodes %}
{%- set clean = nodes.clean %}
{%- set ksha_units = "grep -qsF '" ~ nodes.marker ~ "' " ~ nodes.unit_files.values() | join(' ') %}
{%- set ctd = nodes.containerd %}

include:
  - .stopped

{%- if not me.node_clean %}
ksha-node-clean-nothing-for-a-node:
  test.nop:
    - name: {{ grains['id'] }} is a node
{%- else %}
ksha-node-clean-node-files-removed:
  file.absent:
    - names: {{ me.node_clean.files | json }}
    - onlyif: {{ ksha_units }}
    - require:
      - service: ksha-node-clean-{{ clean.components | last }}-stopped
{%-   for component in clean.components %}

ksha-node-clean-{{ component }}-unit-removed:
  file.absent:
    - name: {{ nodes.unit_files[component] }}
    - onlyif: grep -qsF '{{ nodes.marker }}' {{ nodes.unit_files[component] }}
    - require:
      - file: ksha-node-clean-node-files-removed
{%-   endfor %}

ksha-node-clean-systemd-reloaded:
  cmd.run:
    - name: systemctl daemon-reload
    - onchanges:
{%-   for component in clean.components %}
      - file: ksha-node-clean-{{ component }}-unit-removed
{%-   endfor %}

# after the kubelet: it talks to containerd until it stops
ksha-node-clean-containerd-stopped:
  service.dead:
    - name: {{ ctd.unit }}
    - enable: False
    - onlyif: grep -qsF '{{ ctd.marker }}' {{ ctd.config_file }}
    - require:
      - service: ksha-node-clean-{{ clean.components | last }}-stopped

ksha-node-clean-containerd-config-removed:
  file.absent:
    - name: {{ ctd.config_file }}
    - onlyif: grep -qsF '{{ ctd.marker }}' {{ ctd.config_file }}
    - require:
      - service: ksha-node-clean-containerd-stopped
{%- endif %}
