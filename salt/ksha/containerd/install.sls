# -*- coding: utf-8 -*-
# vim: ft=sls
---
{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ "/map.jinja" import model with context %}

# containerd, runc and the CNI plugins (ksha:containerd:pkgs, cni_pkgs)
ksha-containerd-packages-installed:
  pkg.installed:
    - pkgs: {{ model.nodes.containerd.pkgs | json }}
