# The relay's image: two stages, production dependencies only at run time, a
# non-root user, tini as PID 1 (SIGTERM reaches node, which drains), and a
# HEALTHCHECK that needs nothing but node.
#
#   docker build -t relay .
#   docker build --build-arg NODE_IMAGE=node:20-bookworm-slim -t relay .
#
# NODE_IMAGE must be Debian-based with node and npm on PATH and a `node` user
# (uid 1000), as the official images are; deploy/base-images.sh makes a
# stand-in where no registry can be reached.
ARG NODE_IMAGE=node:20-bookworm-slim

FROM ${NODE_IMAGE} AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json ./
COPY scripts ./scripts
COPY src ./src
RUN npm run build

FROM ${NODE_IMAGE}
RUN apt-get update \
 && apt-get install -y --no-install-recommends tini \
 && rm -rf /var/lib/apt/lists/*
ENV NODE_ENV=production \
    HOST=0.0.0.0 \
    PORT=8080
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force
COPY --from=build /app/dist/src ./dist/src
COPY --from=build /app/dist/public ./dist/public
USER node
EXPOSE 8080
# A node process takes a second or more to start on a busy host: a generous timeout and start period (a check
# that passes within it counts at once), so a loaded machine does not mark a serving instance unhealthy.
HEALTHCHECK --interval=5s --timeout=10s --start-period=30s --retries=3 CMD ["node", "dist/src/healthcheck.js"]
ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["node", "--enable-source-maps", "dist/src/main.js"]
