# -*- coding: utf-8 -*-
# vim: ft=sls
---
{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ "/map.jinja" import ksha, host with context %}
{%- set lb = ksha.loadbalancer %}
{%- set lb_hosts = lb.hosts or ksha.groups['kube-master'] %}
{%- set ip_of = {} %}
{%- for h in ksha.hosts %}{% do ip_of.update({h.name: h.ip}) %}{% endfor %}
{%- set backends = [] %}
{%- for name in ksha.groups['kube-master'] %}{% do backends.append({'name': name, 'ip': ip_of[name]}) %}{% endfor %}
{#- The console frontend's backends: every host of the cluster (kube-master + kube-node). #}
{%- set console_backends = [] %}
{%- for h in ksha.hosts if h.name in ksha.groups['kube-master'] or h.name in ksha.groups['kube-node'] %}
{%-   do console_backends.append({'name': h.name, 'ip': h.ip}) %}
{%- endfor %}
{%- set peers = [] %}
{%- for name in lb_hosts if name != grains['id'] %}{% do peers.append(ip_of[name]) %}{% endfor %}
{#- The interface holding this host's cluster address, unless pillar names one. #}
{%- set ns = namespace(iface=lb.keepalived.interface) %}
{%- if not ns.iface %}
{%-   for name, addrs in grains.get('ip4_interfaces', {}).items() if host.ip in addrs %}
{%-     set ns.iface = name %}
{%-   endfor %}
{%- endif %}

include:
  - .install

# haproxy binds the VIP, which is on one LB host at a time; the apiserver
# binds the node's own address, so both use the same port on a master.
ksha-loadbalancer-nonlocal-bind-enabled:
  sysctl.present:
    - name: net.ipv4.ip_nonlocal_bind
    - value: 1
    - config: /etc/sysctl.d/60-ksha-loadbalancer.conf

ksha-loadbalancer-haproxy-config:
  file.managed:
    - name: /etc/haproxy/haproxy.cfg
    - source: salt://{{ tplroot }}/loadbalancer/files/haproxy.cfg.jinja
    - template: jinja
    - mode: '0644'
    - check_cmd: /usr/sbin/haproxy -c -q -f
    - context:
        lb: {{ lb | json }}
        backends: {{ backends | json }}
        apiserver_port: {{ ksha.kubernetes.apiserver_port }}
        console_backends: {{ console_backends | json }}
        console_node_port: {{ ksha.kubesphere.console_port }}
    - require:
      - pkg: ksha-loadbalancer-packages-installed

ksha-loadbalancer-keepalived-check-script:
  file.managed:
    - name: /etc/keepalived/ksha-check-haproxy.sh
    - mode: '0700'
    - contents: |
        #!/bin/sh
        # VIP health for keepalived: haproxy answers and its apiserver backend has a server UP.
        echo 'show stat' | socat -T 1 stdio UNIX-CONNECT:{{ lb.haproxy.stats_socket }} 2>/dev/null \
          | grep -q '^ksha-apiserver,BACKEND,.*,UP,'
    - require:
      - pkg: ksha-loadbalancer-packages-installed

ksha-loadbalancer-keepalived-config:
  file.managed:
    - name: /etc/keepalived/keepalived.conf
    - source: salt://{{ tplroot }}/loadbalancer/files/keepalived.conf.jinja
    - template: jinja
    - mode: '0600'
    - show_changes: False   # holds the VRRP password when one is set
    - check_cmd: /usr/sbin/keepalived --config-test -f
    - context:
        lb: {{ lb | json }}
        me: {{ grains['id'] }}
        my_ip: {{ host.ip }}
        iface: {{ ns.iface }}
        priority: {{ 200 - lb_hosts.index(grains['id']) * 10 if grains['id'] in lb_hosts else 100 }}
        peers: {{ peers | json }}
    - require:
      - file: ksha-loadbalancer-keepalived-check-script
