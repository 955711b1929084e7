# -*- coding: utf-8 -*-
# vim: ft=sls
---
{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ "/map.jinja" import model with context %}

include:
  - .config

# restarted only when its config.toml changed (containers keep running: the
# shims outlive a containerd restart)
ksha-containerd-running:
  service.running:
    - name: {{ model.nodes.containerd.unit }}
    - enable: True
    - watch:
      - file: ksha-containerd-config
    - require:
      - file: ksha-containerd-cni-config-dir
