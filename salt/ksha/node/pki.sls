# -*- coding: utf-8 -*-
# vim: ft=sls
---
{#- ksha.node.pki: a node's certificates from kubernetes-ca, signed on the CA
    host by policies that fix each subject to this node's own (ksha/model.py
    NODE_POLICIES): the kubelet's client certificate (CN system:node:<name>,
    O system:nodes), its serving certificate (the node's name and address) and
    kube-proxy's client certificate (CN system:kube-proxy); the cluster CA's
    certificate (a master has it from ksha.kubernetes.pki); the kubeconfigs
    /etc/kubernetes/kubelet.conf and proxy.conf, both through the LB domain.
    Any highstate renews a certificate with fewer than days_remaining days
    left: Salt renews them, not the kubelet (rotateCertificates: false). #}
{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ "/map.jinja" import ksha, model, me with context %}
{%- import tplroot ~ "/x509.jinja" as x509 with context %}
{%- set pki = ksha.kubernetes.pki %}
{%- set k8s = model.kubernetes %}

{%- if me.node %}
{%-   for dir in me.node.dirs %}

ksha-node-pki-directory-{{ dir }}-present:
  file.directory:
    - name: {{ dir }}
    - user: root
    - mode: '0755'
    - makedirs: True
{%-   endfor %}
{%-   if me.node.ca_certificate %}

# The cluster CA's certificate, as the CA host's signing policy for this node hands it out.
ksha-node-pki-kubernetes-ca-certificate-installed:
{{- x509.managed('pem', {'name': me.node.ca_certificate, 'mode': '0644',
                         'text': salt['ksha_x509.get_signing_policy'](me.ca_policies.kubernetes, k8s.ca_host).get('signing_cert', '')}) }}
    - require:
      - file: ksha-node-pki-directory-{{ k8s.pki_dir }}-present
{%-   endif %}
{%-   for cert in me.node.certificates %}

ksha-node-pki-{{ cert.id }}-key-present:
{{- x509.managed('private_key', {'name': cert.path ~ '.key', 'algo': 'ec', 'keysize': 256, 'new': False,
                                 'user': cert.user, 'mode': '0600'}) }}
    - require:
      - file: ksha-node-pki-directory-{{ cert.dir }}-present
{%-     set issued = {'name': cert.path ~ '.crt', 'ca_server': k8s.ca_host, 'signing_policy': cert.policy,
                      'private_key': cert.path ~ '.key', 'CN': cert.cn, 'days_remaining': pki.days_remaining,
                      'user': cert.user, 'mode': '0644'} %}
{%-     if cert.o %}
{%-       do issued.update({'O': cert.o}) %}
{%-     endif %}
{%-     if cert.sans %}
{%-       do issued.update({'subjectAltName': cert.sans}) %}
{%-     endif %}

ksha-node-pki-{{ cert.id }}-certificate-issued:
{{- x509.managed('certificate', issued) }}
    - require:
      - x509: ksha-node-pki-{{ cert.id }}-key-present
{%-   endfor %}
{%-   for name, kubeconfig in me.node.kubeconfigs | dictsort %}

ksha-node-pki-{{ name }}-kubeconfig:
  file.serialize:
    - name: {{ kubeconfig.path }}
    - dataset: {{ kubeconfig.content | json }}
    - serializer: yaml
    - user: root
    - mode: '0600'
    - makedirs: True
{%-   endfor %}
{%- else %}
ksha-node-pki-nothing-for-this-host:
  test.nop:
    - name: {{ grains['id'] }} is not a node
{%- endif %}
