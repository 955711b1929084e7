# -*- coding: utf-8 -*-
# vim: ft=sls
---
{#- ksha.etcd.install: etcd from the distro package or a pinned release
    archive (ksha:etcd:source). The distro's own unit is replaced by the
    formula's (config.sls), so it is stopped and kept disabled here. #}
{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ "/map.jinja" import ksha, model, me with context %}
{%- set etcd = ksha.etcd %}

{%- if etcd.source == 'archive' %}
# No home directory is managed: usermod refuses to move the home of a user
# whose process runs (the package's etcd user, when switching source).
ksha-etcd-user-present:
  user.present:
    - name: {{ etcd.user }}
    - system: True
    - createhome: False
    - shell: /usr/sbin/nologin

# archive.extracted, with the credentials a mirror's URL may carry kept out of its return
ksha-etcd-release-archive-extracted:
  ksha.release_extracted:
    - name: {{ model.etcd.release_dir }}
    - source: {{ etcd.archive.url }}
    - source_hash: sha256={{ etcd.archive.sha256 }}
    - options: --strip-components=1
    - enforce_toplevel: False
    - user: root
    - expect: {{ model.etcd.release_links.values() | map(attribute='target') | list | json }}

{%-   for binary, link in model.etcd.release_links.items() %}
ksha-etcd-{{ binary }}-binary-linked:
  file.symlink:
    - name: {{ link.link }}
    - target: {{ link.target }}
    - force: True
    - require:
      - ksha: ksha-etcd-release-archive-extracted
{%-   endfor %}
{%- else %}
ksha-etcd-packages-installed:
  pkg.installed:
    - pkgs: {{ etcd.pkgs | json }}

{%-   for binary, link in model.etcd.release_links.items() %}

# Back from source: archive, the release's links would shadow the package's.
ksha-etcd-release-{{ binary }}-link-absent:
  file.absent:
    - name: {{ link.link }}
    - onlyif: readlink {{ link.link }} | grep -q '^/opt/etcd-'
{%-   endfor %}
{%- endif %}

ksha-etcd-data-directory-present:
  file.directory:
    - name: {{ etcd.data_dir }}
    - user: {{ etcd.user }}
    - mode: '0700'
    - require:
{%- if etcd.source == 'archive' %}
      - user: ksha-etcd-user-present
{%- else %}
      - pkg: ksha-etcd-packages-installed
{%- endif %}
