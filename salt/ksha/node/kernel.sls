# -*- coding: utf-8 -*-
# vim: ft=sls
---
{#- ksha.node.kernel: a node's kernel modules, loaded now and listed for every
    boot, then its sysctls, set now and in ksha's sysctl.d file (ksha/model.py
    node_kernel: ksha:nodes:kernel_modules and sysctl, and
    ksha:kubernetes:kube_proxy:ipvs_modules in ipvs mode; the commands that
    set and check each). Both files hold exactly the model's; one with nothing
    to hold is removed where it carries ksha's marker. Included by
    ksha.containerd (first: overlay for its snapshotter) and ksha.node. #}
{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ "/map.jinja" import model, me with context %}

{%- if me.node %}
{%-   set kernel = me.node.kernel %}
{%-   for file in kernel.files %}

ksha-node-kernel-{{ file.path }}-{{ 'written' if file.lines else 'removed' }}:
{%-     if file.lines %}
  file.managed:
    - name: {{ file.path }}
    - user: root
    - mode: '0644'
    - contents: {{ (['# ' ~ model.nodes.marker] + file.lines) | join('\n') | json }}
{%-     else %}
  file.absent:
    - name: {{ file.path }}
    - onlyif: grep -qsF {{ model.nodes.marker | json }} {{ file.path }}
{%-     endif %}
{%-   endfor %}
{%-   for module in kernel.modules %}

ksha-node-kernel-module-{{ module.name }}-loaded:
  cmd.run:
    - name: {{ module.load | json }}
    - unless: {{ module.loaded | json }}
{%-   endfor %}
{%-   for name, sysctl in kernel.sysctl | dictsort %}

ksha-node-sysctl-{{ name }}-set:
  cmd.run:
    - name: {{ sysctl.set | json }}
    - unless: {{ sysctl.current | json }}
{%-     if kernel.modules %}
    - require:
{%-       for module in kernel.modules %}
      - cmd: ksha-node-kernel-module-{{ module.name }}-loaded
{%-       endfor %}
{%-     endif %}
{%-   endfor %}
{%- else %}

ksha-node-kernel-nothing-for-this-host:
  test.nop:
    - name: {{ grains['id'] }} is no node
{%- endif %}
