# -*- coding: utf-8 -*-
# vim: ft=sls
---
{#- ksha.etcd.clean: on a host that is not (or no longer) an etcd member,
    stop the etcd ksha set up and move its data aside, so it can never come
    back with an old member's identity; stop its backup timer and remove the
    timer, its service and script. Only a file carrying ksha's marker is
    touched; the data is kept (renamed), not deleted, and so are the snapshots. #}
{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ "/map.jinja" import ksha, model, me with context %}
{%- set etcd = ksha.etcd %}
{%- set ksha_unit = "grep -qs '" ~ model.etcd.marker ~ "' " ~ model.etcd.unit_file %}

ksha-etcd-clean-no-longer-a-member:
  ksha_etcd.not_a_member:
    - name: {{ grains['id'] }}
    - onlyif: {{ ksha_unit }} && systemctl -q is-active etcd

ksha-etcd-clean-service-stopped:
  service.dead:
    - name: etcd
    - enable: False
    - onlyif: {{ ksha_unit }}
    - require:
      - ksha_etcd: ksha-etcd-clean-no-longer-a-member

ksha-etcd-clean-data-moved-aside:
  cmd.run:
    - name: mv {{ etcd.data_dir }} {{ etcd.data_dir }}.removed-$(date +%Y%m%dT%H%M%S)
    - onlyif: {{ ksha_unit }} && test -d {{ etcd.data_dir }}/member
    - require:
      - service: ksha-etcd-clean-service-stopped

ksha-etcd-clean-member-files-removed:
  file.absent:
    - names:
      - {{ model.etcd.env_file }}
      - {{ model.etcd.initial_cluster_file }}
    - onlyif: {{ ksha_unit }}
    - require:
      - cmd: ksha-etcd-clean-data-moved-aside

ksha-etcd-clean-unit-removed:
  file.absent:
    - name: {{ model.etcd.unit_file }}
    - onlyif: {{ ksha_unit }}
    - require:
      - file: ksha-etcd-clean-member-files-removed

ksha-etcd-clean-bootstrap-record-removed:
  grains.absent:
    - name: {{ model.etcd.bootstrap_grain }}

{%- set backup = model.etcd.backup_files %}
{%- set units = model.etcd.backup_units %}
{%- for kind in ("timer", "service") %}

ksha-etcd-clean-backup-{{ kind }}-stopped:
  service.dead:
    - name: {{ units[kind] }}
    - enable: False
    - onlyif: grep -qsF '{{ model.etcd.backup_marker }}' {{ backup[kind] }}
    - require:
      - ksha_etcd: ksha-etcd-clean-no-longer-a-member
{%- endfor %}
{%- for kind in ("timer", "service", "script") %}

ksha-etcd-clean-backup-{{ kind }}-removed:
  file.absent:
    - name: {{ backup[kind] }}
    - onlyif: grep -qsF '{{ model.etcd.backup_marker }}' {{ backup[kind] }}
    - require:
      - service: ksha-etcd-clean-backup-timer-stopped
      - service: ksha-etcd-clean-backup-service-stopped
{%- endfor %}

ksha-etcd-clean-systemd-reloaded:
  cmd.run:
    - name: systemctl daemon-reload
    - onchanges:
      - file: ksha-etcd-clean-unit-removed
      - file: ksha-etcd-clean-backup-timer-removed
      - file: ksha-etcd-clean-backup-service-removed

{#- a backup run stopped above (or one that waited in vain for the member) ends failed: its
    failed state would outlive its unit and leave the host degraded #}
ksha-etcd-clean-backup-failed-state-reset:
  cmd.run:
    - name: systemctl reset-failed {{ units.service }} {{ units.timer }} 2>/dev/null || true
    - onchanges:
      - file: ksha-etcd-clean-backup-timer-removed
      - file: ksha-etcd-clean-backup-service-removed
    - require:
      - cmd: ksha-etcd-clean-systemd-reloaded
