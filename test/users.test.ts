// API users and roles: named tokens with a role each, one table deciding which role a route needs
// (module routes included), tokens stored only as hashes, and the writer of every event naming the
// user whose token made it.
import { createHash } from 'node:crypto';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestAppliance, type TestAppliance } from './support/appliance.js';
import { createModule as createPxeModule } from '../modules/pxe/index.js';

let t: TestAppliance;
const tokens: Record<string, string> = {};

const as = (name: string) => ({ authorization: `Bearer ${tokens[name]}` });

beforeAll(async () => {
  t = await startTestAppliance({
    sim: { latencies: { probeMs: 1, powerMs: 2, armMs: 1, bootStageMs: 2, drainMs: 2, lostAfterMs: 10 } },
    // Without DHCP or TFTP options it opens no socket: here for a module's routes (/discovered).
    modules: [createPxeModule({ advertiseUrl: 'http://127.0.0.1:1' })],
  });
  for (const [name, role] of [['vera', 'viewer'], ['otto', 'operator'], ['ada', 'admin']] as const) {
    const res = await t.api('POST', '/api/v1/users', { name, role });
    expect(res.status).toBe(201);
    expect(res.body).toMatchObject({ name, role, createdBy: 'operator:admin' });
    tokens[name] = res.body.token;
  }
  await t.api('POST', '/api/v1/nodes', { name: 'u01', macs: ['52:54:00:a5:00:01'], bmc: 'sim://u01' });
});
afterAll(async () => t?.close());

describe('the first-start token', () => {
  it('is the token of user admin, an admin', async () => {
    const { body } = await t.api('GET', '/api/v1/users');
    expect(body.users).toContainEqual(expect.objectContaining({ name: 'admin', role: 'admin' }));
  });
});

describe('roles per route group', () => {
  const cases: [string, string, string, unknown, Record<string, number>][] = [
    // method, path, what it is, body, status by user (403: past the token's role)
    ['GET', '/api/v1/nodes', 'inventory read', undefined, { vera: 200, otto: 200, ada: 200 }],
    ['GET', '/api/v1/events', 'event log', undefined, { vera: 200, otto: 200, ada: 200 }],
    ['GET', '/metrics', 'metrics', undefined, { vera: 200, otto: 200, ada: 200 }],
    ['PATCH', '/api/v1/nodes/u01/desired', 'desired state', { power: 'off' }, { vera: 403, otto: 200, ada: 200 }],
    ['POST', '/api/v1/nodes/u01/freeze', 'maintenance', undefined, { vera: 403, otto: 200, ada: 200 }],
    ['POST', '/api/v1/nodes/u01/thaw', 'maintenance', undefined, { vera: 403, otto: 200, ada: 200 }],
    ['POST', '/api/v1/rollouts', 'rollouts', { selector: 'nothing=here', desired: { power: 'on' }, maxUnavailable: 1 }, { vera: 403, otto: 422, ada: 422 }],
    ['GET', '/api/v1/discovered', "a module's read", undefined, { vera: 200, otto: 200, ada: 200 }],
    ['DELETE', '/api/v1/discovered/52:54:00:a5:00:99', "a module's write", undefined, { vera: 403, otto: 404, ada: 404 }],
    ['GET', '/api/v1/users', 'users', undefined, { vera: 403, otto: 403, ada: 200 }],
    ['POST', '/api/v1/users', 'users', { name: 'nobody', role: 'viewer' }, { vera: 403, otto: 403 }],
  ];
  for (const [method, path, what, body, statuses] of cases) {
    it(`${method} ${path} (${what})`, async () => {
      for (const [user, status] of Object.entries(statuses)) {
        const res = await t.api(method, path, body, as(user));
        expect({ user, status: res.status }).toEqual({ user, status });
        if (status === 403) {
          expect(res.headers.get('content-type')).toContain('application/problem+json');
          expect(res.body.needs).toMatch(/^(operator|admin)$/);
          expect(res.body.has).toBe(user === 'vera' ? 'viewer' : 'operator');
          expect(res.body.detail).toContain(`needs role ${res.body.needs}`);
          expect(res.body.detail).toContain(`${user} has role ${res.body.has}`);
        }
      }
    });
  }

  it('the OpenAPI document names the role of each operation, from the same table', async () => {
    const { body } = await t.api('GET', '/api/v1/openapi.json', undefined, as('vera'));
    const roleOf = (path: string, method: string) => body.paths[path][method]['x-shoal-role'];
    expect([roleOf('/nodes', 'get'), roleOf('/nodes/{ref}/desired', 'patch'), roleOf('/discovered/{mac}', 'delete'), roleOf('/users', 'get'), roleOf('/users/{name}', 'delete')]).toEqual(['viewer', 'operator', 'operator', 'admin', 'admin']);
  });

  it('a refused write changes nothing', async () => {
    const before = t.appliance.state.revision;
    expect((await t.api('PATCH', '/api/v1/nodes/u01/desired', { power: 'on' }, as('vera'))).status).toBe(403);
    expect((await t.api('POST', '/api/v1/users', { name: 'sneak', role: 'admin' }, as('otto'))).status).toBe(403);
    expect(t.appliance.state.revision).toBe(before);
  });
});

describe('users', () => {
  it('names the user in the writer of the events its token makes', async () => {
    const before = t.appliance.state.revision;
    await t.api('PATCH', '/api/v1/nodes/u01/desired', { image: 'compute@1' }, as('otto'));
    // An old client's self-chosen name counts for nothing: the writer is who the token belongs to.
    await t.api('PATCH', '/api/v1/nodes/u01/desired', { image: 'compute@2' }, { ...as('ada'), 'x-shoal-operator': 'someone-else' });
    const { body } = await t.api('GET', `/api/v1/events?after=${before}&node=u01`);
    const desired = (body.events as { kind: string; new: string; writer: string }[]).filter((e) => e.kind === 'desired');
    expect(desired.map((e) => `${e.new} by ${e.writer}`)).toEqual(['compute@1 by operator:otto', 'compute@2 by operator:ada']);
  });

  it('refuses names and roles it does not know, and a second user of the same name', async () => {
    const badRole = await t.api('POST', '/api/v1/users', { name: 'eve', role: 'root' });
    expect(badRole.status).toBe(400);
    expect(badRole.body.detail).toMatch(/role/);
    const badName = await t.api('POST', '/api/v1/users', { name: 'Eve Smith', role: 'viewer' });
    expect(badName.status).toBe(400);
    expect(badName.body.detail).toMatch(/name/);
    expect((await t.api('POST', '/api/v1/users', { name: 'otto', role: 'viewer' })).status).toBe(409);
  });

  it('keeps only the SHA-256 of a token: not in the SQLite file, the event log or any reply', async () => {
    const { status, body } = await t.api('POST', '/api/v1/users', { name: 'hash', role: 'viewer' });
    expect(status).toBe(201);
    const token = body.token as string;
    expect(Buffer.from(token, 'base64url')).toHaveLength(32);
    const hash = createHash('sha256').update(token).digest('hex');
    await t.appliance.state.flush();
    const db = new Database(join(t.dataDir, 'shoal.db'), { readonly: true });
    try {
      const everything = JSON.stringify(
        (db.prepare("SELECT name FROM sqlite_master WHERE type = 'table'").all() as { name: string }[]).map(({ name }) => db.prepare(`SELECT * FROM "${name}"`).all()),
      );
      expect(everything).not.toContain(token);
      expect(everything).toContain(hash);
      // The hash is kept beside the log, not in it.
      expect(JSON.stringify(db.prepare('SELECT * FROM events').all())).not.toContain(hash);
    } finally {
      db.close();
    }
    const replies = JSON.stringify([(await t.api('GET', '/api/v1/users')).body, (await t.api('GET', '/api/v1/events')).body]);
    expect(replies).not.toContain(token);
    expect(replies).not.toContain(hash);
  });

  it('refuses a removed user\'s token at once', async () => {
    const { body } = await t.api('POST', '/api/v1/users', { name: 'brief', role: 'operator' });
    const token = body.token as string;
    expect((await t.api('GET', '/api/v1/nodes', undefined, { authorization: `Bearer ${token}` })).status).toBe(200);
    expect((await t.api('DELETE', '/api/v1/users/brief')).status).toBe(204);
    const refused = await t.api('GET', '/api/v1/nodes', undefined, { authorization: `Bearer ${token}` });
    expect(refused.status).toBe(401);
    expect((await t.api('DELETE', '/api/v1/users/brief')).status).toBe(404);
  });

  it('will not remove the last admin', async () => {
    expect((await t.api('DELETE', '/api/v1/users/ada')).status).toBe(204);
    const last = await t.api('DELETE', '/api/v1/users/admin');
    expect(last.status).toBe(409);
    expect(last.body.detail).toMatch(/last admin/);
  });
});

describe('users across a restart', () => {
  it('keeps users and their roles; the first-start token does not come back as a new admin', async () => {
    const first = await startTestAppliance({});
    const dataDir = first.dataDir;
    let second: TestAppliance | undefined;
    try {
      const created = await first.api('POST', '/api/v1/users', { name: 'kept', role: 'operator' });
      expect((await first.api('DELETE', '/api/v1/users/nope')).status).toBe(404);
      await first.appliance.stop();
      second = await startTestAppliance({ dataDir });
      const kept = { authorization: `Bearer ${created.body.token}` };
      expect((await second.api('GET', '/api/v1/nodes', undefined, kept)).status).toBe(200);
      expect((await second.api('GET', '/api/v1/users', undefined, kept)).status).toBe(403);
      const { body } = await second.api('GET', '/api/v1/users');
      expect((body.users as { name: string; role: string }[]).map((u) => `${u.name}:${u.role}`).sort()).toEqual(['admin:admin', 'kept:operator']);
    } finally {
      await second?.close();
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
});
