# -*- coding: utf-8 -*-
# vim: ft=sls
---
{#- ksha.etcd.pki: certificates from the etcd CA (signed on the CA host).
    etcd members: a server and a peer certificate (SANs: host name, its
    cluster address, 127.0.0.1, localhost) and the admin client certificate
    ksha's etcdctl calls use. Masters: the apiserver's client certificate.
    Any highstate renews one with fewer than ksha:etcd:pki:days_remaining
    days left. #}
{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ "/map.jinja" import ksha, roles with context %}
{%- from tplroot ~ "/etcd/vars.jinja" import etcd, me, ca_host with context %}
{%- set pki = etcd.pki %}
{%- set certs = [] %}
{%- if me %}
{%-   set sans = 'DNS:' ~ me.name ~ ', DNS:localhost, IP:' ~ me.ip ~ ', IP:127.0.0.1' %}
{%-   do certs.append({'id': 'member-server', 'path': pki.dir ~ '/server', 'policy': 'ksha_etcd_server',
                       'cn': me.name, 'sans': sans, 'user': etcd.user}) %}
{%-   do certs.append({'id': 'member-peer', 'path': pki.dir ~ '/peer', 'policy': 'ksha_etcd_peer',
                       'cn': me.name, 'sans': sans, 'user': etcd.user}) %}
{%-   do certs.append({'id': 'admin-client', 'path': pki.dir ~ '/admin', 'policy': 'ksha_etcd_client',
                       'cn': 'ksha-etcd-admin', 'sans': None, 'user': 'root'}) %}
{%- endif %}
{%- if 'kube-master' in roles %}
{%-   do certs.append({'id': 'apiserver-client', 'path': '/etc/kubernetes/pki/apiserver-etcd-client',
                       'policy': 'ksha_etcd_client', 'cn': 'kube-apiserver-etcd-client', 'sans': None,
                       'user': 'root'}) %}
{%- endif %}

{%- if me %}

include:
  - .install
{%- endif %}

{%- if certs %}

ksha-etcd-pki-directory-present:
  file.directory:
    - names:
      - {{ pki.dir }}
      - /etc/kubernetes/pki
    - user: root
    - mode: '0755'
    - makedirs: True

# The CA certificate, as the CA host's signing policy hands it out.
ksha-etcd-pki-ca-certificate-installed:
  x509.pem_managed:
    - name: {{ pki.dir }}/ca.crt
    - text: {{ salt['x509.get_signing_policy']('ksha_etcd_client', ca_server=ca_host).get('signing_cert', '') | json }}
    - mode: '0644'
    - require:
      - file: ksha-etcd-pki-directory-present

{%-   for cert in certs %}

ksha-etcd-pki-{{ cert.id }}-key-present:
  x509.private_key_managed:
    - name: {{ cert.path }}.key
    - algo: ec
    - keysize: 256
    - new: False
    - user: {{ cert.user }}
    - mode: '0600'
    - require:
      - file: ksha-etcd-pki-directory-present
{%-     if cert.user != 'root' %}
      - file: ksha-etcd-data-directory-present
{%-     endif %}

ksha-etcd-pki-{{ cert.id }}-certificate-issued:
  x509.certificate_managed:
    - name: {{ cert.path }}.crt
    - ca_server: {{ ca_host }}
    - signing_policy: {{ cert.policy }}
    - private_key: {{ cert.path }}.key
    - CN: {{ cert.cn }}
{%-     if cert.sans %}
    - subjectAltName: {{ cert.sans }}
{%-     endif %}
    - days_remaining: {{ pki.days_remaining }}
    - user: {{ cert.user }}
    - mode: '0644'
    - require:
      - x509: ksha-etcd-pki-{{ cert.id }}-key-present
{%-   endfor %}
{%- else %}
ksha-etcd-pki-nothing-for-this-host:
  test.nop:
    - name: {{ grains['id'] }} is neither an etcd member nor a master
{%- endif %}
