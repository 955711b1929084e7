# -*- coding: utf-8 -*-
# vim: ft=sls
---
{#- ksha.network: on the first master, the pod network's objects (ksha:network:
    plugin calico) through the API with admin.conf, as the cluster model rendered
    them (ksha/network.py, checked by the preflight with kubernetes-validate);
    the state decides what to create, replace and delete
    (salt/_states/ksha_kube.py _apply_plan). #}
{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ "/map.jinja" import model, me with context %}

{%- if grains['id'] == model.network.host and me.network_objects %}
ksha-network-{{ model.network.plugin }}-objects-applied:
  ksha_kube.objects_applied:
    - name: {{ model.network.plugin }} ({{ me.network_objects | length }} objects)
    - objects: {{ me.network_objects | json }}
    - set_name: {{ model.network.set }}
    - set_label: {{ model.network.set_label }}
    - kinds: {{ model.network.resources | json }}
    - managed_by: {{ model.network.managed_by | json }}
    - kubeconfig: {{ me.kubeconfigs.admin.path }}
{%- else %}
ksha-network-nothing-for-this-host:
  test.nop:
    - name: {{ grains['id'] }} applies no network objects
{%- endif %}
