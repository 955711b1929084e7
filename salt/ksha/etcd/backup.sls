# -*- coding: utf-8 -*-
# vim: ft=sls
---
{#- ksha.etcd.backup: periodic snapshots of this member's etcd, by a systemd
    timer (ksha:etcd:backup: dir, period_minutes, keep; the seed installer's
    etcd_backup_dir, etcd_backup_period, keep_backup_number). #}
{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ "/map.jinja" import ksha, model, me with context %}
{%- set etcd = ksha.etcd %}
{%- set backup = etcd.backup %}
{%- set files = model.etcd.backup_files %}

ksha-etcd-backup-directory-present:
  file.directory:
    - name: {{ backup.dir }}
    - user: root
    - mode: '0700'
    - makedirs: True

ksha-etcd-backup-script:
  file.managed:
    - name: {{ files.script }}
    - mode: '0755'
    - contents: |
        #!/bin/sh
        # {{ model.etcd.backup_marker }}: one etcd snapshot, then keep the newest {{ backup.keep }}.
        set -eu
        dir={{ backup.dir }}
        etcdctl() {
          ETCDCTL_API=3 command etcdctl --endpoints={{ model.etcd.local_client_url }} \
            --cacert={{ model.etcd.admin.cacert }} --cert={{ model.etcd.admin.cert }} --key={{ model.etcd.admin.key }} "$@"
        }
        # A run that meets this member restarting (a rolling restart) waits for it to answer, up
        # to {{ etcd.wait_healthy_s }} s (ksha:etcd:wait_healthy_s), rather than skip a period.
        # (endpoint status: the member itself, no quorum needed, as for the snapshot.)
        deadline=$(( $(date +%s) + {{ etcd.wait_healthy_s }} ))
        until etcdctl --dial-timeout=2s --command-timeout=3s endpoint status > /dev/null 2>&1; do
          if [ "$(date +%s)" -ge "$deadline" ]; then
            echo "ksha-etcd-backup: etcd at {{ model.etcd.local_client_url }} did not answer in {{ etcd.wait_healthy_s }} s: no snapshot" >&2
            exit 1
          fi
          sleep 1
        done
        file="$dir/etcd-$(date -u +%Y%m%dT%H%M%S).db"
        etcdctl snapshot save "$file.part" > /dev/null
        chmod 600 "$file.part"
        mv "$file.part" "$file"
        ls -1t "$dir"/etcd-*.db | tail -n +{{ backup.keep + 1 }} | xargs -r rm -f --
        echo "$file"

ksha-etcd-backup-service-unit:
  file.managed:
    - name: {{ files.service }}
    - contents: |
        # {{ model.etcd.backup_marker }}
        [Unit]
        Description=etcd snapshot (ksha)
        After=etcd.service

        [Service]
        Type=oneshot
        ExecStart={{ files.script }}

ksha-etcd-backup-timer-unit:
  file.managed:
    - name: {{ files.timer }}
    - contents: |
        # {{ model.etcd.backup_marker }}
        [Unit]
        Description=etcd snapshot every {{ backup.period_minutes }} minutes (ksha)

        [Timer]
        OnActiveSec={{ backup.period_minutes }}min
        OnUnitActiveSec={{ backup.period_minutes }}min
        AccuracySec={{ model.etcd.backup_accuracy_s }}s

        [Install]
        WantedBy=timers.target

ksha-etcd-backup-timer-running:
  service.running:
    - name: {{ model.etcd.backup_units.timer }}
    - enable: True
    - watch:
      - file: ksha-etcd-backup-timer-unit
      - file: ksha-etcd-backup-service-unit
      - file: ksha-etcd-backup-script
    - require:
      - file: ksha-etcd-backup-directory-present
