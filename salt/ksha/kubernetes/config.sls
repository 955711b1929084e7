# -*- coding: utf-8 -*-
# vim: ft=sls
---
{#- ksha.kubernetes.config: a master's control-plane units (kube-apiserver,
    kube-controller-manager, kube-scheduler), their flags from the cluster model
    (ksha/model.py: kube_flags, the ExecStart words of its units), and a
    component's own configuration file (the scheduler's: its kubeconfig and
    leader election). A changed unit or file restarts its component
    (ksha.kubernetes.service): the apiserver one master at a time, the others
    in place. It comes after ksha.kubernetes.install, .pki and .service_account
    (the orchestration's steps and the highstate's order) and does not include
    them: each run of them costs seconds of x509 checks. #}
{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ "/map.jinja" import model, me with context %}

{%- for component, unit in me.units | dictsort %}

ksha-kubernetes-{{ component }}-systemd-unit:
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
        marker: {{ model.kubernetes.marker | json }}
        exec_start: {{ unit.exec_start | json }}
        stop_timeout_s: {{ unit.stop_timeout_s }}
        start_timeout_s: {{ unit.start_timeout_s }}
{%-   if unit.configuration %}

ksha-kubernetes-{{ component }}-configuration-file:
  file.serialize:
    - name: {{ unit.configuration.path }}
    - dataset: {{ unit.configuration.content | json }}
    - serializer: yaml
    - user: root
    - mode: '0644'
{%-   endif %}
{%- else %}

ksha-kubernetes-units-nothing-for-this-host:
  test.nop:
    - name: {{ grains['id'] }} is not a master
{%- endfor %}
