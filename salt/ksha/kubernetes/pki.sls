# -*- coding: utf-8 -*-
# vim: ft=sls
---
{#- ksha.kubernetes.pki: a master's certificates from the Kubernetes CAs (signed
    on the CA host), kubeadm's names under ksha:kubernetes:pki:dir, as the
    cluster model lists them (ksha/model.py): the apiserver's serving
    certificate (its SANs follow the masters and the LB), its kubelet client and
    front-proxy client certificates, and the client certificates of the
    kubeconfigs /etc/kubernetes/{admin,controller-manager,scheduler}.conf.
    Any highstate renews one with fewer than days_remaining days left. #}
{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ "/map.jinja" import ksha, model, me with context %}
{%- import tplroot ~ "/x509.jinja" as x509 with context %}
{%- set pki = ksha.kubernetes.pki %}
{%- set k8s = model.kubernetes %}

{%- if me.certificates.kubernetes %}
ksha-kubernetes-pki-directory-present:
  file.directory:
    - name: {{ k8s.pki_dir }}
    - user: root
    - mode: '0755'
    - makedirs: True
{%-   for name, ca in k8s.cas | dictsort %}

# The CA certificate, as the CA host's signing policy hands it out.
ksha-kubernetes-pki-{{ name }}-ca-certificate-installed:
{{- x509.managed('pem', {'name': ca.installed, 'mode': '0644',
                         'text': salt['ksha_x509.get_signing_policy'](me.ca_policies[name], k8s.ca_host).get('signing_cert', '')}) }}
    - require:
      - file: ksha-kubernetes-pki-directory-present
{%-   endfor %}
{%-   for cert in me.certificates.kubernetes %}

ksha-kubernetes-pki-{{ cert.id }}-key-present:
{{- x509.managed('private_key', {'name': cert.path ~ '.key', 'algo': 'ec', 'keysize': 256, 'new': False,
                                 'user': cert.user, 'mode': '0600'}) }}
    - require:
      - file: ksha-kubernetes-pki-directory-present
{%-     set issued = {'name': cert.path ~ '.crt', 'ca_server': k8s.ca_host, 'signing_policy': cert.policy,
                      'private_key': cert.path ~ '.key', 'CN': cert.cn, 'days_remaining': pki.days_remaining,
                      'user': cert.user, 'mode': '0644'} %}
{%-     if cert.o %}
{%-       do issued.update({'O': cert.o}) %}
{%-     endif %}
{%-     if cert.sans %}
{%-       do issued.update({'subjectAltName': cert.sans}) %}
{%-     endif %}

ksha-kubernetes-pki-{{ cert.id }}-certificate-issued:
{{- x509.managed('certificate', issued) }}
    - require:
      - x509: ksha-kubernetes-pki-{{ cert.id }}-key-present
{%-   endfor %}

# This master's service account token signing key: made here and never copied
# (every master has its own; each apiserver trusts all of their public keys,
# ksha.kubernetes.service_account).
ksha-kubernetes-pki-service-account-key-present:
{{- x509.managed('private_key', {'name': k8s.service_account.key, 'algo': 'ec', 'keysize': 256, 'new': False,
                                 'user': 'root', 'mode': '0600'}) }}
    - require:
      - file: ksha-kubernetes-pki-directory-present
{%-   for name, kubeconfig in me.kubeconfigs | dictsort %}

ksha-kubernetes-pki-{{ name }}-kubeconfig:
  file.serialize:
    - name: {{ kubeconfig.path }}
    - dataset: {{ kubeconfig.content | json }}
    - serializer: yaml
    - user: root
    - mode: '0600'
    - require:
      - x509: ksha-kubernetes-pki-{{ name }}-client-certificate-issued
{%-   endfor %}
{%- else %}
ksha-kubernetes-pki-nothing-for-this-host:
  test.nop:
    - name: {{ grains['id'] }} is not a master
{%- endif %}
