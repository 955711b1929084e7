# -*- coding: utf-8 -*-
# vim: ft=sls
---
{#- ksha.kubernetes.ca: the Kubernetes CAs (kubernetes-ca, front-proxy-ca), on
    the CA host only (ksha:kubernetes:pki:ca_host, default the first master).
    Their keys never leave this host: the masters get their certificates signed
    here through x509_v2's remote signing, as etcd's (docs/ARCHITECTURE.md).
    Back up ca_dir; losing it means re-issuing every Kubernetes certificate. #}
{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ "/map.jinja" import ksha, model, me with context %}
{%- import tplroot ~ "/x509.jinja" as x509 with context %}
{%- set pki = ksha.kubernetes.pki %}

{%- if 'kubernetes-ca' in me.roles %}
ksha-kubernetes-ca-directory-present:
  file.directory:
    - name: {{ pki.ca_dir }}
    - user: root
    - mode: '0700'
    - makedirs: True
{%-   for name, ca in model.kubernetes.cas | dictsort %}

# A host that already trusts this CA but holds no key of it is not where the CA
# is: a key made here would be a second CA (docs/ARCHITECTURE.md, "Moving a
# CA"). orch.ksha refuses this in its plan; this holds for a highstate too.
ksha-kubernetes-ca-{{ name }}-never-replaced:
  test.fail_without_changes:
    - name: the {{ name }} CA is not made anew on {{ me.name }}
    - comment: >-
        {{ me.name }} trusts a {{ name }} CA ({{ ca.installed }}) but holds no CA key
        ({{ ca.key }}): a new key would be a second CA and every certificate of it would
        change at once. Put {{ pki.ca_dir }} back as it was (from the old CA host or its
        backup; docs/ARCHITECTURE.md, 'Moving a CA'), or set ksha:kubernetes:pki:ca_host
        to the host that holds it
    - onlyif: test -e {{ ca.installed }} && test ! -e {{ ca.key }}

ksha-kubernetes-ca-{{ name }}-private-key-present:
{{- x509.managed('private_key', {'name': ca.key, 'algo': 'ec', 'keysize': 256, 'new': False,
                                 'mode': '0600'}) }}
    - require:
      - file: ksha-kubernetes-ca-directory-present
      - test: ksha-kubernetes-ca-{{ name }}-never-replaced

ksha-kubernetes-ca-{{ name }}-certificate-present:
  x509.certificate_managed:
    - retry: {{ model.x509_retry | json }}  # Salt's own race: see ksha/model.py
    - name: {{ ca.cert }}
    - signing_private_key: {{ ca.key }}
    - CN: {{ ca.cn }}
    - basicConstraints: critical, CA:true
    - keyUsage: critical, digitalSignature, cRLSign, keyCertSign
    - subjectKeyIdentifier: hash
    - days_valid: {{ pki.ca_days_valid }}
    - days_remaining: {{ pki.days_remaining }}
    - mode: '0644'
    - require:
      - x509: ksha-kubernetes-ca-{{ name }}-private-key-present
{%-   endfor %}
{%- else %}
ksha-kubernetes-ca-lives-on-another-host:
  test.nop:
    - name: the Kubernetes CAs are on {{ model.kubernetes.ca_host }} (ksha:kubernetes:pki:ca_host)
{%- endif %}
