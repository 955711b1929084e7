# -*- coding: utf-8 -*-
# vim: ft=sls
---
{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ "/map.jinja" import model with context %}
{%- set ctd = model.nodes.containerd %}

include:
  - .install

# containerd reads the candidate before it is installed: a file it cannot
# load never replaces the one it runs with (check_cmd appends the temporary
# file's path, which sh hands on as $0).
ksha-containerd-config:
  file.managed:
    - name: {{ ctd.config_file }}
    - source: salt://{{ tplroot }}/containerd/files/config.toml.jinja
    - template: jinja
    - mode: '0644'
    - makedirs: True
    - check_cmd: sh -c 'containerd --config "$0" config dump >/dev/null'
    - context:
        config: {{ ctd.config | json }}
        marker: {{ ctd.marker | json }}
    - require:
      - pkg: ksha-containerd-packages-installed

ksha-containerd-cni-config-dir:
  file.directory:
    - name: {{ ctd.config.cni_conf_dir }}
    - mode: '0755'
    - makedirs: True
