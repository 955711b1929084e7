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
{%- import tplroot ~ "/x509.jinja" as x509 with context %}
{%- set pki = ksha.etcd.pki %}

{%- if 'etcd-ca' in me.roles %}
ksha-etcd-ca-directory-present:
  file.directory:
    - name: {{ pki.ca_dir }}
    - user: root
    - mode: '0700'
    - makedirs: True

# A host that already trusts an etcd CA but holds no CA key is not where the
# CA is: a key made here would be a second CA (docs/ARCHITECTURE.md, "Moving
# a CA"). orch.ksha refuses this in its plan; this holds for a highstate too.
ksha-etcd-ca-never-replaced:
  test.fail_without_changes:
    - name: the etcd CA is not made anew on {{ me.name }}
    - comment: >-
        {{ me.name }} trusts an etcd CA ({{ model.etcd.admin.cacert }}) but holds no
        CA key ({{ model.etcd.ca.key }}): a new key would be a second CA and every etcd
        certificate would change at once. Put {{ pki.ca_dir }} back as it was (from the
        old CA host or its backup; docs/ARCHITECTURE.md, 'Moving a CA'), or set
        ksha:etcd:pki:ca_host to the host that holds it
    - onlyif: test -e {{ model.etcd.admin.cacert }} && test ! -e {{ model.etcd.ca.key }}

ksha-etcd-ca-private-key-present:
{{- x509.managed('private_key', {'name': model.etcd.ca.key, 'algo': 'ec', 'keysize': 256, 'new': False,
                                 'mode': '0600'}) }}
    - require:
      - file: ksha-etcd-ca-directory-present
      - test: ksha-etcd-ca-never-replaced

ksha-etcd-ca-certificate-present:
  x509.certificate_managed:
    - retry: {{ model.x509_retry | json }}  # Salt's own race: see ksha/model.py
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
