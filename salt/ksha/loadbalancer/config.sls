# -*- coding: utf-8 -*-
# vim: ft=sls
---
{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ "/map.jinja" import ksha, model, me with context %}
{%- set lb = ksha.loadbalancer %}

include:
  - .install

# haproxy binds the VIP, which is on one LB host at a time; the apiserver
# binds the node's own address, so both use the same port on a master.
ksha-loadbalancer-nonlocal-bind-enabled:
  sysctl.present:
    - name: net.ipv4.ip_nonlocal_bind
    - value: 1
    - config: {{ model.loadbalancer.sysctl_file }}

ksha-loadbalancer-haproxy-config:
  file.managed:
    - name: {{ model.loadbalancer.haproxy_cfg }}
    - source: salt://{{ tplroot }}/loadbalancer/files/haproxy.cfg.jinja
    - template: jinja
    - mode: '0644'
    - check_cmd: /usr/sbin/haproxy -c -q -f
    - context:
        lb: {{ lb | json }}
        backends: {{ model.loadbalancer.backends | json }}
        console_backends: {{ model.loadbalancer.console_backends | json }}
        check: {{ model.loadbalancer.check | json }}
        console_check: {{ model.loadbalancer.console_check | json }}
        names: {{ model.loadbalancer.names | json }}
        marker: {{ model.loadbalancer.marker | json }}
    - require:
      - pkg: ksha-loadbalancer-packages-installed

ksha-loadbalancer-keepalived-check-script:
  file.managed:
    - name: {{ model.loadbalancer.check_script }}
    - mode: '0700'
    - contents: |
        #!/bin/sh
        # VIP health for keepalived: haproxy answers and its apiserver backend has a server UP.
        echo 'show stat' | socat -T 1 stdio UNIX-CONNECT:{{ lb.haproxy.stats_socket }} 2>/dev/null \
          | grep -q '^{{ model.loadbalancer.names.apiserver }},BACKEND,.*,UP,'
    - require:
      - pkg: ksha-loadbalancer-packages-installed

ksha-loadbalancer-keepalived-config:
  file.managed:
    - name: {{ model.loadbalancer.keepalived_conf }}
    - source: salt://{{ tplroot }}/loadbalancer/files/keepalived.conf.jinja
    - template: jinja
    - mode: '0600'
    - show_changes: False   # holds the VRRP password when one is set
    - check_cmd: /usr/sbin/keepalived --config-test -f
    - context:
        lb: {{ lb | json }}
        me: {{ me.name }}
        my_ip: {{ me.ip }}
        iface: {{ me.interface }}
        priority: {{ me.lb_priority }}
        peers: {{ me.lb_peers | json }}
        vrrp_version: {{ model.loadbalancer.vrrp_version }}
        check_script: {{ model.loadbalancer.check_script }}
        vrrp_script: {{ model.loadbalancer.vrrp_script | json }}
        garp: {{ model.loadbalancer.garp | json }}
        marker: {{ model.loadbalancer.marker | json }}
    - require:
      - file: ksha-loadbalancer-keepalived-check-script
