# pgshelf: one image for `pgshelf worker`, `pgshelf scheduler` and the one-off commands.
# The PostgreSQL client tools of several majors are installed from the PostgreSQL project's apt repository, so
# pgshelf can pick the pg_dump/psql that matches each server's major version exactly (a newer pg_dump writes
# settings an older server rejects on restore; an older one refuses to dump a newer server).
FROM node:22.19.0-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npx tsc -p tsconfig.build.json && npm prune --omit=dev

FROM node:22.19.0-bookworm-slim
ARG PG_MAJORS="13 14 15 16 17"
RUN set -eux; \
    apt-get update; \
    apt-get install -y --no-install-recommends ca-certificates curl gnupg tini; \
    install -d /usr/share/postgresql-common/pgdg; \
    curl -fsSL https://www.postgresql.org/media/keys/ACCC4CF8.asc -o /usr/share/postgresql-common/pgdg/apt.postgresql.org.asc; \
    echo "deb [signed-by=/usr/share/postgresql-common/pgdg/apt.postgresql.org.asc] https://apt.postgresql.org/pub/repos/apt bookworm-pgdg main" \
      > /etc/apt/sources.list.d/pgdg.list; \
    apt-get update; \
    apt-get install -y --no-install-recommends $(for v in $PG_MAJORS; do echo postgresql-client-$v; done); \
    apt-get purge -y curl gnupg; apt-get autoremove -y; rm -rf /var/lib/apt/lists/*
WORKDIR /app
ENV NODE_ENV=production PGSHELF_STORAGE=file:///backups
COPY --from=build /app/package.json ./
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
RUN ln -s /app/dist/cli/index.js /usr/local/bin/pgshelf && chmod +x /app/dist/cli/index.js \
    && mkdir -p /backups && chown node:node /backups
USER node
VOLUME ["/backups"]
# tini forwards SIGTERM to node, so `docker stop` gives the worker its graceful shutdown. `pgshelf` starts through
# its #! line, which carries the Node flags (a 1 MiB young generation keeps a streaming worker's RSS low).
ENTRYPOINT ["/usr/bin/tini", "--", "pgshelf"]
CMD ["worker"]
