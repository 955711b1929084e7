# -*- coding: utf-8 -*-
# vim: ft=sls
---
{#- ksha.node.install: kubernetes-node-linux-amd64.tar.gz of
    ksha:kubernetes:version (ksha:kubernetes:node_archive:url or upstream),
    checked against node_archive:sha256 before anything is extracted, under
    /opt/kubernetes-node-<version>/, kubelet and kube-proxy linked into
    /usr/local/bin. Without a sha256 this fails, saying where upstream
    publishes it. #}
{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ "/map.jinja" import model, me with context %}
{%- set release = model.nodes.release %}

{%- if not me.node %}
ksha-node-release-nothing-for-this-host:
  test.nop:
    - name: {{ grains['id'] }} is not a node
{%- elif release.archive.problem %}
ksha-node-release-checksum-set:
  test.fail_without_changes:
    - name: {{ release.archive.problem | json }}
{%- else %}
{%-   if me.node.pkgs %}
# what kube-proxy's mode needs on the host (ipvs: ipvsadm)
ksha-node-kube-proxy-packages-installed:
  pkg.installed:
    - pkgs: {{ me.node.pkgs | json }}

{%-   endif %}
# archive.extracted, with the credentials a mirror's URL may carry kept out of its return
ksha-node-release-archive-extracted:
  ksha.release_extracted:
    - name: {{ release.dir }}
    - source: {{ release.archive.url | json }}
    - source_hash: sha256={{ release.archive.sha256 }}
    - user: root
    - expect: {{ release.links.values() | map(attribute='target') | list | json }}
{%-   for binary, link in release.links | dictsort %}

ksha-node-{{ binary }}-binary-linked:
  file.symlink:
    - name: {{ link.link }}
    - target: {{ link.target }}
    - force: True
    - require:
      - ksha: ksha-node-release-archive-extracted
{%-   endfor %}
{%- endif %}
