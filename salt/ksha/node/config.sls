# -*- coding: utf-8 -*-
# vim: ft=sls
---
{#- ksha.node.config: the kubelet's KubeletConfiguration and kube-proxy's
    KubeProxyConfiguration (ksha/model.py _node: ksha's fields, then
    ksha:kubernetes:kubelet:extra_config and kube_proxy:extra_config), and
    their systemd units. A change restarts the component in place
    (ksha.node.service). #}
{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ "/map.jinja" import model, me with context %}

{%- if me.node %}
{%-   for component, config in me.node.configs | dictsort %}

ksha-node-{{ component }}-configuration-file:
  file.serialize:
    - name: {{ config.path }}
    - dataset: {{ config.content | json }}
    - serializer: yaml
    - user: root
    - mode: '0644'
    - makedirs: True
{%-   endfor %}
{%-   for component, unit in me.node.units | dictsort %}

ksha-node-{{ component }}-systemd-unit:
  file.managed:
    - name: {{ unit.path }}
    - source: salt://{{ tplroot }}/kubernetes/files/component.service.jinja
    - template: jinja
    - user: root
    - mode: '0644'
    - context:
        component: {{ component }}
        description: {{ unit.description | json }}
        type: {{ unit.type }}
        marker: {{ model.nodes.marker | json }}
        exec_start: {{ unit.exec_start | json }}
        stop_timeout_s: {{ unit.stop_timeout_s }}
        start_timeout_s: {{ unit.start_timeout_s }}
        after: {{ unit.after | json }}
{%-   endfor %}
{%- else %}
ksha-node-units-nothing-for-this-host:
  test.nop:
    - name: {{ grains['id'] }} is not a node
{%- endif %}
