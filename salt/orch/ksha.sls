# -*- coding: utf-8 -*-
# vim: ft=sls
---
{#- ksha orchestration:  salt-run state.orchestrate orch.ksha [test=True]

    Renders the plan of `salt-run ksha.plan` (ksha/plan.py) step by step, as
    it is: every step requires the one before it and is failhard, so a bad
    inventory stops everything before any host is touched. The phases and
    their order: docs/ARCHITECTURE.md, "Phases". pillar='{"ksha_until": "<phase>"}'
    stops after that phase. Run `salt-run saltutil.sync_all` once after
    installing or upgrading ksha so the master has its runner and states. #}
{%- set plan = salt['ksha.runner']('ksha.plan', until=salt['pillar.get']('ksha_until'), output='data') %}
{%- from 'orch/ksha/steps.jinja' import render with context %}
{{- render(plan.steps) }}
