# -*- coding: utf-8 -*-
# vim: ft=sls
---
{#- ksha.kubernetes.clean: on a host that is not (or no longer) a master, stop
    the control-plane components ksha set up and remove what ksha wrote for a
    master (the model's kubernetes.clean): certificates and keys, the service
    account keys, kubeconfigs, the scheduler's configuration, the release and
    its links, then the units. Each component only where its unit carries
    ksha's marker, the files only where one of the units does (the units go
    last, so that the check holds to the end); the CA certificates stay, and
    the CA keys are never touched (a master holding them is refused before
    this: ksha:kubernetes:pki:ca_host). #}
{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ "/map.jinja" import model with context %}
{%- set k8s = model.kubernetes %}
{%- set clean = k8s.clean %}
{%- set ksha_units = "grep -qsF '" ~ k8s.marker ~ "' " ~ k8s.leftovers.marked | join(' ') %}

{%- if grains['id'] in k8s.masters %}
ksha-kubernetes-clean-nothing-for-a-master:
  test.nop:
    - name: {{ grains['id'] }} is a master
{%- else %}
{%-   for component in clean.components %}

ksha-kubernetes-clean-{{ component }}-stopped:
  service.dead:
    - name: {{ component }}
    - enable: False
    - onlyif: grep -qsF '{{ k8s.marker }}' {{ k8s.unit_files[component] }}
{%-     if not loop.first %}
    - require:
      - service: ksha-kubernetes-clean-{{ loop.previtem }}-stopped
{%-     endif %}
{%-   endfor %}

ksha-kubernetes-clean-master-files-removed:
  file.absent:
    - names: {{ (clean.files + clean.links + [clean.release_dir]) | json }}
    - onlyif: {{ ksha_units }}
    - require:
      - service: ksha-kubernetes-clean-{{ clean.components | last }}-stopped
{%-   for component in clean.components %}

ksha-kubernetes-clean-{{ component }}-unit-removed:
  file.absent:
    - name: {{ k8s.unit_files[component] }}
    - onlyif: grep -qsF '{{ k8s.marker }}' {{ k8s.unit_files[component] }}
    - require:
      - file: ksha-kubernetes-clean-master-files-removed
{%-   endfor %}

ksha-kubernetes-clean-systemd-reloaded:
  cmd.run:
    - name: systemctl daemon-reload
    - onchanges:
{%-   for component in clean.components %}
      - file: ksha-kubernetes-clean-{{ component }}-unit-removed
{%-   endfor %}
{%- endif %}
