// The operator dashboard (web/), served at `/` from its built bundle in web/dist. Mounted after the
// API, so /api/v1 and /metrics never reach it. Without a bundle, `/` says how to build one.
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import express from 'express';

/** web/dist of the checkout or release this file belongs to (src/api/ or dist/src/api/ below it). */
export function defaultWebDist(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'package.json'))) {
    const parent = dirname(dir);
    if (parent === dir) break;
    dir = parent;
  }
  return join(dir, 'web', 'dist');
}

// The bundle loads only its own files and talks only to this appliance.
const CSP = "default-src 'self'; connect-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

const NOT_BUILT = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Shoal</title></head>
<body style="font-family:system-ui,sans-serif;max-width:40em;margin:3em auto">
<h1>Shoal</h1>
<p>The dashboard is not built. In the appliance's checkout run <code>npm run web:build</code>, then reload.</p>
<p>The API is at <a href="/api/v1/openapi.json"><code>/api/v1</code></a>.</p>
</body></html>
`;

export function createWebRouter(distDir = defaultWebDist()): express.Router {
  const router = express.Router();
  router.use((_req, res, next) => {
    res.setHeader('content-security-policy', CSP);
    res.setHeader('x-content-type-options', 'nosniff');
    next();
  });
  // Looked up per request: a bundle built while the appliance runs is served without a restart.
  const index = join(distDir, 'index.html');
  // File names carry a content hash, so a cached copy is never stale.
  router.use('/assets', express.static(join(distDir, 'assets'), { immutable: true, maxAge: '365d' }));
  router.get('/', (_req, res) => {
    if (!existsSync(index)) {
      res.status(503).type('html').send(NOT_BUILT);
      return;
    }
    res.setHeader('cache-control', 'no-cache');
    res.sendFile(index);
  });
  return router;
}
