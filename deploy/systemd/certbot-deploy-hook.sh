#!/bin/sh
# Optional certbot deploy hook: origin-gate re-reads certificate files every tls.reload_interval
# (30 s) by itself; this makes the switch immediate after a renewal.
#   install -m 0755 deploy/systemd/certbot-deploy-hook.sh /etc/letsencrypt/renewal-hooks/deploy/origin-gate
systemctl reload origin-gate
