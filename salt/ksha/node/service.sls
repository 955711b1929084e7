# -*- coding: utf-8 -*-
# vim: ft=sls
---
{#- ksha.node.service: kubelet and kube-proxy enabled and running; a change of
    a unit, a file it reads (its configuration, kubeconfig, certificates) or of
    the binary restarts it in place (ksha_kube.running_with_current_config). #}
{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ "/map.jinja" import ksha, me with context %}

include:
  - .config

{%- if me.node %}
{%-   for component, unit in me.node.units | dictsort %}

ksha-node-{{ component }}-service-enabled:
  service.enabled:
    - name: {{ component }}
    - require:
      - file: ksha-node-{{ component }}-systemd-unit

ksha-node-{{ component }}-service-running:
  service.running:
    - name: {{ component }}
    - require:
      - service: ksha-node-{{ component }}-service-enabled

ksha-node-{{ component }}-restarted-when-changed:
  ksha_kube.running_with_current_config:
    - name: {{ component }}
    - watched: {{ unit.watched | json }}
    - binary: {{ unit.binary }}
    - rolling: False
    - timeout: {{ ksha.kubernetes.apiserver.wait_ready_s }}
    - require:
      - service: ksha-node-{{ component }}-service-running
    - watch:
      - file: ksha-node-{{ component }}-systemd-unit
      - file: ksha-node-{{ component }}-configuration-file
{%-   endfor %}
{%- endif %}
