# -*- coding: utf-8 -*-
# vim: ft=sls
---
{#- ksha.kubernetes.config: a master's control-plane units, their flags from the
    cluster model (ksha/model.py: kube_flags, the ExecStart words of its units):
    kube-apiserver so far. A changed unit restarts its component one master at a
    time (ksha.kubernetes.service). It comes after ksha.kubernetes.install, .pki
    and .service_account (the orchestration's steps and the highstate's order)
    and does not include them: each run of them costs seconds of x509 checks. #}
{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ "/map.jinja" import model, me with context %}

{%- for component, unit in me.units | dictsort %}

ksha-kubernetes-{{ component }}-systemd-unit:
  file.managed:
    - name: {{ unit.path }}
    - source: salt://{{ tplroot }}/kubernetes/files/{{ component }}.service.jinja
    - template: jinja
    - user: root
    - mode: '0644'
    - context:
        name: {{ me.name }}
        marker: {{ model.kubernetes.marker | json }}
        exec_start: {{ unit.exec_start | json }}
        stop_timeout_s: {{ model.kubernetes.apiserver.stop_timeout_s }}
        start_timeout_s: {{ model.kubernetes.apiserver.start_timeout_s }}
{%- else %}

ksha-kubernetes-units-nothing-for-this-host:
  test.nop:
    - name: {{ grains['id'] }} is not a master
{%- endfor %}
