# Keeps client addresses, query strings (the routing key) and referrers out of
# nginx's error log: the same rules as redactErrorLine in deploy/nginx-config.ts
# (a test runs both on the same lines). Used by nginx/compose/entrypoint.sh.
s/client: [^,]*/client: -/g
s/request: "\([A-Z]*\) \([^ ?"]*\)?[^ "]*/request: "\1 \2/g
s/upstream: "\([^?"]*\)?[^"]*"/upstream: "\1"/g
s/referrer: "[^"]*"/referrer: -/g
