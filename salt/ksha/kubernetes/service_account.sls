# -*- coding: utf-8 -*-
# vim: ft=sls
---
{#- ksha.kubernetes.service_account: on every master, sa.pub, the public keys of
    every master's service account signing key (ksha.kubernetes.pki makes each
    sa.key on its master), in master order, so that any apiserver verifies a
    token whichever master's controller-manager signed it. The masters publish
    their public keys to the Salt mine (orch.ksha's mine.send step); a master
    whose key the mine lacks stops this state, and sa.pub is left as it was. #}
{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ "/map.jinja" import model, me with context %}
{%- set sa = model.kubernetes.service_account %}

{%- if me.certificates.kubernetes %}
{%-   set trusted = salt['ksha.service_account_keys']() %}
{%-   if trusted.missing %}
ksha-kubernetes-service-account-keys-published-by-every-master:
  test.fail_without_changes:
    - name: the service account public keys of every master are in the Salt mine
    - comment: >-
        the Salt mine holds no service account public key ({{ sa.mine }}) of
        {{ trusted.missing | join(', ') }}: run orch.ksha, which publishes them, or
        salt -L {{ trusted.missing | join(',') }} mine.send {{ sa.mine }}
        mine_function=x509.get_public_key {{ sa.key }}
{%-   else %}
ksha-kubernetes-service-account-public-keys-trusted:
  file.managed:
    - name: {{ sa.pub }}
    - contents: {{ trusted.pem | json }}
    - user: root
    - mode: '0644'
{%-   endif %}
{%- else %}
ksha-kubernetes-service-account-nothing-for-this-host:
  test.nop:
    - name: {{ grains['id'] }} is not a master
{%- endif %}
