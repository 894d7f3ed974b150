# Fixwright: web and worker roles share this image; pick one with `--role`.
FROM node:24-bookworm-slim

ENV NODE_ENV=production \
    HOST=0.0.0.0 \
    PORT=3000 \
    DATA_DIR=/data

WORKDIR /app
COPY package.json package-lock.json ./
# The bundled PostgreSQL's install script links its libraries; it must run.
RUN npm ci --omit=dev && npm cache clean --force

COPY bin ./bin
COPY src ./src
COPY migrations ./migrations
COPY public ./public
COPY tsconfig.json ./

# PostgreSQL refuses to run as root, and nothing here needs root.
RUN mkdir -p /data && chown node:node /data
USER node
VOLUME ["/data"]
EXPOSE 3000

# Only web and all roles listen on PORT. Start worker containers with --no-healthcheck.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s \
  CMD node -e "fetch('http://127.0.0.1:'+process.env.PORT+'/healthz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"

# A stop can take REQUEST_TIMEOUT_SECONDS + SHUTDOWN_TIMEOUT_SECONDS + 5 s (55 s with the
# defaults), longer than docker stop's 10 s default: run the container with --stop-timeout 70
# (docs/operations.md, "Stopping the service").
ENTRYPOINT ["node", "bin/fixwright.js"]
CMD ["start"]
