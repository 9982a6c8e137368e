// /api/v1/openapi.json against the routes the appliance really serves: every operator route, the
// core's and those the loaded modules add, is documented, and nothing documented is missing.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Server } from 'node:http';
import { startTestAppliance, type TestAppliance } from './support/appliance.js';
import { createModule as createImagesModule } from '../modules/images/index.js';
import { createModule as createAgentModule } from '../modules/agent/index.js';
import { createModule as createPxeModule } from '../modules/pxe/index.js';

interface RouterLayer {
  rawPath?: string;
  route?: { path: string; methods: Record<string, boolean> };
  handle: { stack?: RouterLayer[] };
}

/** `METHOD /path` of every route in an express router tree, with mount paths prefixed. */
function routesOf(stack: RouterLayer[], prefix = ''): string[] {
  return stack.flatMap((layer) => {
    if (layer.route) {
      return Object.keys(layer.route.methods).filter((m) => m !== '_all').map((m) => `${m.toUpperCase()} ${prefix}${layer.route!.path}`);
    }
    if (layer.handle.stack) return routesOf(layer.handle.stack, prefix + (typeof layer.rawPath === 'string' && layer.rawPath !== '/' ? layer.rawPath : ''));
    return [];
  });
}

describe('OpenAPI document', () => {
  let t: TestAppliance;

  beforeAll(async () => {
    // Node routes on a boot listener of their own, so the API listener serves the operator app
    // itself: without one it serves an app with the node and operator apps mounted in it, and
    // express hides a mounted app behind a wrapper function the route walk cannot look into.
    t = await startTestAppliance({ boot: { port: 0 }, modules: [createImagesModule(), createAgentModule(), createPxeModule({ advertiseUrl: 'http://127.0.0.1:1' })] });
  });
  afterAll(() => t?.close());

  it('documents exactly the operator routes served under /api/v1, the modules\' included', async () => {
    const app = (t.appliance.server as Server).listeners('request')[0] as unknown as { router: { stack: RouterLayer[] } };
    const served = routesOf(app.router.stack)
      .filter((r) => r.includes(' /api/v1/'))
      .map((r) => r.replace(' /api/v1', ' ').replace(/:(\w+)/g, '{$1}'))
      .filter((r) => r !== 'GET /openapi.json');
    const doc = (await t.api('GET', '/api/v1/openapi.json')).body as { paths: Record<string, Record<string, unknown>> };
    const documented = Object.entries(doc.paths).flatMap(([path, item]) => Object.keys(item).map((method) => `${method.toUpperCase()} ${path}`));

    // Routes of the three modules are among them: the walk found the module routers.
    expect(served).toEqual(expect.arrayContaining(['GET /images', 'DELETE /images/{ref}', 'GET /agents', 'GET /discovered', 'DELETE /discovered/{mac}']));
    expect([...new Set(served)].sort()).toEqual([...new Set(documented)].sort());
  });
});
