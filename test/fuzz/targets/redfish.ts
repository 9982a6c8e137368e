// Redfish replies as a broken or hostile BMC could send them, through the real client: a scripted
// BMC answers every request the client makes (service root, session login, Systems collection,
// ComputerSystem, ActionInfo, reset and boot override, task monitor, logout) with real-looking
// JSON, mutated (fields dropped, retyped, huge, off-origin @odata.id), broken JSON, odd statuses
// with Redfish error bodies, and odd headers. The client must end each conversation with a result
// or a RedfishError. The transport's send() is replaced in-process: no sockets, no real BMC.
import type { IncomingHttpHeaders } from 'node:http';
import { RedfishClient, RedfishError, powerIntents } from '../../../modules/redfish/client.js';
import { BmcTransport, type HttpExchange, type HttpReply } from '../../../modules/redfish/transport.js';
import { classifyAsync, jsonText, mutateJson, oddJsonValue, type FuzzTarget, type Gen } from '../kit.js';

const ORIGIN = 'http://127.0.0.1:8000';

const SYSTEM = {
  '@odata.id': '/redfish/v1/Systems/1',
  '@odata.etag': 'W/"1"',
  PowerState: 'Off',
  Boot: {
    BootSourceOverrideTarget: 'None',
    BootSourceOverrideEnabled: 'Disabled',
    BootSourceOverrideMode: 'UEFI',
    'BootSourceOverrideTarget@Redfish.AllowableValues': ['None', 'Pxe', 'Hdd'],
    'BootSourceOverrideMode@Redfish.AllowableValues': ['UEFI', 'Legacy'],
  },
  Actions: {
    '#ComputerSystem.Reset': {
      target: '/redfish/v1/Systems/1/Actions/ComputerSystem.Reset',
      'ResetType@Redfish.AllowableValues': ['On', 'ForceOff', 'GracefulShutdown', 'ForceRestart', 'PowerCycle'],
      '@Redfish.ActionInfo': '/redfish/v1/Systems/1/ResetActionInfo',
    },
  },
};

function resourceFor(exchange: HttpExchange): { status: number; body: unknown; headers?: IncomingHttpHeaders } {
  const { method, path } = exchange;
  if (path === '/redfish/v1/') {
    return { status: 200, body: { Systems: { '@odata.id': '/redfish/v1/Systems' }, SessionService: { '@odata.id': '/redfish/v1/SessionService' }, Links: { Sessions: { '@odata.id': '/redfish/v1/SessionService/Sessions' } } } };
  }
  if (method === 'POST' && path.endsWith('/Sessions')) {
    return { status: 201, body: { '@odata.id': '/redfish/v1/SessionService/Sessions/7' }, headers: { 'x-auth-token': 'token-7', location: '/redfish/v1/SessionService/Sessions/7' } };
  }
  if (method === 'DELETE') return { status: 204, body: '' };
  if (path === '/redfish/v1/Systems') return { status: 200, body: { Members: [{ '@odata.id': '/redfish/v1/Systems/1' }] } };
  if (path.endsWith('ResetActionInfo')) return { status: 200, body: { Parameters: [{ Name: 'ResetType', AllowableValues: ['On', 'ForceOff'] }] } };
  if (method === 'POST') return { status: 202, body: '', headers: { location: '/redfish/v1/TaskService/Tasks/1' } };
  if (path.startsWith('/redfish/v1/TaskService')) return { status: 200, body: { TaskState: 'Completed', Messages: [{ Message: 'done' }] } };
  if (method === 'PATCH') return { status: 204, body: '' };
  return { status: 200, body: SYSTEM };
}

const STATUSES = [200, 201, 202, 204, 301, 400, 401, 403, 404, 405, 412, 500, 501, 503, 0, 99, 999];
const ERROR_BODY = { error: { code: 'Base.1.0.GeneralError', message: 'boom', '@Message.ExtendedInfo': [{ MessageId: 'x' }] } };

function reply(g: Gen, exchange: HttpExchange): HttpReply {
  const resource = resourceFor(exchange);
  let status = resource.status;
  let body: unknown = resource.body;
  const headers: IncomingHttpHeaders = { ...resource.headers };
  if (g.chance(0.1)) status = g.pick(STATUSES);
  if (status >= 400 && g.bool()) body = g.chance(0.5) ? ERROR_BODY : mutateJson(g, ERROR_BODY);
  else if (g.chance(0.3)) body = mutateJson(g, body);
  if (g.chance(0.1)) headers[g.pick(['x-auth-token', 'location', 'etag', 'retry-after'])] = g.pick<string | string[]>(['', ' ', 'http://evil.example/x', '//evil/x', '/ok', ['a', 'b'], '999999999', '-1', g.anyString(20)]);
  if (g.chance(0.05)) delete headers['x-auth-token'];
  const text = typeof body === 'string' ? body : g.chance(0.03) ? JSON.stringify(oddJsonValue(g)) ?? '' : jsonText(g, body);
  return { status, headers, body: text };
}

export const redfishFuzzTarget: FuzzTarget = {
  name: 'redfish replies',
  async open() {
    const originalSend = BmcTransport.prototype.send;
    let current: Gen | undefined;
    let exchanges = 0;
    BmcTransport.prototype.send = async function (exchange: HttpExchange) {
      // A client that kept asking forever would be a hang, not an answer.
      if (++exchanges > 50) throw new Error(`the client made more than 50 requests: last ${exchange.method} ${exchange.path}`);
      return reply(current!, exchange);
    };
    return {
      async one(g) {
        current = g;
        exchanges = 0;
        const config = { url: `${ORIGIN}${g.chance(0.3) ? '/redfish/v1/Systems/1' : ''}`, username: 'admin', password: 'pw', taskTimeoutMs: 20, taskPollIntervalMs: 0, requestTimeoutMs: 1000 };
        return classifyAsync(
          async () => {
            const client = await RedfishClient.connect(config);
            try {
              for (let i = 0; i < 1 + g.int(3); i++) {
                switch (g.int(4)) {
                  case 0:
                    await client.getPowerState();
                    break;
                  case 1:
                    await client.getBootOverride();
                    break;
                  case 2:
                    await client.reset(g.pick(powerIntents));
                    break;
                  case 3:
                    await client.setBootOverride({ target: g.pick(['Pxe', 'Hdd'] as const), enabled: 'Once', ...(g.bool() ? { mode: 'UEFI' as const } : {}) });
                    break;
                }
              }
            } finally {
              await client.close().catch((error: unknown) => {
                if (!(error instanceof RedfishError)) throw error;
              });
            }
          },
          (error) => error instanceof RedfishError,
        );
      },
      async close() {
        BmcTransport.prototype.send = originalSend;
      },
    };
  },
};
