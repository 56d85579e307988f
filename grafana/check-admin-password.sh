#!/bin/sh
# Grafana's entrypoint in compose.yaml: refuse the example password of .env.example, then
# start Grafana (the image's /run.sh, given as arguments). The admin password is fixed when
# Grafana's volume is first created, so a start with `change-me` would keep it for good.
case "${GF_SECURITY_ADMIN_PASSWORD:-}" in
  "" | change-me)
    echo "scribewatch stack: GRAFANA_ADMIN_PASSWORD is empty or still the example 'change-me'." >&2
    echo "Set your own in .env (next to compose.yaml), then: docker compose up -d" >&2
    exit 1
    ;;
esac
exec "$@"
