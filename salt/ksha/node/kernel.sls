# -*- coding: utf-8 -*-
# vim: ft=sls
---
{#- ksha.node.kernel: a node's kernel modules, loaded now and at every boot,
    then its sysctls, set now and in ksha's sysctl.d file (ksha/model.py
    node_kernel: ksha:nodes:kernel_modules and sysctl, and
    ksha:kubernetes:kube_proxy:ipvs_modules in ipvs mode). #}
{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ "/map.jinja" import model, me with context %}

{%- if me.node %}
{%-   set kernel = me.node.kernel %}
{%-   if kernel.modules %}

ksha-node-kernel-modules-loaded-at-boot:
  file.managed:
    - name: {{ kernel.modules_file }}
    - user: root
    - mode: '0644'
    - contents: |
        # {{ model.nodes.marker }}
        {%- for module in kernel.modules %}
        {{ module }}
        {%- endfor %}

ksha-node-kernel-modules-loaded:
  kmod.present:
    - mods: {{ kernel.modules | json }}
{%-   endif %}
{%-   for name, value in kernel.sysctl | dictsort %}

ksha-node-sysctl-{{ name }}-set:
  sysctl.present:
    - name: {{ name }}
    - value: {{ value | json }}
    - config: {{ kernel.sysctl_file }}
{%-     if kernel.modules %}
    - require:
      - kmod: ksha-node-kernel-modules-loaded
{%-     endif %}
{%-   endfor %}
{%- else %}

ksha-node-kernel-nothing-for-this-host:
  test.nop:
    - name: {{ grains['id'] }} is no node
{%- endif %}
