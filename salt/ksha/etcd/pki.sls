# -*- coding: utf-8 -*-
# vim: ft=sls
---
{#- ksha.etcd.pki: this host's certificates from the etcd CA (signed on the CA
    host), as the cluster model lists them (ksha/model.py): etcd members get a
    server and a peer certificate and the admin client certificate ksha's
    etcdctl calls use; masters the apiserver's client certificate. Any
    highstate renews one with fewer than ksha:etcd:pki:days_remaining days left. #}
{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ "/map.jinja" import ksha, model, me with context %}
{%- import tplroot ~ "/x509.jinja" as x509 with context %}
{%- set pki = ksha.etcd.pki %}
{%- set certs = me.certificates.etcd %}

{%- if me.etcd_member %}

include:
  - .install
{%- endif %}

{%- if certs %}

ksha-etcd-pki-directory-present:
  file.directory:
    - names: {{ model.etcd.cert_dirs | json }}
    - user: root
    - mode: '0755'
    - makedirs: True

# The CA certificate, as the CA host's signing policy hands it out.
ksha-etcd-pki-ca-certificate-installed:
{{- x509.managed('pem', {'name': model.etcd.admin.cacert, 'mode': '0644',
                         'text': salt['ksha_x509.get_signing_policy'](me.ca_policies.etcd, model.etcd.ca_host).get('signing_cert', '')}) }}
    - require:
      - file: ksha-etcd-pki-directory-present

{%-   for cert in certs %}

ksha-etcd-pki-{{ cert.id }}-key-present:
{{- x509.managed('private_key', {'name': cert.path ~ '.key', 'algo': 'ec', 'keysize': 256, 'new': False,
                                 'user': cert.user, 'mode': '0600'}) }}
    - require:
      - file: ksha-etcd-pki-directory-present
{%-     if cert.after_install %}
      - file: ksha-etcd-data-directory-present
{%-     endif %}

{%-     set issued = {'name': cert.path ~ '.crt', 'ca_server': model.etcd.ca_host, 'signing_policy': cert.policy,
                      'private_key': cert.path ~ '.key', 'CN': cert.cn, 'days_remaining': pki.days_remaining,
                      'user': cert.user, 'mode': '0644'} %}
{%-     if cert.sans %}
{%-       do issued.update({'subjectAltName': cert.sans}) %}
{%-     endif %}

ksha-etcd-pki-{{ cert.id }}-certificate-issued:
{{- x509.managed('certificate', issued) }}
    - require:
      - x509: ksha-etcd-pki-{{ cert.id }}-key-present
{%-   endfor %}
{%- else %}
ksha-etcd-pki-nothing-for-this-host:
  test.nop:
    - name: {{ grains['id'] }} is neither an etcd member nor a master
{%- endif %}
