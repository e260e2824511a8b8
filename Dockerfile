# Click-to-Unlock service image: `docker compose up` builds it (see docker-compose.yml).
# The build stage has the compilers better-sqlite3 needs when no prebuilt binary fits;
# the runtime stage carries only production dependencies and runs as the unprivileged `node` user.

FROM node:20-bookworm AS build
WORKDIR /app
COPY package.json package-lock.json ./
# Scripts off: `prepare` would build before the sources are copied. The native module is
# built explicitly instead.
RUN npm ci --ignore-scripts && npm rebuild better-sqlite3
COPY . .
RUN npm run build && npm prune --omit=dev --ignore-scripts

FROM node:20-bookworm-slim
ENV NODE_ENV=production \
    HOST=0.0.0.0 \
    DATABASE_PATH=/app/data/click-to-unlock.db
WORKDIR /app
COPY --from=build --chown=node:node /app/package.json ./
COPY --from=build --chown=node:node /app/node_modules ./node_modules
COPY --from=build --chown=node:node /app/dist ./dist
COPY --from=build --chown=node:node /app/bin ./bin
COPY --from=build --chown=node:node /app/sql ./sql
COPY --from=build --chown=node:node /app/packs ./packs
RUN mkdir -p /app/data && chown node:node /app/data
USER node
VOLUME ["/app/data"]
# webhook, WebSocket feed, REST API, Prometheus /metrics
EXPOSE 3000 3001 3002 9464
# Readiness as the service itself reports it (database, sender backlog): GET /api/health.
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:' + (process.env.API_PORT || 3002) + '/api/health').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
# SIGTERM (docker stop) drains in-flight webhooks before exiting; keep stop_grace_period above 15 s.
CMD ["node", "bin/ctu.cjs", "start"]
