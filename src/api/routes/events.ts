// The event log: pages of it, and the live stream (server-sent events) that resumes from a
// revision without losing or repeating an event.
import type express from 'express';
import { z } from 'zod';
import { REDACTED, type ShoalEvent } from '../../state/store.js';
import { roleAllows } from '../../state/users.js';
import { userOf } from '../auth.js';
import { HttpProblem } from '../problem.js';
import type { EventList, EventView } from '../views.js';
import { queryOf, type RouteContext } from './context.js';

const EventQuerySchema = z
  .object({
    after: z.coerce.number().int().min(0).default(0),
    node: z.string().optional(),
    limit: z.coerce.number().int().min(1).max(10_000).default(1000),
  })
  .strict();

/**
 * What a reader may see of events: `profile` records hold user-data and files, which may hold
 * secrets, so below an operator (who may read them at /profiles anyway) their values say only that
 * one was set.
 */
function eventsFor(req: express.Request): (events: ShoalEvent[]) => ShoalEvent[] {
  if (roleAllows(userOf(req).role, 'operator')) return (events) => events;
  const redact = (v: string | null) => (v === null ? null : REDACTED);
  return (events) => events.map((e) => (e.kind === 'profile' ? { ...e, old: redact(e.old), new: redact(e.new) } : e));
}

export function registerEventRoutes(api: express.Router, { state }: RouteContext): void {
  api.get('/events', async (req, res) => {
    const query = EventQuerySchema.parse(queryOf(req));
    const nodeId = query.node ? state.resolve(query.node).id : undefined;
    const events = await state.events({ afterRev: query.after, limit: query.limit, ...(nodeId ? { nodeId } : {}) });
    const list: EventList = { events: eventsFor(req)(events), revision: state.revision };
    res.json(list);
  });

  api.get('/events/stream', async (req, res) => {
    const lastId = req.header('last-event-id') ?? (typeof req.query.after === 'string' ? req.query.after : '0');
    const after = Number(lastId);
    if (!Number.isInteger(after) || after < 0) throw new HttpProblem(400, 'Invalid Last-Event-ID', `"${lastId}" is not an event revision`);
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-store', connection: 'keep-alive', 'x-accel-buffering': 'no' });
    res.write(': shoal event stream\n\n');
    let sent = after;
    const visible = eventsFor(req);
    const send = (events: EventView[]) => {
      let chunk = '';
      for (const e of visible(events)) {
        if (e.rev <= sent) continue;
        chunk += `id: ${e.rev}\nevent: ${e.kind}\ndata: ${JSON.stringify(e)}\n\n`;
        sent = e.rev;
      }
      if (chunk) res.write(chunk);
    };
    // Live events queue up while the backlog is replayed, so none fall between the two.
    const live: ShoalEvent[][] = [];
    let replaying = true;
    const onEvents = (events: ShoalEvent[]) => (replaying ? live.push(events) : send(events));
    state.on('events', onEvents);
    const keepAlive = setInterval(() => res.write(': keep-alive\n\n'), 15_000);
    req.on('close', () => {
      clearInterval(keepAlive);
      state.off('events', onEvents);
    });
    for (;;) {
      const page = await state.events({ afterRev: sent, limit: 5000 });
      send(page);
      if (page.length < 5000) break;
    }
    replaying = false;
    for (const events of live.splice(0)) send(events);
  });
}
