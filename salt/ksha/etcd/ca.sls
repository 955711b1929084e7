# -*- coding: utf-8 -*-
# vim: ft=sls
---
{#- ksha.etcd.ca: the etcd CA, on the CA host only (ksha:etcd:pki:ca_host,
    default the first etcd member). Its private key never leaves this host:
    the other hosts get certificates signed here through x509_v2's remote
    signing (the master's `peer` setting, docs/ARCHITECTURE.md). Back up
    ca_dir; losing it means re-issuing every etcd certificate. #}
{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ "/map.jinja" import ksha, model, me with context %}
{%- set pki = ksha.etcd.pki %}

{%- if 'etcd-ca' in me.roles %}
ksha-etcd-ca-directory-present:
  file.directory:
    - name: {{ pki.ca_dir }}
    - user: root
    - mode: '0700'
    - makedirs: True

ksha-etcd-ca-private-key-present:
  x509.private_key_managed:
    - name: {{ model.etcd.ca.key }}
    - algo: ec
    - keysize: 256
    - new: False
    - mode: '0600'
    - require:
      - file: ksha-etcd-ca-directory-present

ksha-etcd-ca-certificate-present:
  x509.certificate_managed:
    - name: {{ model.etcd.ca.cert }}
    - signing_private_key: {{ model.etcd.ca.key }}
    - CN: {{ model.etcd.ca.cn }}
    - basicConstraints: critical, CA:true
    - keyUsage: critical, cRLSign, keyCertSign
    - subjectKeyIdentifier: hash
    - days_valid: {{ pki.ca_days_valid }}
    - days_remaining: {{ pki.days_remaining }}
    - mode: '0644'
    - require:
      - x509: ksha-etcd-ca-private-key-present
{%- else %}
ksha-etcd-ca-lives-on-another-host:
  test.nop:
    - name: the etcd CA is on {{ model.etcd.ca_host }} (ksha:etcd:pki:ca_host)
{%- endif %}
