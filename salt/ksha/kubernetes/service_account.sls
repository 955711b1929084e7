# -*- coding: utf-8 -*-
# vim: ft=sls
---
{#- ksha.kubernetes.service_account: on every master, sa.pub, the public keys of
    every master's service account signing key (ksha.kubernetes.pki makes each
    sa.key on its master), in master order, so that any apiserver verifies a
    token whichever master signed it. The masters publish their public keys to
    the Salt mine (orch.ksha's step before this one); while the mine lacks a
    master's key, or holds an old one of this master, this fails naming it and
    sa.pub stays as it was. #}
{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ "/map.jinja" import model, me with context %}

{%- if me.certificates.kubernetes %}
ksha-kubernetes-service-account-public-keys-trusted:
  ksha_kube.service_account_keys_trusted:
    - name: {{ model.kubernetes.service_account.pub }}
    - user: root
    - mode: '0644'
{%- else %}
ksha-kubernetes-service-account-nothing-for-this-host:
  test.nop:
    - name: {{ grains['id'] }} is not a master
{%- endif %}
