# -*- coding: utf-8 -*-
# vim: ft=sls
---
{#- ksha.kubernetes.install: on every master, the Kubernetes release
    (kubernetes-server-linux-amd64.tar.gz of ksha:kubernetes:version, from
    ksha:kubernetes:archive:url or upstream), checked against
    ksha:kubernetes:archive:sha256 before anything is extracted, under
    /opt/kubernetes-<version>/ with the components' binaries and kubectl
    linked into /usr/local/bin. Without a sha256 this fails, saying where
    upstream publishes it (the model's archive.problem). A master that is not
    an etcd member gets etcdctl (ksha:etcd:client_pkgs): the apiservers'
    rolling restart holds an etcd lock. #}
{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ "/map.jinja" import ksha, model with context %}
{%- set k8s = model.kubernetes %}

{%- if grains['id'] not in k8s.masters %}
ksha-kubernetes-release-nothing-for-this-host:
  test.nop:
    - name: {{ grains['id'] }} is not a master
{%- elif k8s.archive.problem %}
ksha-kubernetes-release-checksum-set:
  test.fail_without_changes:
    - name: {{ k8s.archive.problem | json }}
{%- else %}
# archive.extracted, with the credentials a mirror's URL may carry kept out of its return
ksha-kubernetes-release-archive-extracted:
  ksha.release_extracted:
    - name: {{ k8s.release_dir }}
    - source: {{ k8s.archive.url | json }}
    - source_hash: sha256={{ k8s.archive.sha256 }}
    - user: root
    - expect: {{ k8s.release_links.values() | map(attribute='target') | list | json }}
{%-   for binary, link in k8s.release_links | dictsort %}

ksha-kubernetes-{{ binary }}-binary-linked:
  file.symlink:
    - name: {{ link.link }}
    - target: {{ link.target }}
    - force: True
    - require:
      - ksha: ksha-kubernetes-release-archive-extracted
{%-   endfor %}
{%-   if grains['id'] in k8s.etcdctl_hosts %}

ksha-kubernetes-etcdctl-installed:
  pkg.installed:
    - pkgs: {{ ksha.etcd.client_pkgs | json }}
{%-   endif %}
{%- endif %}
