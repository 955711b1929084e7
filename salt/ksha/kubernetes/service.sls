# -*- coding: utf-8 -*-
# vim: ft=sls
---
{#- ksha.kubernetes.service: a master's control-plane components running and
    enabled. A change of a unit, of a file a flag names or of the binary (a new
    release) restarts the component (ksha_kube.running_with_current_config):
    kube-apiserver one master at a time (an etcd lock, every other apiserver
    ready (/readyz) first, this one ready and UP in its haproxy after); the
    controller-manager and scheduler in place, their leader election moving the
    lease to another master if a restarted one held it (the model's units:
    rolling). #}
{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ "/map.jinja" import ksha, me with context %}

include:
  - .config

{%- for component, unit in me.units | dictsort %}

ksha-kubernetes-{{ component }}-service-enabled:
  service.enabled:
    - name: {{ component }}
    - require:
      - file: ksha-kubernetes-{{ component }}-systemd-unit

ksha-kubernetes-{{ component }}-service-running:
  service.running:
    - name: {{ component }}
    - require:
      - service: ksha-kubernetes-{{ component }}-service-enabled

ksha-kubernetes-{{ component }}-restarted-when-changed:
  ksha_kube.running_with_current_config:
    - name: {{ component }}
    - watched: {{ unit.watched | json }}
    - binary: {{ unit.binary }}
    - rolling: {{ unit.rolling }}
    - timeout: {{ ksha.kubernetes.apiserver.wait_ready_s }}
    - require:
      - service: ksha-kubernetes-{{ component }}-service-running
    # under test=True the unit is not written, so its would-be change is what says "restart"
    # (the state's mod_watch); a real run reads what changed since the process started
    - watch:
      - file: ksha-kubernetes-{{ component }}-systemd-unit
{%-   if unit.configuration %}
      - file: ksha-kubernetes-{{ component }}-configuration-file
{%-   endif %}
{%- endfor %}
