# -*- coding: utf-8 -*-
# vim: ft=sls
---
{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ "/map.jinja" import ksha with context %}

{%- if ksha.common.pkgs %}
ksha-common-base-packages-installed:
  pkg.installed:
    - pkgs: {{ ksha.common.pkgs | json }}
{%- else %}
ksha-common-no-base-packages-configured:
  test.nop:
    - name: ksha:common:pkgs is empty; no base packages managed
{%- endif %}
