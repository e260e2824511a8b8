// PM2 process file: `pm2 start ecosystem.config.cjs` after `npm ci` (which builds dist/).
// The webhook role (ingest + sender) and the feed role (REST + WebSocket, read-only database
// handle) run as separate apps so the dashboard side can never slow or crash the webhook.
// One instance each: SQLite has a single writer, so the webhook role must not be clustered.
/* global module, __dirname */
'use strict';

const shared = {
  script: 'bin/ctu.cjs',
  cwd: __dirname,
  exec_mode: 'fork',
  instances: 1,
  autorestart: true,
  // ctu drains in-flight webhooks for up to 15 s after SIGINT/SIGTERM.
  kill_timeout: 20000,
  max_memory_restart: '512M',
  time: true,
};

module.exports = {
  apps: [
    {
      ...shared,
      name: 'ctu-webhook',
      args: 'start --role webhook',
      env: { NODE_ENV: 'production', METRICS_PORT: '9464' },
    },
    {
      ...shared,
      name: 'ctu-feed',
      args: 'start --role feed',
      // Each process serves its own /metrics; scrape both ports.
      env: { NODE_ENV: 'production', METRICS_PORT: '9465' },
    },
  ],
};
