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
{#- pillar='{"ksha_until": "<phase>"}' stops after that phase. #}
{%- set phases = ['preflight', 'common', 'lb', 'etcd'] %}
{%- set until = salt['pillar.get']('ksha_until') or phases[-1] %}
{%- set enabled = phases[:phases.index(until) + 1] if until in phases else [] %}
{%- if not enabled %}

ksha-orchestration-until-names-a-phase:
  test.fail_without_changes:
    - name: "ksha_until: {{ until }} is not a phase; use one of {{ phases | join(', ') }}"
    - failhard: True
{%- endif %}
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

{%- set ns = namespace(previous='ksha-preflight-custom-modules-synced') %}
{%- if targets.get('loadbalancer-external') %}

# external mode: every host reaches the LB (ksha:loadbalancer:address) before
# anything is changed, e.g. before phase 2 points the LB domain at it.
ksha-preflight-lb-address-reachable-from-every-host:
  salt.state:
    - tgt: '{{ targets['loadbalancer-external'] | join(',') }}'
    - tgt_type: list
    - sls:
      - ksha.loadbalancer.external
    - failhard: True
    - require:
      - salt: ksha-preflight-custom-modules-synced
{%-   set ns.previous = 'ksha-preflight-lb-address-reachable-from-every-host' %}
{%- endif %}

{%- if 'common' in enabled %}

# Phase 2, common: packages and name resolution on every host.
ksha-phase-common-applied:
  salt.state:
    - tgt: '{{ all_hosts }}'
    - tgt_type: list
    - sls:
      - ksha.common
    - failhard: True
    - require:
      - salt: {{ ns.previous }}
{%- endif %}
{%- if 'lb' in enabled %}

# Phase 3, lb: ksha's haproxy + keepalived removed from every host that is
# not an LB host (in external mode: every host), so one that left the LB hosts
# gives the VIP up to a remaining one, with no moment of two holders; then, in
# keepalived mode, haproxy + keepalived applied on the LB hosts (new peers and
# backends; a new LB host starts).
{%- set lb_steps = [
      ('ksha-phase-lb-other-hosts-cleaned', 'loadbalancer-clean', 'ksha.loadbalancer.clean'),
      ('ksha-phase-lb-keepalived-haproxy-applied', 'loadbalancer', 'ksha.loadbalancer'),
    ] %}
{%- set ns.previous = 'ksha-phase-common-applied' %}
{%- for state_id, target, sls in lb_steps if targets.get(target) %}

{{ state_id }}:
  salt.state:
    - tgt: '{{ targets[target] | join(',') }}'
    - tgt_type: list
    - sls:
      - {{ sls }}
    - failhard: True
    - require:
      - salt: {{ ns.previous }}
{%-   set ns.previous = state_id %}
{%- endfor %}
{%- endif %}

# Phase 4, etcd: the CA on its host, certificates everywhere they are needed
# (signed remotely on the CA host), then the members. A cluster that was never
# bootstrapped is bootstrapped (every member `new`, started at once); one that
# was (grain ksha_etcd_cluster_id) is only converged, one member restarted at
# a time. Either way the phase ends when the cluster is healthy.
{%- if 'etcd' in enabled %}
{%-   set etcd = salt['saltutil.runner']('ksha.etcd_plan') %}
{%- else %}
{%-   set etcd = {'members': []} %}
{%- endif %}
{%- if etcd.members %}
{%-   set etcd_steps = [
        ('ksha-phase-etcd-ca-ready', [etcd.ca_host], 'ksha.etcd.ca', {}),
        ('ksha-phase-etcd-certificates-issued', etcd.pki_hosts, 'ksha.etcd.pki', {}),
      ] %}
{%-   if not etcd.bootstrapped %}
{%-     do etcd_steps.append(('ksha-phase-etcd-members-bootstrapped', etcd.members, 'ksha.etcd',
                              {'ksha_etcd_bootstrap': True})) %}
{%-   else %}
{#-     Membership from pillar: members join one at a time (learner, then promoted), then
        the members no longer in pillar are removed, each refused if it would break quorum. #}
{%-     for name in etcd.joining %}
{%-       do etcd_steps.append(('ksha-phase-etcd-' ~ name ~ '-joined', [name], 'ksha.etcd.join', {})) %}
{%-     endfor %}
{%-     if etcd.leaving %}
{%-       do etcd_steps.append(('ksha-phase-etcd-members-removed', [etcd.remover], 'ksha.etcd.leave',
                                {'ksha_etcd_leaving': etcd.leaving})) %}
{%-     endif %}
{%-     do etcd_steps.append(('ksha-phase-etcd-members-converged', etcd.members, 'ksha.etcd', {})) %}
{%-   endif %}
{%-   if etcd.others %}
{%-     do etcd_steps.append(('ksha-phase-etcd-other-hosts-cleaned', etcd.others, 'ksha.etcd.clean', {})) %}
{%-   endif %}
{%-   do etcd_steps.append(('ksha-phase-etcd-cluster-healthy', etcd.members, 'ksha.etcd.healthy', {})) %}
{%-   if etcd.problem or (etcd.leaving and not etcd.remover) %}

ksha-phase-etcd-cluster-reachable:
  test.fail_without_changes:
    - name: "{{ etcd.problem or 'every etcd member would change at once; keep at least one member in ksha:groups:etcd' }}"
    - failhard: True
    - require:
      - salt: {{ ns.previous }}
{%-     set etcd_steps = [] %}
{%-   endif %}
{%-   for state_id, tgt, sls, pillar in etcd_steps %}

{{ state_id }}:
  salt.state:
    - tgt: '{{ tgt | join(',') }}'
    - tgt_type: list
    - sls:
      - {{ sls }}
{%-     if pillar %}
    - pillar: {{ pillar | json }}
{%-     endif %}
    - failhard: True
    - require:
      - salt: {{ ns.previous }}
{%-     set ns.previous = state_id %}
{%-   endfor %}
{%- endif %}
