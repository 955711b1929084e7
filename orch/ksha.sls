# -*- coding: utf-8 -*-
# vim: ft=sls
---
{#- ksha orchestration:  salt-run state.orchestrate orch.ksha [test=True]

    Phases run in order (docs/ARCHITECTURE.md, "Phases"). Every phase
    requires the one before it and failhard stops the run at the first
    failure, so a bad inventory stops everything before any host is touched.
    Targets come from the `ksha` pillar the master compiles for the minions
    (runner ksha.targets); run `salt-run saltutil.sync_all` once after
    installing or upgrading ksha so the master has its runner and states. #}
{%- set targets = salt['saltutil.runner']('ksha.targets') %}
{%- set all_hosts = targets.get('all', []) | join(',') %}

# Phase 1, preflight: read-only, so it also runs with test=True.
ksha-preflight-inventory-valid:
  ksha.inventory_valid:
    - failhard: True

ksha-preflight-every-host-minion-responds:
  salt.function:
    - name: test.ping
    - tgt: '{{ all_hosts }}'
    - tgt_type: list
    - expect_minions: True
    - failhard: True
    - require:
      - ksha: ksha-preflight-inventory-valid

ksha-preflight-custom-modules-synced:
  salt.function:
    - name: saltutil.sync_all
    - tgt: '{{ all_hosts }}'
    - tgt_type: list
    - failhard: True
    - require:
      - salt: ksha-preflight-every-host-minion-responds

# Phase 2, common: packages and name resolution on every host.
ksha-phase-common-applied:
  salt.state:
    - tgt: '{{ all_hosts }}'
    - tgt_type: list
    - sls:
      - ksha.common
    - failhard: True
    - require:
      - salt: ksha-preflight-custom-modules-synced

# Phase 3, lb: haproxy + keepalived on the LB hosts (keepalived mode only;
# in external mode the LB exists already and phase 2 pointed every host at it).
{%- if targets.get('loadbalancer') %}
ksha-phase-lb-keepalived-haproxy-applied:
  salt.state:
    - tgt: '{{ targets['loadbalancer'] | join(',') }}'
    - tgt_type: list
    - sls:
      - ksha.loadbalancer
    - failhard: True
    - require:
      - salt: ksha-phase-common-applied
{%- endif %}
